"""The chaos uploader: sends the batch over the fault window and records every answer.

Upload i is sent no earlier than `i * window / len(batch)` seconds after the start, from
a few threads, so uploads keep arriving while faults come and go. Like a client, it
retries an upload answered UNAVAILABLE or DEADLINE_EXCEEDED (a dependency is down, or
the answer was lost); after `tries` it gives up and the upload counts as refused, not
lost: only uploads answered OK are promises the checker holds the system to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from imagepipe.v1 import ingest_pb2_grpc
from tests.chaos.batch import Item
from tests.helpers import Tenant, upload_messages

__all__ = ["ChaosUploader"]

_RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A restarted ingest is reached again within a second, not after gRPC's default
# reconnect backoff (up to two minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass
class ChaosUploader:
    address: str
    tenants: list[Tenant]
    window: float
    tries: int = 30
    on_accepted: Callable[[Item, str], None] = lambda item, asset_id: None
    accepted: dict[int, str] = field(default_factory=dict)  # item index -> asset id
    refused: dict[int, str] = field(default_factory=dict)  # item index -> last status
    rejected: dict[int, str] = field(default_factory=dict)  # answered another error
    retried_answers: int = 0  # UNAVAILABLE / DEADLINE_EXCEEDED answers, retried
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self, items: list[Item], started: float, threads: int = 4) -> None:
        channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        spacing = self.window / max(len(items), 1)

        def send(item: Item) -> None:
            delay = started + item.index * spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing: upload i is due at i * spacing
            self._upload(stub, item)

        def run() -> None:
            try:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(send, items))
            finally:
                channel.close()

        self._thread = threading.Thread(target=run, name="uploader", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        assert self._thread is not None
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _upload(self, stub: ingest_pb2_grpc.IngestServiceStub, item: Item) -> None:
        tenant = self.tenants[item.tenant]
        last = ""
        for _ in range(self.tries):
            try:
                response = stub.Upload(
                    upload_messages(item.data, filename=item.filename),
                    metadata=tenant.metadata,
                    timeout=30,
                )
            except grpc.RpcError as error:
                last = f"{error.code().name}: {error.details()}"
                if error.code() in _RETRIED:
                    with self._lock:
                        self.retried_answers += 1
                    time.sleep(0.5)
                    continue
                with self._lock:
                    self.rejected[item.index] = last
                return
            asset_id = response.asset.asset_id
            with self._lock:
                self.accepted[item.index] = asset_id
            self.on_accepted(item, asset_id)
            return
        with self._lock:
            self.refused[item.index] = last
