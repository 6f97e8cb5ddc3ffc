"""The caches on their own: single flight, per-entry TTLs, the byte-bounded LRU."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import REGISTRY

from services.delivery.caches import LookupCache, ObjectCache, SingleFlight
from services.shared.errors import Unavailable
from tests.unit.delivery.fakes import CountingStore, FakeClock


def _count(cache: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "imagepipe_delivery_cache_total", {"cache": cache, "result": result}
    )
    return value or 0.0


async def test_one_call_serves_every_concurrent_caller_even_if_the_first_leaves() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    first = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    others = [asyncio.create_task(flight.run("k", load)) for _ in range(5)]
    await asyncio.sleep(0)
    first.cancel()  # its client went away
    gate.set()
    assert await asyncio.gather(*others) == [(42, True)] * 5
    assert calls == 1
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await flight.run("k", load) == (42, False), "a later call is a new one"


async def test_an_error_reaches_every_waiter_and_is_not_kept() -> None:
    clock = FakeClock()
    cache: LookupCache[str, str] = LookupCache("lookup", ttl_of=lambda _v: 30.0, timer=clock)
    answers: list[str | Exception] = [Unavailable("down"), "up"]

    async def load() -> str:
        await asyncio.sleep(0)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    results = await asyncio.gather(
        cache.get("k", load), cache.get("k", load), return_exceptions=True
    )
    assert all(isinstance(result, Unavailable) for result in results)
    assert await cache.get("k", load) == "up"


async def test_each_entry_lives_for_its_own_ttl() -> None:
    clock = FakeClock()
    cache: LookupCache[str, float] = LookupCache("lookup", ttl_of=lambda ttl: ttl, timer=clock)
    loads: list[str] = []

    def loader(key: str, ttl: float) -> Callable[[], Awaitable[float]]:
        async def load() -> float:
            loads.append(key)
            return ttl

        return load

    hits, misses = _count("lookup", "hit"), _count("lookup", "miss")
    await cache.get("short", loader("short", 1.0))
    await cache.get("long", loader("long", 30.0))
    clock.now += 1.5
    await cache.get("short", loader("short", 1.0))
    await cache.get("long", loader("long", 30.0))
    assert loads == ["short", "long", "short"]
    assert (_count("lookup", "hit") - hits, _count("lookup", "miss") - misses) == (1, 3)


async def test_a_zero_ttl_keeps_nothing() -> None:
    cache: LookupCache[str, int] = LookupCache("lookup", ttl_of=lambda _v: 0.0, timer=FakeClock())
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert [await cache.get("k", load) for _ in range(3)] == [1, 2, 3]


async def test_the_object_cache_is_bounded_in_bytes_least_recently_used_out() -> None:
    store = CountingStore()
    for name in "abc":
        store.objects[name] = (name.encode() * 400, "image/jpeg", dt.datetime.now(dt.UTC))
    cache = ObjectCache(store, max_bytes=1000, max_object_bytes=500)
    assert cache.keeps(500) and not cache.keeps(501)
    await cache.get("a")
    await cache.get("b")  # 800 bytes held
    await cache.get("a")  # a is now the most recent
    await cache.get("c")  # b goes
    assert store.reads == 3
    await cache.get("a")
    await cache.get("c")
    assert store.reads == 3
    await cache.get("b")
    assert store.reads == 4


async def test_an_object_cache_of_zero_bytes_keeps_nothing() -> None:
    cache = ObjectCache(CountingStore(), max_bytes=0, max_object_bytes=512 * 1024)
    assert not cache.keeps(0) and not cache.keeps(1)
