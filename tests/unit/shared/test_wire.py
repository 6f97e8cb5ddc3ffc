"""Requests are checked as they are parsed: bytes that are not the message, and NULs."""

from __future__ import annotations

from typing import Any

import pytest

from imagepipe.v1 import catalog_internal_pb2, catalog_pb2, common_pb2, ingest_pb2
from services.shared.wire import RefusedRequest, checked_deserializer, nul_fields


def _parse(message_type: Any, data: bytes) -> object:
    return checked_deserializer(message_type.FromString, message_type.DESCRIPTOR.full_name)(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x02\xff\xfe",  # field 1 (asset_id) holding invalid UTF-8
        b"\xff\xff\xff",  # not a message at all
        b"\x0a\x10short",  # a length running past the end
    ],
)
def test_bytes_that_are_not_the_message_are_refused_not_raised(data: bytes) -> None:
    refused = _parse(catalog_pb2.GetAssetRequest, data)
    assert isinstance(refused, RefusedRequest)
    assert refused.error.reason == "MALFORMED_REQUEST"
    assert refused.error.metadata["message_type"] == "imagepipe.v1.GetAssetRequest"


def test_a_valid_message_passes_unchanged() -> None:
    request = catalog_pb2.GetAssetRequest(asset_id="abc")
    assert _parse(catalog_pb2.GetAssetRequest, request.SerializeToString()) == request


@pytest.mark.parametrize(
    ("message", "path"),
    [
        (
            ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(filename="a\x00b")),
            "header.filename",
        ),
        (
            ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(content_type="image/png\x00")),
            "header.content_type",
        ),
        (
            ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(labels={"site": "x\x00"})),
            "header.labels['site']",
        ),
        (
            ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(labels={"\x00": "x"})),
            "header.labels key",
        ),
        (
            catalog_internal_pb2.CompleteJobRequest(
                renditions=[
                    catalog_internal_pb2.RenditionRecord(object_key="ok"),
                    catalog_internal_pb2.RenditionRecord(
                        rendition=common_pb2.Rendition(preset="p\x00")
                    ),
                ]
            ),
            "renditions[1].rendition.preset",
        ),
    ],
)
def test_a_nul_anywhere_in_a_string_is_refused_with_its_field(message: object, path: str) -> None:
    assert list(nul_fields(message)) == [path]  # type: ignore[arg-type]
    refused = _parse(type(message), message.SerializeToString())  # type: ignore[attr-defined]
    assert isinstance(refused, RefusedRequest)
    assert (refused.error.reason, refused.error.metadata["field"]) == ("NUL_CHARACTER", path)


def test_nul_in_bytes_fields_is_image_data_not_text() -> None:
    chunk = ingest_pb2.UploadRequest(chunk=b"\x00\x00\x00")
    assert _parse(ingest_pb2.UploadRequest, chunk.SerializeToString()) == chunk
