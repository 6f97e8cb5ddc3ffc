"""Typed async client of imagepipe, for applications and the `imagepipe` CLI.

It depends only on the generated contract (``imagepipe.v1``) and gRPC, never on the
services' code, so any back end can install and import it::

    from imagepipe.client import AsyncClient, ImagepipeError

    async with AsyncClient.from_env() as client:
        result = await client.upload("photo.jpg", labels={"album": "summer"})
        asset = await client.wait_ready(result.asset_id)
        url = await client.delivery_url(asset.asset_id, "card")  # signed locally
"""

from imagepipe.client._channels import DEFAULT_ADDRESSES, RETRYABLE_READS, service_config
from imagepipe.client._client import (
    CHUNK_SIZE,
    DEFAULT_DELIVERY_URL,
    DEFAULT_TIMEOUT,
    AsyncClient,
    CreatedSigningKey,
    CreatedTenant,
    DeliveryLink,
    RenditionContent,
    RenditionLink,
    UploadResult,
    new_request_id,
)
from imagepipe.client.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    ImagepipeError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from imagepipe.client.names import (
    TERMINAL_STATUSES,
    format_name,
    job_state_name,
    parse_format,
    parse_formats,
    parse_status,
    status_name,
)

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_ADDRESSES",
    "DEFAULT_DELIVERY_URL",
    "DEFAULT_TIMEOUT",
    "RETRYABLE_READS",
    "TERMINAL_STATUSES",
    "AlreadyExists",
    "AsyncClient",
    "CreatedSigningKey",
    "CreatedTenant",
    "DeadlineExceeded",
    "DeliveryLink",
    "FailedPrecondition",
    "ImagepipeError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RenditionContent",
    "RenditionLink",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UploadResult",
    "format_name",
    "job_state_name",
    "new_request_id",
    "parse_format",
    "parse_formats",
    "parse_status",
    "service_config",
    "status_name",
]
