"""Where the services are by default and how channels to them are opened."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

__all__ = [
    "DEFAULT_ADDRESSES",
    "RETRYABLE_READS",
    "open_channel",
    "service_config",
]

DEFAULT_ADDRESSES: Mapping[str, str] = {
    "ingest": "127.0.0.1:50051",
    "catalog": "127.0.0.1:50052",
    "renderer": "127.0.0.1:50053",
    "quality": "127.0.0.1:50054",
}

# Unary reads: repeating one is harmless, so gRPC itself retries them on UNAVAILABLE.
# Writes are left out (CreateTenant twice would make two tenants, or fail the second
# time with ALREADY_EXISTS and hide the first answer); Upload retries in the client.
RETRYABLE_READS: Mapping[str, tuple[str, ...]] = {
    "imagepipe.v1.CatalogService": (
        "GetAsset",
        "ListAssets",
        "FindSimilar",
        "GetRendition",
        "GetJob",
        "ListJobs",
        "ListPoisonJobs",
        "GetTenantMetrics",
        "ListSigningKeys",
        "GetTenantSettings",
        # Signs a URL and stores nothing: asking twice is harmless.
        "GetDeliveryUrl",
    ),
    "imagepipe.v1.RendererService": ("ListPresets", "GetRendererStatus"),
    "imagepipe.v1.QualityService": ("Compare",),
    "imagepipe.v1.TenantAdminService": ("ListTenants", "ListApiKeys"),
}


def service_config(max_attempts: int = 4) -> str:
    """The channel's service config: a retry policy on UNAVAILABLE for the reads.

    `max_attempts` counts the first try; 1 turns retries off.
    """
    if max_attempts <= 1:
        return json.dumps({"methodConfig": []})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [
                        {"service": service, "method": method}
                        for service, methods in RETRYABLE_READS.items()
                        for method in methods
                    ],
                    "retryPolicy": {
                        # gRPC caps this at 5 whatever is asked for.
                        "maxAttempts": min(max_attempts, 5),
                        "initialBackoff": "0.2s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(
    address: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    retry_attempts: int = 4,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to one service; it connects on first use."""
    channel_options: list[tuple[str, Any]] = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(retry_attempts)),
        ("grpc.primary_user_agent", "imagepipe-python-client"),
        *options,
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=channel_options)
    return grpc.aio.secure_channel(address, credentials, options=channel_options)
