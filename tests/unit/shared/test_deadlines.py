"""The caller's deadline reaches the code a servicer calls (services/shared/deadlines.py)."""

from __future__ import annotations

import asyncio

import grpc
from pydantic import SecretStr

from devstack import free_port
from imagepipe.v1 import renderer_pb2, renderer_pb2_grpc
from services.shared.auth import Principal, PrincipalKind
from services.shared.deadlines import reset_deadline, set_deadline, time_remaining
from services.shared.server import GrpcService, ServiceSpec, serve
from services.shared.settings import Settings

TENANT_KEY = "ip_0123456789abcdef_" + "cd" * 20


class Tenants:
    async def authenticate(self, api_key: str) -> Principal:
        return Principal(PrincipalKind.TENANT, "t-1", "0123456789abcdef")


class Recorder(renderer_pb2_grpc.RendererServiceServicer):
    def __init__(self) -> None:
        self.seen: list[float | None] = []

    async def ListPresets(
        self, request: renderer_pb2.ListPresetsRequest, context: object
    ) -> renderer_pb2.ListPresetsResponse:
        self.seen.append(time_remaining())
        return renderer_pb2.ListPresetsResponse()

    async def GetRendererStatus(
        self, request: renderer_pb2.GetRendererStatusRequest, context: object
    ) -> renderer_pb2.GetRendererStatusResponse:
        raise NotImplementedError


def test_time_remaining_counts_down_from_what_was_set() -> None:
    assert time_remaining() is None
    token = set_deadline(30)
    try:
        remaining = time_remaining()
        assert remaining is not None and 0 < remaining <= 30
    finally:
        reset_deadline(token)
    assert time_remaining() is None
    token = set_deadline(-5)
    try:
        assert time_remaining() == 0
    finally:
        reset_deadline(token)


async def test_the_server_records_each_callers_deadline() -> None:
    port = free_port()
    recorder = Recorder()
    spec = ServiceSpec(
        name="unit",
        port=port,
        metrics_port=0,
        services=[
            GrpcService(
                renderer_pb2.DESCRIPTOR.services_by_name["RendererService"],
                recorder,
                renderer_pb2_grpc.add_RendererServiceServicer_to_server,
            )
        ],
        authenticator=Tenants(),
        checks={},
    )
    settings = Settings(admin_key=SecretStr("a" * 24), internal_token=SecretStr("i" * 24))
    stop = asyncio.Event()
    task = asyncio.create_task(serve(spec, settings, stop=stop))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = renderer_pb2_grpc.RendererServiceStub(channel)
            metadata = (("authorization", f"Bearer {TENANT_KEY}"),)
            await stub.ListPresets(renderer_pb2.ListPresetsRequest(), metadata=metadata, timeout=20)
            await stub.ListPresets(renderer_pb2.ListPresetsRequest(), metadata=metadata)
    finally:
        stop.set()
        await task
    with_deadline, without = recorder.seen
    # The client's 20 s, as the server's clock converts it (a little either side).
    assert with_deadline is not None and 0 < with_deadline < 25
    assert without is None
