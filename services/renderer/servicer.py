"""RendererService: presets and status. Rendering itself is driven by the broker."""

from __future__ import annotations

from typing import Protocol

from imagepipe.v1 import renderer_pb2 as pb
from imagepipe.v1 import renderer_pb2_grpc as pb_grpc
from services.shared.preset_wire import preset_messages
from services.shared.presets import Preset

__all__ = ["RendererServicer"]


class ConsumerStatus(Protocol):
    concurrency: int
    jobs_done: int
    attempts_failed: int
    queue_depth: int

    @property
    def in_flight(self) -> int: ...

    @property
    def connected(self) -> bool: ...


class PollerStatus(Protocol):
    polling: bool


class RendererServicer(pb_grpc.RendererServiceServicer):
    def __init__(
        self, presets: list[Preset], consumer: ConsumerStatus, poller: PollerStatus, worker: str
    ) -> None:
        self._presets = sorted(presets, key=lambda p: p.max_width * p.max_height, reverse=True)
        self._consumer = consumer
        self._poller = poller
        self._worker = worker

    async def ListPresets(
        self, request: pb.ListPresetsRequest, context: object
    ) -> pb.ListPresetsResponse:
        return pb.ListPresetsResponse(presets=preset_messages(self._presets))

    async def GetRendererStatus(
        self, request: pb.GetRendererStatusRequest, context: object
    ) -> pb.GetRendererStatusResponse:
        consumer = self._consumer
        return pb.GetRendererStatusResponse(
            mode=(
                pb.CONSUME_MODE_CATALOG_POLLING if self._poller.polling else pb.CONSUME_MODE_BROKER
            ),
            concurrency=consumer.concurrency,
            in_flight=consumer.in_flight,
            jobs_done=consumer.jobs_done,
            attempts_failed=consumer.attempts_failed,
            queue_depth=consumer.queue_depth,
            worker=self._worker,
        )
