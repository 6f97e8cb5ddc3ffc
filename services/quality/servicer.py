"""QualityService: translation only; the measurements are in shared imaging."""

from __future__ import annotations

from collections.abc import AsyncIterator

from imagepipe.v1 import quality_pb2 as pb
from imagepipe.v1 import quality_pb2_grpc as pb_grpc
from services.shared.errors import not_served_yet

__all__ = ["QualityServicer"]


class QualityServicer(pb_grpc.QualityServiceServicer):
    async def Compare(self, request: pb.CompareRequest, context: object) -> pb.CompareResponse:
        raise not_served_yet("Compare")

    async def CompareImages(
        self, request_iterator: AsyncIterator[pb.CompareImagesRequest], context: object
    ) -> pb.CompareImagesResponse:
        raise not_served_yet("CompareImages")
