"""IMAGEPIPE_RETRY_DELAYS is the one source of the retry policy: a non-default value
reaches the renderer's consumer (its delay queues) and poller, the catalog's
job store (which decides when a budget is spent) and the relay's stuck age."""

from __future__ import annotations

from typing import Any

import pytest

from services.catalog import wiring as catalog_wiring
from services.catalog.db import CatalogDatabase
from services.ingest import wiring as ingest_wiring
from services.ingest.relay import STUCK_MARGIN_SECONDS, OutboxRelay
from services.renderer import wiring as renderer_wiring
from services.renderer.consumer import RenderConsumer
from services.renderer.poller import CatalogPoller
from services.shared.retry_policy import DEFAULT_POLICY, RetryPolicy, retry_policy
from services.shared.settings import Settings, load_settings

DELAYS = (1, 3, 9, 27)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("IMAGEPIPE_RETRY_DELAYS", ",".join(map(str, DELAYS)))
    loaded = load_settings()
    assert DEFAULT_POLICY.delays != DELAYS, "the test needs a non-default setting"
    return loaded


def test_the_setting_is_read_and_checked(settings: Settings) -> None:
    assert retry_policy(settings) == RetryPolicy(DELAYS)
    with pytest.raises(ValueError, match="RETRY_DELAYS"):
        Settings(retry_delays="0,2")  # type: ignore[arg-type]


async def test_the_renderer_consumer_and_poller_use_the_setting(settings: Settings) -> None:
    async with renderer_wiring.build(settings) as spec:
        (consumer,) = [w for w in spec.workers if isinstance(w, RenderConsumer)]
        (poller,) = [w for w in spec.workers if isinstance(w, CatalogPoller)]
        assert consumer._policy.delays == DELAYS
        assert consumer._topology.retry_delays == DELAYS  # one delay queue per delay
        assert poller._policy.delays == DELAYS


async def test_the_relay_republishes_after_the_settings_longest_backoff(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Publisher:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        async def start(self) -> None:
            return None

        async def close(self) -> None:
            return None

    monkeypatch.setattr(ingest_wiring, "RenderPublisher", Publisher)
    async with ingest_wiring.build(settings) as spec:
        (relay,) = [w for w in spec.workers if isinstance(w, OutboxRelay)]
        assert relay._stuck_after == max(DELAYS) + STUCK_MARGIN_SECONDS


async def test_the_catalog_repository_uses_the_setting(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Pool:
        async def close(self) -> None:
            return None

    async def create_pool(*args: Any) -> Pool:
        return Pool()

    built: list[Any] = []
    real = CatalogDatabase

    def database(*args: Any, **kwargs: Any) -> Any:
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(catalog_wiring, "create_pool", create_pool)
    monkeypatch.setattr(catalog_wiring, "CatalogDatabase", database)
    async with catalog_wiring.build(settings):
        pass
    assert [r.jobs._policy.delays for r in built] == [DELAYS]
