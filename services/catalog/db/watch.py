"""WatchAsset without polling: PostgreSQL LISTEN/NOTIFY on one shared connection.

A trigger announces every asset status change on `imagepipe_asset_status`. The hub
holds the catalog's only LISTEN connection and sets the events of that asset's
watchers; each watcher re-reads the asset and streams it if its status changed. A
cancelled or expired watch only drops its event: it owns no connection. When the
LISTEN connection is lost, every watcher is woken to re-read (notifications may have
been missed) and the hub reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterator

import asyncpg
from prometheus_client import Gauge

from services.shared.errors import Unavailable
from services.shared.logs import get_logger

__all__ = ["CHANNEL", "AssetWatchHub"]

log = get_logger(__name__)

CHANNEL = "imagepipe_asset_status"
WATCHERS = Gauge("imagepipe_asset_watchers", "WatchAsset streams open on this catalog.")
RECONNECT_SECONDS = 1.0


class AssetWatchHub:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._watchers: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._connection: asyncpg.Connection | None = None
        self._stopping = asyncio.Event()
        self._lost = asyncio.Event()

    @property
    def watching(self) -> int:
        return sum(len(events) for events in self._watchers.values())

    @contextlib.contextmanager
    def subscribe(self, asset_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the asset's status may have changed."""
        event = asyncio.Event()
        self._watchers[asset_id].add(event)
        WATCHERS.inc()
        try:
            yield event
        finally:
            WATCHERS.dec()
            self._watchers[asset_id].discard(event)
            if not self._watchers[asset_id]:
                del self._watchers[asset_id]

    def _notify(self, connection: object, pid: int, channel: str, payload: object) -> None:
        asset, _, _status = str(payload).partition(" ")
        try:
            asset_id = uuid.UUID(asset)
        except ValueError:
            return
        for event in self._watchers.get(asset_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._watchers.values():
            for event in events:
                event.set()

    async def check(self) -> None:
        if self._connection is None or self._connection.is_closed():
            raise Unavailable("not listening for asset changes", reason="WATCH_UNAVAILABLE")

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                connection = await asyncpg.connect(self._dsn)
                self._lost.clear()
                connection.add_termination_listener(lambda _: self._lost.set())
                await connection.add_listener(CHANNEL, self._notify)
                self._connection = connection
                self._wake_all()  # anything may have changed while we were not listening
                stopping = asyncio.create_task(self._stopping.wait())
                lost = asyncio.create_task(self._lost.wait())
                await asyncio.wait([stopping, lost], return_when=asyncio.FIRST_COMPLETED)
                for task in (stopping, lost):
                    task.cancel()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("LISTEN connection unavailable: %s", error)
            finally:
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        await self._connection.close(timeout=2)
                    self._connection = None
            if not self._stopping.is_set():
                self._wake_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), RECONNECT_SECONDS)

    async def stop(self, grace: float) -> None:
        self._stopping.set()
        self._wake_all()
