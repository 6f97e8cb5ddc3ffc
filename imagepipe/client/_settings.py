"""How an AsyncClient reaches and calls the services: one typed object, defaults in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import grpc

from imagepipe.client._channels import DEFAULT_ADDRESSES
from imagepipe.client._upload import MIN_UPLOAD_RATE

__all__ = ["DEFAULT_DELIVERY_URL", "DEFAULT_TIMEOUT", "ClientOptions", "ClientSettings"]

DEFAULT_TIMEOUT = 30.0
# Where `make run` serves delivery URLs (IMAGEPIPE_DELIVERY_PUBLIC_URL of the stack).
DEFAULT_DELIVERY_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """Keys, addresses, deadlines and retry budgets of one client.

    `timeout` is the deadline of a unary call; uploads get it plus their size at
    `min_upload_rate`. `retry_attempts` is gRPC's budget for unary reads on
    UNAVAILABLE (1: none), `upload_attempts` the client's own for uploads.
    `delivery_url` is the base URL browsers reach delivery at; `signing_key_id` and
    `signing_secret` sign delivery URLs locally (neither: unsigned URLs). Keys and the
    signing secret are left out of the repr.
    """

    api_key: str | None = field(default=None, repr=False)
    admin_key: str | None = field(default=None, repr=False)
    ingest_addr: str = DEFAULT_ADDRESSES["ingest"]
    catalog_addr: str = DEFAULT_ADDRESSES["catalog"]
    renderer_addr: str = DEFAULT_ADDRESSES["renderer"]
    quality_addr: str = DEFAULT_ADDRESSES["quality"]
    timeout: float = DEFAULT_TIMEOUT
    retry_attempts: int = 4
    upload_attempts: int = 4
    min_upload_rate: float = MIN_UPLOAD_RATE
    credentials: grpc.ChannelCredentials | None = None
    channel_options: Sequence[tuple[str, Any]] = ()
    delivery_url: str = DEFAULT_DELIVERY_URL
    signing_key_id: str | None = None
    signing_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.min_upload_rate <= 0:
            raise ValueError("timeout and min_upload_rate must be positive")
        if self.upload_attempts < 1:
            raise ValueError("upload_attempts must be at least 1")

    @property
    def addresses(self) -> Mapping[str, str]:
        return {
            "ingest": self.ingest_addr,
            "catalog": self.catalog_addr,
            "renderer": self.renderer_addr,
            "quality": self.quality_addr,
        }


class ClientOptions(TypedDict, total=False):
    """AsyncClient's keyword arguments: ClientSettings' fields after api_key.

    Spelled out again so type checkers check every call (PEP 692); mypy checks that
    they still match ClientSettings where AsyncClient builds it.
    """

    admin_key: str | None
    ingest_addr: str
    catalog_addr: str
    renderer_addr: str
    quality_addr: str
    timeout: float
    retry_attempts: int
    upload_attempts: int
    min_upload_rate: float
    credentials: grpc.ChannelCredentials | None
    channel_options: Sequence[tuple[str, Any]]
    delivery_url: str
    signing_key_id: str | None
    signing_secret: str | None
