"""The S3 adapter's error classification and key naming, without a server."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import pytest
import urllib3
import yaml
from minio.error import InvalidResponseError, S3Error, ServerError

from services.shared.errors import Unavailable
from services.shared.settings import Settings
from services.shared.storage import (
    STORAGE_REFUSED,
    ObjectNotFound,
    S3ObjectStore,
    StorageRefused,
    is_permanent_s3_error,
    rendition_key,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("code", "status", "permanent"),
    [
        ("AccessDenied", 403, True),
        ("NoSuchBucket", 404, True),
        ("InvalidAccessKeyId", 403, True),
        ("SignatureDoesNotMatch", 403, True),
        ("SomethingNew", 400, True),  # an unknown 4xx is about the request
        (None, 403, True),
        ("SlowDown", 503, False),
        ("InternalError", 500, False),
        ("ServiceUnavailable", 503, False),
        ("RequestTimeout", 400, False),
        (None, 429, False),
        (None, 408, False),
        (None, 502, False),
        (None, None, False),
    ],
)
def test_permanent_s3_errors_are_told_from_transient_ones(
    code: str | None, status: int | None, permanent: bool
) -> None:
    assert is_permanent_s3_error(code, status) is permanent


def _s3_error(code: str, status: int) -> S3Error:
    return S3Error(urllib3.HTTPResponse(status=status), code, "msg", "/b/k", "rid", "hid")


def _raise(error: Exception, bucket: str, key: str) -> None:
    raise error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_s3_error("AccessDenied", 403), StorageRefused),
        (_s3_error("NoSuchBucket", 404), StorageRefused),
        (InvalidResponseError(403, "text/html", "forbidden"), StorageRefused),
        (_s3_error("NoSuchKey", 404), ObjectNotFound),
        (InvalidResponseError(404, "text/html", "missing"), ObjectNotFound),
        (_s3_error("SlowDown", 503), Unavailable),
        (ServerError("bad gateway", 502), Unavailable),
        (urllib3.exceptions.NewConnectionError(None, "refused"), Unavailable),  # type: ignore[arg-type]
    ],
)
async def test_the_adapter_maps_each_class_to_its_error(
    error: Exception, expected: type[Exception]
) -> None:
    store = S3ObjectStore(Settings())
    try:
        with pytest.raises(expected) as raised:
            await store._run(partial(_raise, error, "bucket", "renditions/t/a/k.jpg"))
    finally:
        await store.close()
    if expected is StorageRefused:
        assert raised.value.reason == "STORAGE_REFUSED"  # type: ignore[attr-defined]
        assert "retrying will not help" in str(raised.value)


def test_a_rendition_key_names_its_bytes() -> None:
    one = rendition_key("t", "a", "thumb", "jpg", hashlib.sha256(b"one").hexdigest())
    assert one == rendition_key("t", "a", "thumb", "jpg", hashlib.sha256(b"one").hexdigest()), (
        "a redelivery rewrites it"
    )
    assert one != rendition_key("t", "a", "thumb", "jpg", hashlib.sha256(b"two").hexdigest())
    assert one.startswith("renditions/t/a/thumb.") and one.endswith(".jpg")
    assert len(one.split("/")) == 4  # purge reads the asset id from the third part


def test_the_storage_alert_watches_the_metric_the_adapter_counts() -> None:
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yaml").read_text())
    (rule,) = [
        r for g in rules["groups"] for r in g["rules"] if r["alert"] == "ImagepipeStorageRefused"
    ]
    assert f"{STORAGE_REFUSED._name}_total" in rule["expr"]
