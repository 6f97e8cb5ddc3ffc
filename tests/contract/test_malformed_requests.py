"""Bytes that are not a valid request message, sent raw to every RPC of every service.

With the right credentials every one is INVALID_ARGUMENT / MALFORMED_REQUEST (one
warning line, no traceback); without credentials it is UNAUTHENTICATED, as for any
call. Health and reflection need no credentials and refuse garbage the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from devstack import Stack
from imagepipe.v1 import (
    catalog_internal_pb2,
    catalog_pb2,
    common_pb2,
    ingest_pb2,
    quality_pb2,
    renderer_pb2,
    tenant_admin_pb2,
)
from tests.helpers import Services, Tenant, error_info

SERVED_BY = {
    "ingest": [ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]],
    "catalog": [
        catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
        catalog_internal_pb2.DESCRIPTOR.services_by_name["CatalogInternalService"],
        tenant_admin_pb2.DESCRIPTOR.services_by_name["TenantAdminService"],
    ],
    "renderer": [renderer_pb2.DESCRIPTOR.services_by_name["RendererService"]],
    "quality": [quality_pb2.DESCRIPTOR.services_by_name["QualityService"]],
}
# Served on every port without credentials.
OPEN_METHODS = [
    health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].methods_by_name[
        "ServerReflectionInfo"
    ],
]
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field number 0 / truncated varint: never a message


def _string_path(message: Descriptor, depth: int = 0) -> list[FieldDescriptor] | None:
    """The fields leading to a (non-repeated) string field, to carry invalid UTF-8."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            return [field]
    for field in message.fields:
        inner = field.message_type
        if (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.is_repeated
            and inner is not None
            and depth < 3
        ):
            rest = _string_path(inner, depth + 1)
            if rest is not None:
                return [field, *rest]
    return None


def _length_delimited(number: int, payload: bytes) -> bytes:
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def invalid_utf8(message: Descriptor) -> bytes | None:
    path = _string_path(message)
    if path is None:
        return None
    data = b"\xc3\x28\xff"  # not UTF-8
    for field in reversed(path):
        data = _length_delimited(field.number, data)
    return data


@dataclass(frozen=True)
class Case:
    service: str
    method: MethodDescriptor
    payload: bytes
    kind: str

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def access(self) -> int | None:
        if not self.method.containing_service.full_name.startswith("imagepipe."):
            return None
        return int(self.method.GetOptions().Extensions[common_pb2.access])

    def __str__(self) -> str:
        return f"{self.service}:{self.method.full_name}:{self.kind}"


def _cases() -> Iterator[Case]:
    for service, descriptors in SERVED_BY.items():
        methods = [m for d in descriptors for m in d.methods] + OPEN_METHODS
        for method in methods:
            yield Case(service, method, GARBAGE, "garbage")
            utf8 = invalid_utf8(method.input_type)
            if utf8 is not None:
                yield Case(service, method, utf8, "invalid-utf8")


CASES = list(_cases())


def _call(channel: grpc.Channel, case: Case, metadata: tuple[tuple[str, str], ...]) -> None:
    # No serializers: the payload bytes go on the wire as they are.
    kwargs: dict[str, Any] = {"metadata": metadata, "timeout": 10}
    raw: Any = channel
    if case.method.client_streaming and case.method.server_streaming:
        list(raw.stream_stream(case.path)(iter([case.payload]), **kwargs))
    elif case.method.client_streaming:
        raw.stream_unary(case.path)(iter([case.payload]), **kwargs)
    elif case.method.server_streaming:
        list(raw.unary_stream(case.path)(case.payload, **kwargs))
    else:
        raw.unary_unary(case.path)(case.payload, **kwargs)


def _credentials(case: Case, services: Services, tenant: Tenant) -> tuple[tuple[str, str], ...]:
    if case.access == common_pb2.ACCESS_TENANT:
        return tenant.metadata
    if case.access == common_pb2.ACCESS_ADMIN:
        return services.admin_metadata
    if case.access == common_pb2.ACCESS_INTERNAL:
        return services.internal_metadata
    return ()


def _log_sizes(stack: Stack) -> dict[Path, int]:
    return {p: p.stat().st_size for p in stack.log_dir.glob("*.log")}


def _new_lines(stack: Stack, before: dict[Path, int]) -> list[str]:
    lines = []
    for path in stack.log_dir.glob("*.log"):
        with path.open("rb") as log:
            log.seek(before.get(path, 0))
            lines += log.read().decode(errors="replace").splitlines()
    return lines


def test_every_rpc_of_every_service_is_covered() -> None:
    covered = {(c.service, c.method.full_name) for c in CASES}
    expected = {
        (service, m.full_name)
        for service, descriptors in SERVED_BY.items()
        for m in [*(m for d in descriptors for m in d.methods), *OPEN_METHODS]
    }
    assert covered == expected
    assert len({c.method.full_name for c in CASES if c.kind == "invalid-utf8"}) >= 30


@pytest.mark.parametrize("with_credentials", [True, False], ids=["credentials", "anonymous"])
def test_malformed_requests_are_invalid_argument_everywhere(
    services: Services, stack: Stack, tenant: Tenant, with_credentials: bool
) -> None:
    before = _log_sizes(stack)
    wrong: list[str] = []
    request_ids: list[str] = []
    refused = 0
    for case in CASES:
        request_id = f"malformed-{uuid.uuid4().hex}"
        request_ids.append(request_id)
        metadata = (
            *(_credentials(case, services, tenant) if with_credentials else ()),
            ("x-request-id", request_id),
        )
        expect_refusal = with_credentials or case.access is None
        expected = (
            (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
            if expect_refusal
            else (grpc.StatusCode.UNAUTHENTICATED, "MISSING_CREDENTIALS")
        )
        try:
            _call(services.channel(case.service), case, metadata)
        except grpc.RpcError as error:
            try:
                got: tuple[object, str] = (error.code(), error_info(error).reason)
            except AssertionError:
                got = (error.code(), "no ErrorInfo")
        else:
            got = ("OK", "")
        if got != expected:
            wrong.append(f"{case}: {got}")
        refused += expect_refusal
    assert not wrong, "\n".join(wrong)

    lines = _new_lines(stack, before)
    ours = [line for line in lines if any(rid in line for rid in request_ids)]
    # grpc's own report of an exception escaping a handler carries no request id.
    unhandled = ("Unexpected [", "Exception calling application", "unhandled error in")
    assert not [line for line in ours if "Traceback" in line or '"level": "error"' in line]
    assert not [line for line in lines if any(marker in line for marker in unhandled)]
    warnings = [line for line in ours if "refused request to" in line]
    assert len(warnings) == refused, "one warning line per refused request"
    assert all('"level": "warning"' in line for line in warnings)


@pytest.mark.parametrize("service", sorted(SERVED_BY))
def test_health_check_and_watch_still_answer_while_wrapped(
    services: Services, service: str
) -> None:
    """Health's Watch writes with context.write instead of yielding; the wrapper that
    checks requests must pass its answers through."""
    stub = health_pb2_grpc.HealthStub(services.channel(service))
    request = health_pb2.HealthCheckRequest(service="")
    assert stub.Check(request, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    watch = stub.Watch(request, timeout=10)
    try:
        first = next(iter(watch))
    finally:
        watch.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
