"""IngestService: translation only; the upload path lives in upload.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

from imagepipe.v1 import ingest_pb2 as pb
from imagepipe.v1 import ingest_pb2_grpc as pb_grpc
from services.ingest.upload import Uploads
from services.shared.auth import current_tenant_id
from services.shared.logs import request_id_var

__all__ = ["IngestServicer"]


class IngestServicer(pb_grpc.IngestServiceServicer):
    def __init__(self, uploads: Uploads) -> None:
        self._uploads = uploads

    async def Upload(
        self, request_iterator: AsyncIterator[pb.UploadRequest], context: object
    ) -> pb.UploadResponse:
        result = await self._uploads.receive(
            request_iterator, tenant_id=current_tenant_id(), request_id=request_id_var.get()
        )
        return pb.UploadResponse(
            asset=result.asset,
            deduplicated=result.deduplicated,
            near_duplicates=result.near_duplicates,
        )
