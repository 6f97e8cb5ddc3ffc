"""How the client makes one call: channel, key and request id in the metadata, deadline.

Every unary call goes through :meth:`Calls.unary`, so every failure is mapped by
:func:`map_rpc_errors` in the same way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeAlias, TypeVar

import grpc

from imagepipe.client._channels import open_channel
from imagepipe.client._errors import map_rpc_errors
from imagepipe.client._settings import ClientSettings
from imagepipe.client.errors import ImagepipeError

__all__ = ["ENV_ADMIN_KEY", "ENV_API_KEY", "Calls", "Metadata", "new_request_id"]

ENV_API_KEY = "IMAGEPIPE_API_KEY"
ENV_ADMIN_KEY = "IMAGEPIPE_ADMIN_KEY"

Metadata: TypeAlias = tuple[tuple[str, str], ...]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class _Page(Protocol):
    """A List* response: AIP-158 paging."""

    @property
    def next_page_token(self) -> str: ...


_PageT = TypeVar("_PageT", bound=_Page)


def new_request_id() -> str:
    return uuid.uuid4().hex


class Calls:
    """One client's channels, keys and default deadline."""

    def __init__(self, settings: ClientSettings) -> None:
        self._api_key = settings.api_key or None
        self._admin_key = settings.admin_key or None
        self.addresses = dict(settings.addresses)
        self.timeout = settings.timeout
        self._retry_attempts = settings.retry_attempts
        self._credentials = settings.credentials
        self._channel_options = tuple(settings.channel_options)
        # One channel per address: services that share an address share a connection.
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to `service`, opened on first use (inside the running loop)."""
        address = self.addresses[service]
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(
                address,
                credentials=self._credentials,
                retry_attempts=self._retry_attempts,
                options=self._channel_options,
            )
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        await asyncio.gather(*(channel.close() for channel in channels))

    def tenant_metadata(self, request_id: str) -> Metadata:
        if not self._api_key:
            raise ImagepipeError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"no tenant API key: set {ENV_API_KEY} or pass api_key",
                reason="API_KEY_MISSING",
                request_id=request_id,
            )
        return (("authorization", f"Bearer {self._api_key}"), ("x-request-id", request_id))

    def admin_metadata(self, request_id: str) -> Metadata:
        if not self._admin_key:
            raise ImagepipeError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"no admin key: set {ENV_ADMIN_KEY} or pass admin_key",
                reason="ADMIN_KEY_MISSING",
                request_id=request_id,
            )
        return (("authorization", f"Bearer {self._admin_key}"), ("x-request-id", request_id))

    async def tenant(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        request_id: str | None,
        timeout: float | None,
    ) -> _Response:
        """One unary call as the tenant; a new request id unless the caller gave one."""
        rid = request_id or new_request_id()
        return await self.unary(method, request, self.tenant_metadata(rid), rid, timeout)

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        metadata: Metadata,
        request_id: str,
        timeout: float | None,
    ) -> _Response:
        """One unary call; `timeout` None or 0 means the client's default deadline."""
        with map_rpc_errors(request_id):
            return await method(request, timeout=timeout or self.timeout, metadata=metadata)

    async def pages(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _PageT],
        request_for: Callable[[str], _Request],
        metadata: Metadata,
        request_id: str,
        timeout: float | None,
    ) -> AsyncIterator[_PageT]:
        """Every page of a List* call, following next_page_token until it is empty."""
        token = ""
        while True:
            page = await self.unary(method, request_for(token), metadata, request_id, timeout)
            yield page
            token = page.next_page_token
            if not token:
                return
