"""The routes: /v1 URLs, health, readiness, and everything else."""

from __future__ import annotations

import json

import pytest

from tests.unit.delivery.fakes import Harness


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/v1/x", "/healthz", "/"])
async def test_other_methods_are_not_allowed(harness: Harness, method: str, path: str) -> None:
    reply = await harness.request(path, method=method)
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD"
    assert isinstance(reply.body, bytes)
    assert json.loads(reply.body)["error"]["reason"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v1",
        "/v2/00000000-0000-4000-8000-000000000000/00000000-0000-4000-8000-000000000000/card",
        "/v1/00000000-0000-4000-8000-000000000000/00000000-0000-4000-8000-000000000000/Card",
        "/v1/00000000-0000-4000-8000-000000000000/00000000-0000-4000-8000-000000000000/card.png",
        "/v1/00000000-0000-4000-8000-000000000000/00000000-0000-4000-8000-000000000000/card/",
        "/v1/00000000-0000-4000-8000-00000000000G/00000000-0000-4000-8000-000000000000/card",
        "/metrics",
    ],
)
async def test_anything_but_a_delivery_url_is_not_found(harness: Harness, path: str) -> None:
    reply = await harness.request(path)
    assert reply.status == 404
    assert isinstance(reply.body, bytes)
    error = json.loads(reply.body)["error"]
    assert error["status"] == 404 and error["reason"] == "NOT_A_DELIVERY_URL"
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.route == "other"
    assert harness.catalog.calls == {}


async def test_healthz_answers_while_the_process_runs(harness: Harness) -> None:
    harness.readiness.ready = False
    reply = await harness.request("/healthz")
    assert reply.status == 200 and reply.route == "health"
    assert reply.headers["Cache-Control"] == "no-store"


async def test_readyz_follows_the_dependencies(harness: Harness) -> None:
    assert (await harness.request("/readyz")).status == 200
    harness.readiness.ready = False
    reply = await harness.request("/readyz")
    assert reply.status == 503 and reply.route == "health"
    head = await harness.request("/readyz", method="HEAD")
    assert head.status == 503 and head.body is None
    assert head.headers["Content-Length"] == reply.headers["Content-Length"]
