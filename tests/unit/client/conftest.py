"""A fresh fake imagepipe server per test, and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from imagepipe.client import AsyncClient
from tests.unit.client.fakes import FakeServer


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = await FakeServer.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient.from_env(fake.env(), timeout=10.0) as opened:
        yield opened
