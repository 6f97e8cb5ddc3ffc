"""Typed clients for service-to-service calls.

Every call carries the internal credential and the current request id, has a
deadline, and is retried by gRPC itself on UNAVAILABLE where repeating it is safe
(the retry policy lives in the channel's service config). Errors come back as our
domain errors, so a NOT_FOUND from catalog stays a NOT_FOUND for the tenant.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagepipe.v1 import catalog_internal_pb2 as internal_pb2
from imagepipe.v1 import catalog_internal_pb2_grpc as internal_grpc
from imagepipe.v1 import catalog_pb2, events_pb2
from services.shared.auth import Principal, PrincipalKind
from services.shared.errors import Unavailable, error_from_rpc
from services.shared.logs import request_id_var
from services.shared.settings import Settings

__all__ = [
    "CatalogInternalClient",
    "check_serving",
    "open_channel",
]

_Response = TypeVar("_Response")

# Methods whose repetition is harmless; gRPC retries these on UNAVAILABLE.
_RETRYABLE = (
    "Authenticate",
    "RegisterAsset",
    "MarkJobPublished",
    "CompleteJob",
    "FailJobAttempt",
    "RecordPoisonJob",
    "GetAssetObjects",
    "GetDeliveryAccess",
    "ResolveDelivery",
    "ClaimUnpublishedJobs",
    "ClaimRenderJobs",
)


def _service_config() -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [
                        {"service": "imagepipe.v1.CatalogInternalService", "method": m}
                        for m in _RETRYABLE
                    ],
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(target: str) -> grpc.aio.Channel:
    """A channel to another imagepipe service (lazy: connects on first call)."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _service_config()),
            ("grpc.keepalive_time_ms", 30_000),
            # A restarted peer is back within seconds: gRPC's default reconnect backoff
            # grows to 120 s, and every call meanwhile fails fast with UNAVAILABLE.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ],
    )


async def check_serving(channel: grpc.aio.Channel, service: str, timeout: float) -> None:
    """Raise unless the service behind `channel` reports SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise Unavailable(f"{service or 'service'} is not serving")


class CatalogInternalClient:
    """CatalogInternalService with credentials, deadlines and domain errors.

    Also the TenantAuthenticator of every service other than catalog.
    """

    service_name = "imagepipe.v1.CatalogInternalService"

    def __init__(self, channel: grpc.aio.Channel, settings: Settings) -> None:
        self._channel = channel
        self._stub = internal_grpc.CatalogInternalServiceStub(channel)
        self._token = settings.internal_token.get_secret_value()
        self._timeout = settings.rpc_timeout_seconds

    async def _call(
        self,
        method: Callable[..., Awaitable[_Response]],
        request: object,
        timeout: float | None = None,
    ) -> _Response:
        metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {self._token}"),)
        if request_id := request_id_var.get():
            metadata += (("x-request-id", request_id),)
        try:
            return await method(request, timeout=timeout or self._timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, service="catalog") from None

    async def check(self) -> None:
        await check_serving(self._channel, self.service_name, self._timeout)

    async def authenticate(self, api_key: str) -> Principal:
        response: internal_pb2.AuthenticateResponse = await self._call(
            self._stub.Authenticate, internal_pb2.AuthenticateRequest(api_key=api_key)
        )
        return Principal(PrincipalKind.TENANT, response.tenant_id, response.key_id)

    async def resolve_duplicate(
        self, tenant_id: str, content_hash: str
    ) -> internal_pb2.ResolveDuplicateResponse:
        return await self._call(
            self._stub.ResolveDuplicate,
            internal_pb2.ResolveDuplicateRequest(tenant_id=tenant_id, content_hash=content_hash),
        )

    async def register_asset(
        self, request: internal_pb2.RegisterAssetRequest
    ) -> internal_pb2.RegisterAssetResponse:
        return await self._call(self._stub.RegisterAsset, request)

    async def mark_job_published(self, job_id: str) -> None:
        await self._call(
            self._stub.MarkJobPublished, internal_pb2.MarkJobPublishedRequest(job_id=job_id)
        )

    async def claim_unpublished_jobs(
        self, request: internal_pb2.ClaimUnpublishedJobsRequest
    ) -> list[events_pb2.RenderRequest]:
        response: internal_pb2.ClaimUnpublishedJobsResponse = await self._call(
            self._stub.ClaimUnpublishedJobs, request
        )
        return list(response.render_requests)

    async def claim_render_jobs(
        self, *, limit: int, lease_seconds: int, owner: str
    ) -> list[events_pb2.RenderRequest]:
        response: internal_pb2.ClaimRenderJobsResponse = await self._call(
            self._stub.ClaimRenderJobs,
            internal_pb2.ClaimRenderJobsRequest(
                limit=limit, lease_seconds=lease_seconds, owner=owner
            ),
        )
        return list(response.render_requests)

    async def start_job_attempt(
        self, job_id: str, *, worker: str, lease_seconds: int
    ) -> internal_pb2.StartJobAttemptResponse:
        return await self._call(
            self._stub.StartJobAttempt,
            internal_pb2.StartJobAttemptRequest(
                job_id=job_id, worker=worker, lease_seconds=lease_seconds
            ),
        )

    async def complete_job(self, request: internal_pb2.CompleteJobRequest) -> None:
        await self._call(self._stub.CompleteJob, request)

    async def fail_job_attempt(
        self,
        job_id: str,
        attempt: int,
        error: str,
        *,
        transient: bool = False,
        retry_after_seconds: int = 0,
    ) -> None:
        await self._call(
            self._stub.FailJobAttempt,
            internal_pb2.FailJobAttemptRequest(
                job_id=job_id,
                attempt=attempt,
                error=_storable(error),
                transient=transient,
                retry_after_seconds=retry_after_seconds,
            ),
        )

    async def record_poison_job(
        self,
        request: events_pb2.RenderRequest,
        error: str,
        reason: catalog_pb2.PoisonReason.ValueType,
    ) -> bool:
        """True when recorded; False when the catalog spared the job (see
        RecordPoisonJobResponse.spared): deliver it again instead."""
        response = await self._call(
            self._stub.RecordPoisonJob,
            internal_pb2.RecordPoisonJobRequest(
                request=request, error=_storable(error), reason=reason
            ),
        )
        return not response.spared

    async def get_asset_objects(
        self, tenant_id: str, asset_id: str
    ) -> internal_pb2.GetAssetObjectsResponse:
        return await self._call(
            self._stub.GetAssetObjects,
            internal_pb2.GetAssetObjectsRequest(tenant_id=tenant_id, asset_id=asset_id),
        )

    async def get_delivery_access(
        self, tenant_id: str, key_id: str
    ) -> internal_pb2.GetDeliveryAccessResponse:
        """How the tenant's delivery URLs are checked; key_id empty for an unsigned URL."""
        return await self._call(
            self._stub.GetDeliveryAccess,
            internal_pb2.GetDeliveryAccessRequest(tenant_id=tenant_id, key_id=key_id),
        )

    async def resolve_delivery(
        self, tenant_id: str, asset_id: str, preset: str
    ) -> internal_pb2.ResolveDeliveryResponse:
        """The asset's status and the preset's renditions in every format."""
        return await self._call(
            self._stub.ResolveDelivery,
            internal_pb2.ResolveDeliveryRequest(
                tenant_id=tenant_id, asset_id=asset_id, preset=preset
            ),
        )


def _storable(text: str) -> str:
    """An error text the catalog accepts: it refuses NUL (PostgreSQL cannot store it),
    and a decoder's message may quote bytes of a hostile file."""
    return text.replace("\x00", "\\x00")
