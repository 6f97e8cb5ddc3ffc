"""Logs: one JSON object per line, the request id on it, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from services.shared.entrypoint import secret_values
from services.shared.logs import (
    LineLog,
    _masked,
    _Redactor,
    configure_logging,
    get_logger,
    new_request_id,
    request_id_var,
)
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


def test_a_line_log_writes_the_same_shape_and_masks_the_whole_line(
    stderr: io.StringIO,
) -> None:
    token = request_id_var.set("req-42")
    try:
        LineLog("services.delivery.access").info(
            "GET /v1/x 200", {"query": f"k={S3_SECRET}", "status": 200, "path": "/v1/x"}
        )
        get_logger("services.delivery.access").info("through logging", extra={"status": 200})
    finally:
        request_id_var.reset(token)
    fast, slow = _entries(stderr)
    common = {"ts", "level", "service", "logger", "event", "request_id", "status"}
    assert set(fast) == common | {"query", "path"} and set(slow) == common
    assert fast["service"] == "ingest" and fast["level"] == "info"
    assert fast["logger"] == "services.delivery.access" and fast["request_id"] == "req-42"
    assert fast["event"] == "GET /v1/x 200" and fast["status"] == 200
    assert S3_SECRET not in stderr.getvalue() and fast["query"] == "k=***"


def test_a_line_log_follows_the_level_and_falls_back_to_logging_when_unconfigured(
    stderr: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    LineLog("services.delivery.access").info("dropped", {})
    assert stderr.getvalue() == ""
    logging.getLogger().handlers[:] = [caplog.handler]  # as before configure_logging
    caplog.set_level(logging.INFO, logger="services.delivery.access")
    LineLog("services.delivery.access").info("kept", {"status": 204})
    assert [(r.getMessage(), getattr(r, "status", None)) for r in caplog.records] == [("kept", 204)]


def test_request_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


_PIECES = [
    ADMIN,
    S3_SECRET,
    "ip_0a1b2c_SeCrEt123",
    "BeArEr tok.en",
    "postgresql://u:p4ss@h/db",
    "amqp://guest@host/",
    "zip_code",
    " ",
    "://",
    "@",
    "plain words",
    "é",
]


@given(st.lists(st.sampled_from(_PIECES), max_size=12))
def test_the_quick_check_never_skips_what_the_pattern_masks(pieces: list[str]) -> None:
    redactor = _Redactor([ADMIN, S3_SECRET])
    text = "".join(pieces)
    assert redactor.redact(text) == redactor._pattern.sub(_masked, text)
