"""Waiting for an asset to settle: WatchAsset, or GetAsset polls on servers without it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeAlias

import grpc

from imagepipe.client._errors import map_rpc_errors
from imagepipe.client.errors import DeadlineExceeded, ImagepipeError, Unavailable, Unimplemented
from imagepipe.client.names import TERMINAL_STATUSES, status_name
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2

__all__ = ["POLL_INTERVAL", "AssetWait"]

POLL_INTERVAL = 0.25

_Metadata: TypeAlias = tuple[tuple[str, str], ...]


@dataclass
class AssetWait:
    """Follows one asset until it is ready, failed or deleted, or time runs out.

    A stream that ends early, a deadline and an unreachable server are all worth
    another try while time is left; any other error ends the wait at once.
    """

    stub: catalog_pb2_grpc.CatalogServiceAsyncStub
    asset_id: str
    metadata: _Metadata
    request_id: str
    read_timeout: float  # the deadline of one GetAsset poll
    last: common_pb2.Asset | None = None
    unreachable: ImagepipeError | None = None

    async def run(self, timeout: float, poll_interval: float) -> common_pb2.Asset:
        """The settled asset; DEADLINE_EXCEEDED (reason WAIT_TIMEOUT) after `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        watching = True
        while (remaining := deadline - loop.time()) > 0:
            if watching:
                try:
                    settled = await self._watch(remaining)
                except Unimplemented:
                    watching = False
                    continue
            else:
                settled = await self._poll(remaining)
            if settled is not None:
                return settled
            await asyncio.sleep(max(0.0, min(poll_interval, deadline - loop.time())))
        raise self._expired(timeout)

    async def _watch(self, remaining: float) -> common_pb2.Asset | None:
        """Follow WatchAsset; None when the stream ended or failed in a retryable way."""
        try:
            with map_rpc_errors(self.request_id):
                call = self.stub.WatchAsset(
                    catalog_pb2.WatchAssetRequest(asset_id=self.asset_id),
                    timeout=remaining,
                    metadata=self.metadata,
                )
                try:
                    async for update in call:
                        if self._settled(update.asset):
                            return update.asset
                finally:
                    call.cancel()  # no-op once the stream has ended on its own
        except Unavailable as error:
            self.unreachable = error
        except DeadlineExceeded:
            pass
        return None

    async def _poll(self, remaining: float) -> common_pb2.Asset | None:
        """One GetAsset; None while the asset is still changing or the read failed retryably."""
        try:
            with map_rpc_errors(self.request_id):
                response = await self.stub.GetAsset(
                    catalog_pb2.GetAssetRequest(asset_id=self.asset_id),
                    timeout=min(self.read_timeout, remaining),
                    metadata=self.metadata,
                )
        except Unavailable as error:
            self.unreachable = error
            return None
        except DeadlineExceeded:
            return None
        return response.asset if self._settled(response.asset) else None

    def _settled(self, asset: common_pb2.Asset) -> bool:
        self.last = asset
        return asset.status in TERMINAL_STATUSES

    def _expired(self, timeout: float) -> ImagepipeError:
        if self.last is None and self.unreachable is not None:
            # Never got an answer: the unreachable server is the news, not the wait.
            return self.unreachable
        seen = f" (still {status_name(self.last.status)})" if self.last is not None else ""
        return ImagepipeError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"asset {self.asset_id} not ready after {timeout:g} s{seen}",
            reason="WAIT_TIMEOUT",
            metadata={"asset_id": self.asset_id},
            request_id=self.request_id,
        )
