"""The shared server bootstrap on a real port: auth, error mapping, health, reflection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import SecretStr

from devstack import free_port
from imagepipe.v1 import renderer_pb2, renderer_pb2_grpc
from services.shared.auth import Principal, PrincipalKind, current_tenant_id
from services.shared.errors import NotFound, Unauthenticated
from services.shared.server import GrpcService, ServiceSpec, serve
from services.shared.settings import Settings
from tests.helpers import error_info

ADMIN = "admin-key-for-unit-tests"
TENANT_KEY = "ip_0123456789abcdef_" + "ab" * 20


class Tenants:
    async def authenticate(self, api_key: str) -> Principal:
        if api_key != TENANT_KEY:
            raise Unauthenticated("unknown or revoked API key", reason="INVALID_API_KEY")
        return Principal(PrincipalKind.TENANT, "t-1", "0123456789abcdef")


class Renderer(renderer_pb2_grpc.RendererServiceServicer):
    async def ListPresets(
        self, request: renderer_pb2.ListPresetsRequest, context: object
    ) -> renderer_pb2.ListPresetsResponse:
        if current_tenant_id() != "t-1":
            raise AssertionError("tenant not set")
        raise NotFound("no presets here", reason="PRESETS_NOT_FOUND", metadata={"where": "unit"})

    async def GetRendererStatus(
        self, request: renderer_pb2.GetRendererStatusRequest, context: object
    ) -> renderer_pb2.GetRendererStatusResponse:
        raise NotImplementedError


async def _until_accepting(address: str, task: asyncio.Task[None]) -> None:
    """Until the server accepts connections (or fails: its task ends first)."""
    async with grpc.aio.insecure_channel(address) as channel:
        ready = asyncio.create_task(channel.channel_ready())
        done, _ = await asyncio.wait({ready, task}, timeout=30, return_when="FIRST_COMPLETED")
        if ready not in done:
            ready.cancel()
            if task in done:
                task.result()  # the server's own error, if it raised one
            raise AssertionError(f"the server at {address} never accepted a connection")


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    port = free_port()
    settings = Settings(
        admin_key=SecretStr(ADMIN),
        internal_token=SecretStr("internal-unit"),
        health_interval_seconds=0.2,
    )
    dependency_up = asyncio.Event()

    async def dependency() -> None:
        if not dependency_up.is_set():
            raise ConnectionError("dependency down")

    spec = ServiceSpec(
        name="unit",
        port=port,
        metrics_port=0,
        services=[
            GrpcService(
                renderer_pb2.DESCRIPTOR.services_by_name["RendererService"],
                Renderer(),
                renderer_pb2_grpc.add_RendererServiceServicer_to_server,
            )
        ],
        authenticator=Tenants(),
        checks={"dependency": dependency},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(spec, settings, stop=stop))
    address = f"127.0.0.1:{port}"
    await _until_accepting(address, task)
    yield address, dependency_up
    stop.set()
    await asyncio.wait_for(task, 15)


async def test_errors_carry_code_reason_and_request_id(server: tuple[str, asyncio.Event]) -> None:
    address, _ = server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = renderer_pb2_grpc.RendererServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.ListPresets(
                renderer_pb2.ListPresetsRequest(),
                metadata=(("authorization", f"Bearer {TENANT_KEY}"), ("x-request-id", "req-42")),
            )
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        info = error_info(failed.value)
        assert info.reason == "PRESETS_NOT_FOUND"
        assert dict(info.metadata) == {"where": "unit", "request_id": "req-42"}


async def test_calls_without_the_right_credentials_are_refused(
    server: tuple[str, asyncio.Event],
) -> None:
    address, _ = server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = renderer_pb2_grpc.RendererServiceStub(channel)
        for metadata, code in [
            ((), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer ip_nope"),), grpc.StatusCode.UNAUTHENTICATED),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.ListPresets(renderer_pb2.ListPresetsRequest(), metadata=metadata)
            assert failed.value.code() == code
        # A tenant key on an admin RPC.
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.GetRendererStatus(
                renderer_pb2.GetRendererStatusRequest(),
                metadata=(("authorization", f"Bearer {TENANT_KEY}"),),
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unimplemented_rpcs_say_so(server: tuple[str, asyncio.Event]) -> None:
    address, _ = server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = renderer_pb2_grpc.RendererServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetRendererStatus(
                renderer_pb2.GetRendererStatusRequest(),
                metadata=(("authorization", f"Bearer {ADMIN}"),),
            )
        assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert error_info(failed.value).reason == "NOT_IMPLEMENTED"


async def test_health_follows_dependencies(server: tuple[str, asyncio.Event]) -> None:
    address, dependency_up = server
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="imagepipe.v1.RendererService")
        assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # Watch streams every change of status: wait for the change itself, not a while.
        watch = health.Watch(request)
        first = await asyncio.wait_for(watch.read(), 30)
        assert first.status == health_pb2.HealthCheckResponse.NOT_SERVING
        dependency_up.set()
        changed = await asyncio.wait_for(watch.read(), 30)
        watch.cancel()
        assert changed.status == health_pb2.HealthCheckResponse.SERVING
        assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_services_and_keeps_comments(
    server: tuple[str, asyncio.Event],
) -> None:
    address, _ = server
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            yield reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="imagepipe.v1.RendererService"
            )

        answers = [answer async for answer in stub.ServerReflectionInfo(ask())]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"imagepipe.v1.RendererService", "grpc.health.v1.Health"} <= names
    first = descriptor_pb2.FileDescriptorProto.FromString(
        answers[1].file_descriptor_response.file_descriptor_proto[0]
    )
    comments = " ".join(loc.leading_comments for loc in first.source_code_info.location)
    assert "ListPresets returns the service's default presets" in comments
