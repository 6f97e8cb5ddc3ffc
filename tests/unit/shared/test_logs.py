"""Logs: one JSON object per line, the request id on it, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from services.shared.entrypoint import secret_values
from services.shared.logs import configure_logging, get_logger, request_id_var
from services.shared.settings import Settings

ADMIN = "admin-key-0123456789abcdef"
S3_SECRET = "s3-secret-9876543210fedcba"
DB_PASSWORD = "pg-pass-5f4e3d2c1b"
AMQP_PASSWORD = "mq-pass-a1b2c3d4"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        admin_key=SecretStr(ADMIN),
        s3_secret_key=SecretStr(S3_SECRET),
        database_url=SecretStr(f"postgresql://imagepipe:{DB_PASSWORD}@db:5432/imagepipe"),
        amqp_url=SecretStr(f"amqp://imagepipe:{AMQP_PASSWORD}@mq:5672/"),
        internal_token=SecretStr("internal-token-abcdef123456"),
    )


@pytest.fixture
def stderr(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the services' log handler writes, configured as a service configures it."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("ingest", "INFO", secret_values(settings))
    yield buffer
    root.handlers[:], level = saved
    root.setLevel(level)


def _entries(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


def test_secret_values_include_passwords_of_the_connection_urls(settings: Settings) -> None:
    values = secret_values(settings)
    assert {ADMIN, S3_SECRET, DB_PASSWORD, AMQP_PASSWORD} <= set(values)


def test_secrets_are_masked_in_messages_extras_and_tracebacks(stderr: io.StringIO) -> None:
    log = get_logger("test")
    log.info("connecting to postgresql://imagepipe:%s@db/imagepipe", DB_PASSWORD)
    log.warning("S3 refused key", extra={"detail": f"secret {S3_SECRET} rejected"})
    log.info("caller sent authorization: Bearer ip_0123456789abcdef_someothersecretvalue")
    try:
        raise RuntimeError(f"admin key {ADMIN} and amqp://u:{AMQP_PASSWORD}@mq/")
    except RuntimeError:
        log.exception("failed")
    text = stderr.getvalue()
    assert len(_entries(stderr)) == 4
    for secret in (DB_PASSWORD, S3_SECRET, ADMIN, AMQP_PASSWORD, "someothersecretvalue"):
        assert secret not in text
    assert text.count("***") >= 5


def test_each_line_is_json_with_service_level_event_and_request_id(stderr: io.StringIO) -> None:
    token = request_id_var.set("req-123")
    try:
        get_logger("test").info("stored upload", extra={"asset_id": "a-1"})
    finally:
        request_id_var.reset(token)
    (entry,) = _entries(stderr)
    assert entry["service"] == "ingest"
    assert entry["level"] == "info"
    assert entry["event"] == "stored upload"
    assert entry["request_id"] == "req-123"
    assert entry["asset_id"] == "a-1"
