"""QualityService: translation only; the use cases live in assessment.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

from imagepipe.v1 import quality_pb2 as pb
from imagepipe.v1 import quality_pb2_grpc as pb_grpc
from services.quality.assessment import Assessor
from services.shared.auth import current_tenant_id

__all__ = ["QualityServicer"]


class QualityServicer(pb_grpc.QualityServiceServicer):
    def __init__(self, assessor: Assessor) -> None:
        self._assessor = assessor

    async def Compare(self, request: pb.CompareRequest, context: object) -> pb.CompareResponse:
        return await self._assessor.compare_asset(current_tenant_id(), request.asset_id)

    async def CompareImages(
        self, request_iterator: AsyncIterator[pb.CompareImagesRequest], context: object
    ) -> pb.CompareImagesResponse:
        current_tenant_id()  # a tenant call, though no tenant data is touched
        return await self._assessor.compare_uploads(request_iterator)
