"""Paging of every listing through the one `paginate`: pages of the asked size,
newest first, each row once; a next token only when more rows follow; a token only
for the listing and filters it came from."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from services.catalog.model import AssetFilter, AssetStatus, JobState, PoisonReason
from services.catalog.usecases.assets import list_assets
from services.catalog.usecases.jobs import list_jobs
from services.catalog.usecases.paging import DEFAULT_PAGE_SIZE, Page, paginate
from services.catalog.usecases.poison import list_poison_jobs, retry_poison_job
from services.catalog.usecases.tenants import create_tenant, list_tenants
from services.shared.errors import InvalidArgument, NotFound
from tests.unit.catalog.fakes import FakeCatalog, FakeClock, new_asset, registered

_T = TypeVar("_T")
TENANT = uuid.uuid4()


async def _pages(
    fetch: Callable[[str], Awaitable[Page[_T]]], *, token: str = "", most: int = 100
) -> list[list[_T]]:
    """Every page of a listing from `token` on (the first page by default)."""
    pages: list[list[_T]] = []
    while len(pages) < most:
        page = await fetch(token)
        pages.append(page.items)
        if not page.next_page_token:
            return pages
        token = page.next_page_token
    raise AssertionError("the listing never ended")


async def _assets(catalog: FakeCatalog, count: int, tenant: uuid.UUID = TENANT) -> list[uuid.UUID]:
    """`count` new assets of the tenant, newest first."""
    made = [(await registered(catalog, new_asset(tenant)))[0].id for _ in range(count)]
    return made[::-1]


def _asset_pages(
    catalog: FakeCatalog, size: int, status: AssetStatus | None = None
) -> Callable[[str], Awaitable[Page[uuid.UUID]]]:
    async def fetch(token: str) -> Page[uuid.UUID]:
        page = await list_assets(
            catalog.assets,
            tenant_id=TENANT,
            where=AssetFilter(status=status),
            page_size=size,
            page_token=token,
        )
        return Page([a.asset.id for a in page.items], page.next_page_token)

    return fetch


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 4, 7])
async def test_paginate_fetches_one_row_more_to_know_whether_a_page_follows(rows: int) -> None:
    size = 3
    asked: list[int] = []

    async def fetch(limit: int) -> list[int]:
        asked.append(limit)
        return list(range(rows))[:limit]

    page = await paginate(fetch, size=size, token_of=lambda n: f"after {n}")

    assert asked == [size + 1]
    assert page.items == list(range(min(rows, size)))
    assert page.next_page_token == (f"after {size - 1}" if rows > size else "")


async def test_assets_come_newest_first_in_pages_of_the_asked_size() -> None:
    catalog = FakeCatalog()
    newest_first = await _assets(catalog, 7)

    pages = await _pages(_asset_pages(catalog, 3))

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [a for p in pages for a in p] == newest_first


async def test_a_last_full_page_has_no_next_token() -> None:
    catalog = FakeCatalog()
    newest_first = await _assets(catalog, 6)
    pages = await _pages(_asset_pages(catalog, 3))
    assert [len(p) for p in pages] == [3, 3]
    assert [a for p in pages for a in p] == newest_first
    assert await _pages(_asset_pages(FakeCatalog(), 3)) == [[]]


async def test_rows_made_at_the_same_moment_are_each_listed_once() -> None:
    catalog = FakeCatalog(clock=FakeClock(tick=dt.timedelta(0)))
    made = set(await _assets(catalog, 5))
    pages = await _pages(_asset_pages(catalog, 2))
    listed = [a for p in pages for a in p]
    assert listed == sorted(made, reverse=True), "ties go by id, newest first"


async def test_assets_arriving_between_pages_do_not_shift_the_pages() -> None:
    catalog = FakeCatalog()
    existing = await _assets(catalog, 5)
    fetch = _asset_pages(catalog, 2)
    first = await fetch("")
    arrived = await _assets(catalog, 3)
    rest = await _pages(fetch, token=first.next_page_token)
    listed = first.items + [a for p in rest for a in p]
    assert listed == existing
    assert not set(arrived) & set(listed)


async def test_the_page_size_defaults_and_must_not_be_negative() -> None:
    catalog = FakeCatalog()
    await _assets(catalog, DEFAULT_PAGE_SIZE + 1)
    page = await _asset_pages(catalog, 0)("")
    assert len(page.items) == DEFAULT_PAGE_SIZE and page.next_page_token
    with pytest.raises(InvalidArgument) as refused:
        await _asset_pages(catalog, -1)("")
    assert refused.value.reason == "INVALID_PAGE_SIZE"


async def test_deleted_assets_are_not_listed_nor_a_filter() -> None:
    catalog = FakeCatalog()
    kept, gone = await _assets(catalog, 2)
    await catalog.assets.delete_asset(TENANT, gone)
    assert await _pages(_asset_pages(catalog, 5)) == [[kept]]
    with pytest.raises(InvalidArgument) as refused:
        await _asset_pages(catalog, 5, AssetStatus.DELETED)("")
    assert refused.value.reason == "INVALID_FILTER"


async def test_a_token_serves_only_its_own_listing_and_filters() -> None:
    catalog = FakeCatalog()
    await _assets(catalog, 3)
    token = (await _asset_pages(catalog, 1)("")).next_page_token
    assert token

    elsewhere: list[Callable[[], Awaitable[object]]] = [
        lambda: _asset_pages(catalog, 1, AssetStatus.PENDING)(token),
        lambda: list_assets(
            catalog.assets,
            tenant_id=uuid.uuid4(),
            where=AssetFilter(),
            page_size=1,
            page_token=token,
        ),
        lambda: list_jobs(
            catalog.jobs,
            catalog.assets,
            tenant_id=TENANT,
            state=None,
            asset_id=None,
            page_size=1,
            page_token=token,
        ),
        lambda: list_poison_jobs(
            catalog.poison,
            catalog.jobs,
            tenant_id=TENANT,
            include_replayed=False,
            page_size=1,
            page_token=token,
        ),
        lambda: list_tenants(catalog.tenants, page_size=1, page_token=token),
        lambda: _asset_pages(catalog, 1)("not a token"),
        lambda: _asset_pages(catalog, 1)(token[:-2]),
    ]
    for listing in elsewhere:
        with pytest.raises(InvalidArgument) as refused:
            await listing()
        assert refused.value.reason == "INVALID_PAGE_TOKEN"
    # The token still serves its own listing.
    assert len((await _asset_pages(catalog, 1)(token)).items) == 1


async def test_jobs_page_by_state_and_by_asset() -> None:
    catalog = FakeCatalog()
    assets = await _assets(catalog, 5)
    jobs = {a: catalog.db.asset(a).job_id for a in assets}
    published = [jobs[a] for a in assets[:3]]
    for job_id in published:
        assert job_id is not None
        await catalog.jobs.mark_job_published(job_id)

    def by(
        state: JobState | None, asset_id: uuid.UUID | None
    ) -> Callable[[str], Awaitable[Page[uuid.UUID]]]:
        async def fetch(token: str) -> Page[uuid.UUID]:
            page = await list_jobs(
                catalog.jobs,
                catalog.assets,
                tenant_id=TENANT,
                state=state,
                asset_id=asset_id,
                page_size=2,
                page_token=token,
            )
            return Page([j.job.id for j in page.items], page.next_page_token)

        return fetch

    queued = await _pages(by(JobState.QUEUED, None))
    assert [len(p) for p in queued] == [2, 1]
    assert [j for p in queued for j in p] == published
    assert await _pages(by(None, assets[4])) == [[jobs[assets[4]]]]
    # A deleted asset's jobs are still listed; an asset the tenant never had is not found.
    await catalog.assets.delete_asset(TENANT, assets[4])
    assert await _pages(by(None, assets[4])) == [[jobs[assets[4]]]]
    with pytest.raises(NotFound) as refused:
        await by(None, uuid.uuid4())("")
    assert refused.value.reason == "ASSET_NOT_FOUND"


async def test_poison_jobs_page_newest_first_replayed_ones_when_asked() -> None:
    catalog = FakeCatalog()
    poison = []
    for asset_id in await _assets(catalog, 4):
        job_id = catalog.db.asset(asset_id).job_id
        assert job_id is not None
        recorded = await catalog.poison.record_poison(
            job_id, PoisonReason.RETRIES_EXHAUSTED, "given up", b""
        )
        assert recorded is not None
        poison.append(recorded.id)
    newest_first = poison[::-1]
    await retry_poison_job(catalog.poison, catalog.jobs, tenant_id=TENANT, poison_job_id=poison[0])

    def listing(include_replayed: bool) -> Callable[[str], Awaitable[Page[uuid.UUID]]]:
        async def fetch(token: str) -> Page[uuid.UUID]:
            page = await list_poison_jobs(
                catalog.poison,
                catalog.jobs,
                tenant_id=TENANT,
                include_replayed=include_replayed,
                page_size=2,
                page_token=token,
            )
            return Page([p.poison_job.id for p in page.items], page.next_page_token)

        return fetch

    assert await _pages(listing(True)) == [newest_first[:2], newest_first[2:]]
    assert await _pages(listing(False)) == [newest_first[:2], newest_first[2:3]]
    token = (await listing(True)("")).next_page_token
    with pytest.raises(InvalidArgument):
        await listing(False)(token)


async def test_tenants_page_by_name() -> None:
    catalog = FakeCatalog()
    names = ["delta", "alpha", "echo", "charlie", "bravo"]
    for name in names:
        await create_tenant(catalog.tenants, name=name, pepper="p")

    async def fetch(token: str) -> Page[str]:
        page = await list_tenants(catalog.tenants, page_size=2, page_token=token)
        return Page([t.name for t in page.items], page.next_page_token)

    assert await _pages(fetch) == [["alpha", "bravo"], ["charlie", "delta"], ["echo"]]
