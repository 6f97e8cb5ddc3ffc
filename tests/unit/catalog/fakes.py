"""In-memory implementations of the catalog's ports (services/catalog/ports.py).

What MemoryObjectStore is for the ObjectStore port, FakeCatalog is for the stores:
one set of rows in memory, read and changed as the SQL in services/catalog/db does
it, so the use cases can be driven without PostgreSQL and still meet its rules:

- every read of a tenant's rows is filtered by that tenant;
- a deleted asset is a row with `deleted_at` set (status deleted) until Purge
  removes it; live reads skip it, reads that include deleted ones do not;
- listings are newest first on (created_at, id) and continue strictly after the
  position they are given (keyset paging);
- job state changes are guarded as the UPDATEs are, with lifecycle.py's decisions
  (may_complete, may_poison, may_spare) and sets (TERMINAL, CLAIMABLE, ...);
- an asset's status change wakes its watchers, as the database trigger's NOTIFY
  does, and only a change does;
- RegisterAsset and Purge serialise on a lock per (tenant, original key).

Every store call yields to the event loop once, as a query does, and is counted in
`FakeDatabase.queries`. Transactions are not modelled: a change is visible at once
and nothing is rolled back when a caller fails half way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import Counter, defaultdict
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from services.catalog.db.presets import DEFAULT_PRESETS, sorted_presets
from services.catalog.lifecycle import (
    ABANDONED_AFTER,
    CLAIMABLE,
    IN_FLIGHT,
    STUCK_CANDIDATES,
    TERMINAL,
    may_complete,
    may_poison,
    may_spare,
)
from services.catalog.model import (
    ApiKey,
    Asset,
    AssetFilter,
    AssetMetadata,
    AssetRegistration,
    AssetStatus,
    Attempt,
    AttemptStart,
    Backfill,
    BackfillScope,
    Claimed,
    DeletedAsset,
    FocalChange,
    FocalPoint,
    Job,
    JobState,
    NewAsset,
    NewRendition,
    PoisonJob,
    PoisonReason,
    PresetChange,
    PresetRenditions,
    RenderRequest,
    Rendition,
    SigningKey,
    SimilarAsset,
    StaleRendition,
    StoredApiKey,
    Tenant,
    TenantMetrics,
    TenantPresets,
    TenantSettings,
    without_gps,
)
from services.catalog.ports import KeysetPosition, MetadataRule, Stores
from services.shared.presets import Preset
from services.shared.retry_policy import DEFAULT_POLICY, RetryPolicy

__all__ = [
    "FakeAssetStore",
    "FakeAssetWatch",
    "FakeBackfillStore",
    "FakeCatalog",
    "FakeClock",
    "FakeContentLock",
    "FakeDatabase",
    "FakeJobStore",
    "FakePoisonStore",
    "FakePresetStore",
    "FakePurgeStore",
    "FakeTenantStore",
    "FakeUsageStore",
    "new_asset",
    "new_rendition",
    "registered",
    "rendered",
]

_T = TypeVar("_T")
_FAILED = "failed"
_SUCCEEDED = "succeeded"


class FakeClock:
    """clock_timestamp(): starts at the real time and moves on by `tick` at every
    reading, so rows made one after another are ordered; `tick=0` gives several rows
    the same time, and `at` may be set to any moment (deletions long ago)."""

    def __init__(self, at: dt.datetime | None = None, tick: dt.timedelta | None = None) -> None:
        self.at = at if at is not None else dt.datetime.now(dt.UTC)
        self.tick = tick if tick is not None else dt.timedelta(microseconds=1)

    def now(self) -> dt.datetime:
        self.at += self.tick
        return self.at


class FakeAssetWatch:
    """AssetWatch as the LISTEN hub does it: an event per watcher, set on a change."""

    def __init__(self) -> None:
        self.watchers: defaultdict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)

    @property
    def watching(self) -> int:
        return sum(len(events) for events in self.watchers.values())

    @contextlib.contextmanager
    def subscribe(self, asset_id: uuid.UUID) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self.watchers[asset_id].add(event)
        try:
            yield event
        finally:
            self.watchers[asset_id].discard(event)
            if not self.watchers[asset_id]:
                del self.watchers[asset_id]

    def notify(self, asset_id: uuid.UUID) -> None:
        for event in self.watchers.get(asset_id, ()):
            event.set()

    def wake_all(self) -> None:
        """What the hub does when its connection was lost: nothing may have changed."""
        for events in self.watchers.values():
            for event in events:
                event.set()


# Rows: the model object plus the columns the model does not show --------------------


@dataclass
class _JobRow:
    job: Job
    budget_since: dt.datetime
    deliveries: int = 0
    spares: int = 0
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    not_before: dt.datetime | None = None
    # What the job renders, fixed when it is made (jobs.presets, focal_x/focal_y).
    presets: tuple[Preset, ...] | None = None
    focal_point: FocalPoint | None = None
    rerender: bool = False
    backfill_id: uuid.UUID | None = None


@dataclass
class _AttemptRow:
    attempt: Attempt
    outcome: str = ""  # "", "succeeded" or "failed"


@dataclass
class _RenditionRow:
    tenant_id: uuid.UUID
    job_id: uuid.UUID
    rendition: Rendition


@dataclass
class FakeDatabase:
    """The rows every fake store reads and changes."""

    clock: FakeClock = field(default_factory=FakeClock)
    tenants: dict[uuid.UUID, Tenant] = field(default_factory=dict)
    api_keys: dict[str, tuple[ApiKey, bytes]] = field(default_factory=dict)
    signing_keys: dict[str, SigningKey] = field(default_factory=dict)
    settings: dict[uuid.UUID, TenantSettings] = field(default_factory=dict)  # by tenant
    assets: dict[uuid.UUID, Asset] = field(default_factory=dict)  # job_id filled on reading
    renditions: dict[tuple[uuid.UUID, str, str], _RenditionRow] = field(default_factory=dict)
    jobs: dict[uuid.UUID, _JobRow] = field(default_factory=dict)
    attempts: dict[tuple[uuid.UUID, int], _AttemptRow] = field(default_factory=dict)
    poison_jobs: dict[uuid.UUID, PoisonJob] = field(default_factory=dict)
    # The service defaults, and each tenant's own presets once it has changed them.
    default_presets: tuple[Preset, ...] = DEFAULT_PRESETS
    tenant_presets: dict[uuid.UUID, dict[str, Preset]] = field(default_factory=dict)
    backfills: dict[uuid.UUID, tuple[uuid.UUID, BackfillScope, str, int, dt.datetime]] = field(
        default_factory=dict
    )  # id -> (tenant, scope, preset, total, created_at)
    queries: Counter[str] = field(default_factory=Counter)
    watch: FakeAssetWatch = field(default_factory=FakeAssetWatch)
    content_locks: defaultdict[tuple[uuid.UUID, str], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )

    queried: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def query(self, name: str) -> None:
        """Called first by every store method: its rows are read after this returns,
        in the same step as the count, so a count seen means the rows were read."""
        await asyncio.sleep(0)
        async with self.queried:
            self.queries[name] += 1
            self.queried.notify_all()

    async def until_queried(self, name: str, times: int) -> None:
        """Until `name` was called `times` times in all (by some other task)."""
        async with self.queried:
            await self.queried.wait_for(lambda: self.queries[name] >= times)

    # Reading rows as the model shows them ------------------------------------------

    def presets_of(self, tenant_id: uuid.UUID) -> tuple[Preset, ...]:
        """The tenant's presets: its own, else the defaults (effective_presets_sql)."""
        own = self.tenant_presets.get(tenant_id)
        return sorted_presets(list(own.values()) if own else self.default_presets)

    def current_rendition(self, row: _RenditionRow) -> bool:
        """Of a preset the tenant has (preset_names_sql): listed and served."""
        return row.rendition.preset in {p.name for p in self.presets_of(row.tenant_id)}

    def asset(self, asset_id: uuid.UUID) -> Asset:
        """The row with its newest job's id, as _ASSET_COLUMNS selects it."""
        asset = self.assets[asset_id]
        newest = max(
            (row.job for row in self.jobs.values() if row.job.asset_id == asset_id),
            key=lambda job: job.created_at,
            default=None,
        )
        return replace(asset, job_id=newest.id if newest else None, labels=dict(asset.labels))

    def tenant_asset(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, *, include_deleted: bool
    ) -> Asset | None:
        asset = self.assets.get(asset_id)
        if asset is None or asset.tenant_id != tenant_id:
            return None
        if asset.deleted_at is not None and not include_deleted:
            return None
        return self.asset(asset_id)

    def attempts_of(self, job_id: uuid.UUID) -> list[_AttemptRow]:
        return sorted(
            (row for (owner, _), row in self.attempts.items() if owner == job_id),
            key=lambda row: row.attempt.attempt,
        )

    def interrupted(self, row: _JobRow) -> int:
        """Attempts of the current budget that were opened and never finished."""
        return sum(
            1
            for a in self.attempts_of(row.job.id)
            if a.attempt.finished_at is None and a.attempt.started_at >= row.budget_since
        )

    def render_request(self, row: _JobRow) -> RenderRequest:
        job = row.job
        asset = self.assets[job.asset_id]
        return RenderRequest(
            job_id=job.id,
            tenant_id=job.tenant_id,
            asset_id=job.asset_id,
            request_id=job.request_id,
            created_at=job.created_at,
            original_key=asset.original_key,
            content_hash=asset.content_hash,
            format=asset.format,
            interrupted=row.deliveries > 1 or row.spares > 0 or self.interrupted(row) > 0,
            presets=row.presets or (),
            focal_point=row.focal_point,
        )

    # Changing rows -------------------------------------------------------------------

    def set_asset(self, asset_id: uuid.UUID, **changes: object) -> None:
        """UPDATE assets: the trigger announces a change of status, and only that."""
        before = self.assets[asset_id]
        after = replace(before, **changes, updated_at=self.clock.now())  # type: ignore[arg-type]
        self.assets[asset_id] = after
        if after.status != before.status:
            self.watch.notify(asset_id)

    def set_job(self, row: _JobRow, **changes: object) -> None:
        row.job = replace(row.job, **changes, updated_at=self.clock.now())  # type: ignore[arg-type]

    def insert_job(
        self,
        asset: Asset,
        request_id: str,
        *,
        rerender: bool = False,
        backfill_id: uuid.UUID | None = None,
    ) -> _JobRow:
        """A pending job rendering the tenant's presets and the asset's point as now."""
        now = self.clock.now()
        job = Job(
            id=uuid.uuid4(),
            tenant_id=asset.tenant_id,
            asset_id=asset.id,
            state=JobState.PENDING,
            attempts=0,
            last_error="",
            request_id=request_id,
            created_at=now,
            updated_at=now,
            published_at=None,
            finished_at=None,
        )
        row = _JobRow(
            job,
            budget_since=now,
            presets=self.presets_of(asset.tenant_id),
            focal_point=asset.focal_point,
            rerender=rerender,
            backfill_id=backfill_id,
        )
        self.jobs[job.id] = row
        return row

    def poison(
        self, row: _JobRow, reason: PoisonReason, error: str, request: bytes
    ) -> PoisonJob | None:
        """Under the job's row lock: the open poison job, recorded once."""
        job = row.job
        for existing in self.poison_jobs.values():
            if existing.job_id == job.id and existing.replayed_at is None:
                return existing
        if not may_poison(job.state):
            return None
        now = self.clock.now()
        self.set_job(row, state=JobState.DEAD, last_error=error, finished_at=now)
        row.lease_owner, row.lease_expires_at = None, None
        for attempt in self.attempts_of(job.id):
            if attempt.attempt.finished_at is None:
                attempt.outcome = _FAILED
                attempt.attempt = replace(
                    attempt.attempt, finished_at=now, error=attempt.attempt.error or error
                )
        if self.assets[job.asset_id].deleted_at is None and not row.rerender:
            self.set_asset(job.asset_id, status=AssetStatus.FAILED)
        poison = PoisonJob(
            id=uuid.uuid4(),
            tenant_id=job.tenant_id,
            job_id=job.id,
            asset_id=job.asset_id,
            reason=reason,
            error=error,
            request=request,
            created_at=self.clock.now(),
            replayed_at=None,
        )
        self.poison_jobs[poison.id] = poison
        return poison


def _keyset(
    rows: Iterable[_T],
    position: Callable[[_T], KeysetPosition],
    after: KeysetPosition | None,
    limit: int,
) -> list[_T]:
    """Newest first on (created_at, id), strictly after `after`: one listing's page."""
    ordered = sorted(rows, key=position, reverse=True)
    if after is not None:
        ordered = [row for row in ordered if position(row) < after]
    return ordered[:limit]


def _meets(asset: Asset, where: AssetFilter) -> bool:
    """As the SQL's conditions: labels by containment, a time range never met by an
    asset without a capture time."""
    captured = asset.metadata.capture_time
    return (
        (where.status is None or asset.status == where.status)
        and all(asset.labels.get(key) == value for key, value in where.labels)
        and (
            where.captured_from is None
            or (captured is not None and captured >= where.captured_from)
        )
        and (where.captured_to is None or (captured is not None and captured < where.captured_to))
    )


# Stores ------------------------------------------------------------------------------


class FakeTenantStore:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    def _insert_key(
        self, tenant_id: uuid.UUID, key_id: str, secret_hash: bytes, label: str
    ) -> ApiKey:
        if key_id in self.db.api_keys:
            raise ValueError(f"duplicate key id {key_id}")  # the primary key refuses it
        key = ApiKey(key_id, tenant_id, label, self.db.clock.now(), None)
        self.db.api_keys[key_id] = (key, secret_hash)
        return key

    async def create_tenant(
        self, name: str, key_id: str, secret_hash: bytes, label: str
    ) -> tuple[Tenant, ApiKey] | None:
        await self.db.query("create_tenant")
        if any(t.name == name for t in self.db.tenants.values()):
            return None
        tenant = Tenant(uuid.uuid4(), name, self.db.clock.now())
        self.db.tenants[tenant.id] = tenant
        self.db.settings[tenant.id] = TenantSettings()
        return tenant, self._insert_key(tenant.id, key_id, secret_hash, label)

    async def list_tenants(self, after_name: str, limit: int) -> list[Tenant]:
        await self.db.query("list_tenants")
        named = sorted(self.db.tenants.values(), key=lambda t: t.name)
        return [t for t in named if t.name > after_name][:limit]

    async def tenant_exists(self, tenant_id: uuid.UUID) -> bool:
        await self.db.query("tenant_exists")
        return tenant_id in self.db.tenants

    async def create_api_key(
        self, tenant_id: uuid.UUID, key_id: str, secret_hash: bytes, label: str
    ) -> ApiKey:
        await self.db.query("create_api_key")
        return self._insert_key(tenant_id, key_id, secret_hash, label)

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        await self.db.query("list_api_keys")
        keys = [k for k, _ in self.db.api_keys.values() if k.tenant_id == tenant_id]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        await self.db.query("revoke_api_key")
        if key_id not in self.db.api_keys:
            return None
        key, secret_hash = self.db.api_keys[key_id]
        if key.revoked_at is None:  # revoking again keeps the first time
            key = replace(key, revoked_at=self.db.clock.now())
            self.db.api_keys[key_id] = (key, secret_hash)
        return key

    async def get_api_key(self, key_id: str) -> StoredApiKey | None:
        await self.db.query("get_api_key")
        if key_id not in self.db.api_keys:
            return None
        key, secret_hash = self.db.api_keys[key_id]
        return StoredApiKey(key.key_id, key.tenant_id, secret_hash, key.revoked_at)

    def _signing_keys(self, tenant_id: uuid.UUID) -> list[SigningKey]:
        """The tenant's keys, oldest first."""
        keys = [k for k in self.db.signing_keys.values() if k.tenant_id == tenant_id]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    async def create_signing_key(
        self, tenant_id: uuid.UUID, key_id: str, label: str, max_active: int
    ) -> SigningKey | None:
        await self.db.query("create_signing_key")
        if tenant_id not in self.db.tenants:
            raise ValueError(f"no tenant {tenant_id}")  # the foreign key refuses it
        if key_id in self.db.signing_keys:
            raise ValueError(f"duplicate signing key id {key_id}")  # the primary key
        active = [k for k in self._signing_keys(tenant_id) if k.revoked_at is None]
        if len(active) >= max_active:
            return None
        key = SigningKey(key_id, tenant_id, label, self.db.clock.now(), None)
        self.db.signing_keys[key_id] = key
        return key

    async def list_signing_keys(self, tenant_id: uuid.UUID) -> list[SigningKey]:
        await self.db.query("list_signing_keys")
        return self._signing_keys(tenant_id)

    async def revoke_signing_key(self, tenant_id: uuid.UUID, key_id: str) -> SigningKey | None:
        await self.db.query("revoke_signing_key")
        key = self.db.signing_keys.get(key_id)
        if key is None or key.tenant_id != tenant_id:
            return None
        if key.revoked_at is None:  # revoking again keeps the first time
            key = replace(key, revoked_at=self.db.clock.now())
            self.db.signing_keys[key_id] = key
        return key

    async def active_signing_key(
        self, tenant_id: uuid.UUID, key_id: str | None
    ) -> SigningKey | None:
        await self.db.query("active_signing_key")
        active = [
            k
            for k in self._signing_keys(tenant_id)
            if k.revoked_at is None and (key_id is None or k.key_id == key_id)
        ]
        return active[-1] if active else None

    async def tenant_settings(self, tenant_id: uuid.UUID) -> TenantSettings | None:
        await self.db.query("tenant_settings")
        return self.db.settings.get(tenant_id)

    async def update_tenant_settings(
        self, tenant_id: uuid.UUID, changes: Mapping[str, object]
    ) -> TenantSettings | None:
        await self.db.query("update_tenant_settings")
        settings = self.db.settings.get(tenant_id)
        if settings is None:
            return None
        self.db.settings[tenant_id] = replace(settings, **changes)  # type: ignore[arg-type]
        return self.db.settings[tenant_id]


class FakeAssetStore:
    def __init__(self, db: FakeDatabase, *, tenant_max_in_flight: int = 0) -> None:
        self.db = db
        # Render jobs one tenant may have on the broker at once (0: no limit).
        self.tenant_max_in_flight = tenant_max_in_flight

    def _live_with(self, tenant_id: uuid.UUID, content_hash: str) -> Asset | None:
        for asset in self.db.assets.values():
            if (
                asset.tenant_id == tenant_id
                and asset.content_hash == content_hash
                and asset.deleted_at is None
            ):
                return asset
        return None

    def _count_upload(self, asset: Asset) -> Asset:
        self.db.set_asset(asset.id, upload_count=asset.upload_count + 1)
        return self.db.asset(asset.id)

    def _at_in_flight_limit(self, tenant_id: uuid.UUID) -> bool:
        if not self.tenant_max_in_flight:
            return False
        in_flight = sum(
            1
            for row in self.db.jobs.values()
            if row.job.tenant_id == tenant_id and row.job.state in IN_FLIGHT
        )
        return in_flight >= self.tenant_max_in_flight

    async def resolve_duplicate(
        self, tenant_id: uuid.UUID, content_hash: str, request_id: str = ""
    ) -> Asset | None:
        await self.db.query("resolve_duplicate")
        live = self._live_with(tenant_id, content_hash)
        if live is None:
            return None
        if request_id and any(
            row.job.asset_id == live.id and row.job.request_id == request_id
            for row in self.db.jobs.values()
        ):
            return None  # this same request registered it: a retried upload
        return self._count_upload(live)

    async def register_asset(
        self, new: NewAsset, keep: MetadataRule = without_gps
    ) -> AssetRegistration:
        await self.db.query("register_asset")
        async with self.db.content_locks[(new.tenant_id, new.original_key)]:
            live = self._live_with(new.tenant_id, new.content_hash)
            own = sorted(
                (
                    row.job
                    for row in self.db.jobs.values()
                    if new.request_id
                    and live is not None
                    and row.job.asset_id == live.id
                    and row.job.request_id == new.request_id
                ),
                key=lambda job: job.created_at,
            )
            if live is not None and own:
                return AssetRegistration(
                    self.db.asset(live.id),
                    created=True,
                    job=own[0],
                    deferred=self._at_in_flight_limit(new.tenant_id),
                )
            if live is not None:
                # A concurrent upload of the same bytes won; count this one against it.
                return AssetRegistration(self._count_upload(live), created=False, job=None)
            settings = self.db.settings.get(new.tenant_id, TenantSettings())
            asset = self._insert(new, keep(new.metadata, settings))
            job = self.db.insert_job(asset, new.request_id).job
            return AssetRegistration(
                self.db.asset(asset.id),
                created=True,
                job=job,
                deferred=self._at_in_flight_limit(new.tenant_id),
            )

    def _insert(self, new: NewAsset, metadata: AssetMetadata) -> Asset:
        now = self.db.clock.now()
        asset = Asset(
            id=uuid.uuid4(),
            tenant_id=new.tenant_id,
            status=AssetStatus.PENDING,
            content_hash=new.content_hash,
            perceptual_hash=new.perceptual_hash,
            filename=new.filename,
            declared_content_type=new.declared_content_type,
            content_type=new.content_type,
            format=new.format,
            width=new.width,
            height=new.height,
            size_bytes=new.size_bytes,
            frame_count=new.frame_count,
            labels=dict(new.labels),
            original_key=new.original_key,
            upload_count=1,
            thumbhash=None,
            dominant_color=None,
            created_at=now,
            updated_at=now,
            deleted_at=None,
            job_id=None,
            metadata=metadata,
        )
        self.db.assets[asset.id] = asset
        return asset

    async def get_asset(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, *, include_deleted: bool = False
    ) -> Asset | None:
        await self.db.query("get_asset")
        return self.db.tenant_asset(tenant_id, asset_id, include_deleted=include_deleted)

    async def list_renditions(
        self, tenant_id: uuid.UUID, asset_ids: Sequence[uuid.UUID]
    ) -> list[Rendition]:
        await self.db.query("list_renditions")
        wanted = set(asset_ids)
        found = [
            row.rendition
            for row in self.db.renditions.values()
            if row.tenant_id == tenant_id
            and row.rendition.asset_id in wanted
            and self.db.current_rendition(row)
        ]
        return sorted(found, key=lambda r: (r.asset_id, -r.width * r.height, r.preset, r.format))

    async def preset_renditions(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, preset: str
    ) -> PresetRenditions | None:
        await self.db.query("preset_renditions")
        asset = self.db.tenant_asset(tenant_id, asset_id, include_deleted=True)
        if asset is None:
            return None
        found = [
            row.rendition
            for row in self.db.renditions.values()
            if row.tenant_id == tenant_id
            and row.rendition.asset_id == asset_id
            and row.rendition.preset == preset
            and self.db.current_rendition(row)
        ]
        return PresetRenditions(asset.status, tuple(sorted(found, key=lambda r: r.format)))

    async def list_assets(
        self,
        tenant_id: uuid.UUID,
        where: AssetFilter,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[Asset]:
        await self.db.query("list_assets")
        live = (
            a
            for a in self.db.assets.values()
            if a.tenant_id == tenant_id and a.deleted_at is None and _meets(a, where)
        )
        page = _keyset(live, lambda a: (a.created_at, a.id), after, limit)
        return [self.db.asset(a.id) for a in page]

    async def near_duplicates(
        self,
        tenant_id: uuid.UUID,
        perceptual_hash: int,
        max_distance: int,
        limit: int,
        exclude: uuid.UUID | None,
    ) -> list[SimilarAsset]:
        await self.db.query("near_duplicates")
        near = [
            SimilarAsset(a.id, a.perceptual_hash, (a.perceptual_hash ^ perceptual_hash).bit_count())
            for a in self.db.assets.values()
            if a.tenant_id == tenant_id and a.deleted_at is None and a.id != exclude
        ]
        close = [s for s in near if s.distance <= max_distance]
        return sorted(close, key=lambda s: (s.distance, s.asset_id))[:limit]

    async def delete_asset(self, tenant_id: uuid.UUID, asset_id: uuid.UUID) -> Asset | None:
        await self.db.query("delete_asset")
        asset = self.db.tenant_asset(tenant_id, asset_id, include_deleted=True)
        if asset is None:
            return None
        if asset.deleted_at is None:
            self.db.set_asset(asset_id, status=AssetStatus.DELETED, deleted_at=self.db.clock.now())
        return self.db.asset(asset_id)


class FakeJobStore:
    def __init__(
        self,
        db: FakeDatabase,
        *,
        tenant_max_in_flight: int = 0,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.db = db
        self.tenant_max_in_flight = tenant_max_in_flight
        self.policy = policy

    def _tenant_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> _JobRow | None:
        row = self.db.jobs.get(job_id)
        return row if row is not None and row.job.tenant_id == tenant_id else None

    def _lease(self, rows: Sequence[_JobRow], lease: dt.timedelta, owner: str) -> None:
        for row in rows:
            row.lease_owner, row.lease_expires_at = owner, self.db.clock.now() + lease

    def _requests(self, rows: Iterable[_JobRow]) -> list[RenderRequest]:
        return [self.db.render_request(r) for r in sorted(rows, key=lambda r: r.job.created_at)]

    async def get_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
        await self.db.query("get_job")
        row = self._tenant_job(tenant_id, job_id)
        return row.job if row else None

    async def list_attempts(
        self, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
    ) -> list[Attempt]:
        await self.db.query("list_attempts")
        mine = sorted(j for j in set(job_ids) if self._tenant_job(tenant_id, j))
        return [a.attempt for j in mine for a in self.db.attempts_of(j)]

    async def list_jobs(
        self,
        tenant_id: uuid.UUID,
        state: JobState | None,
        asset_id: uuid.UUID | None,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[Job]:
        await self.db.query("list_jobs")
        matching = (
            row.job
            for row in self.db.jobs.values()
            if row.job.tenant_id == tenant_id
            and (state is None or row.job.state == state)
            and (asset_id is None or row.job.asset_id == asset_id)
        )
        return _keyset(matching, lambda j: (j.created_at, j.id), after, limit)

    async def render_request_row(self, job_id: uuid.UUID) -> RenderRequest | None:
        await self.db.query("render_request_row")
        row = self.db.jobs.get(job_id)
        return self.db.render_request(row) if row else None

    async def mark_job_published(self, job_id: uuid.UUID) -> Job | None:
        await self.db.query("mark_job_published")
        row = self.db.jobs.get(job_id)
        if row is None:
            return None
        # The confirm is recorded whatever happened since; only a pending job moves.
        published = row.job.published_at or self.db.clock.now()
        if row.job.state == JobState.PENDING:
            self.db.set_job(row, state=JobState.QUEUED, published_at=published)
            row.lease_owner, row.lease_expires_at = None, None
        else:
            self.db.set_job(row, published_at=published)
        return row.job

    def _fair_share(self, now: dt.datetime, min_age: dt.timedelta) -> set[uuid.UUID]:
        """Pending jobs due now, each tenant's oldest first, within its room on the broker."""
        in_flight = Counter(
            r.job.tenant_id for r in self.db.jobs.values() if r.job.state in IN_FLIGHT
        )
        ready: defaultdict[uuid.UUID, list[_JobRow]] = defaultdict(list)
        for row in self.db.jobs.values():
            if (
                row.job.state == JobState.PENDING
                and row.job.created_at <= now - min_age
                and (row.not_before is None or row.not_before <= now)
                and (row.lease_expires_at is None or row.lease_expires_at < now)
            ):
                ready[row.job.tenant_id].append(row)
        due: set[uuid.UUID] = set()
        for tenant_id, rows in ready.items():
            rows.sort(key=lambda r: (r.not_before or r.job.created_at, r.job.id))
            room = len(rows)
            if self.tenant_max_in_flight:
                room = self.tenant_max_in_flight - in_flight[tenant_id]
            due |= {r.job.id for r in rows[: max(room, 0)]}
        return due

    async def claim_unpublished(
        self,
        *,
        limit: int,
        lease: dt.timedelta,
        min_age: dt.timedelta,
        owner: str,
        stuck_after: dt.timedelta | None = None,
    ) -> list[RenderRequest]:
        await self.db.query("claim_unpublished")
        now = self.db.clock.now()
        due = self._fair_share(now, min_age)

        def wanted(row: _JobRow) -> bool:
            state, expires = row.job.state, row.lease_expires_at
            if row.job.id in due:
                return True
            if state == JobState.RUNNING:
                return expires is not None and expires < now - ABANDONED_AFTER
            return (
                stuck_after is not None
                and state in STUCK_CANDIDATES
                and row.job.updated_at < now - stuck_after
                and (expires is None or expires < now)
            )

        picked = sorted(
            filter(wanted, self.db.jobs.values()),
            key=lambda r: r.not_before or r.job.created_at,
        )[:limit]
        for row in picked:
            if row.job.state == JobState.RUNNING:  # abandoned: back to the outbox
                self.db.set_job(row, state=JobState.PENDING)
        self._lease(picked, lease, owner)
        return self._requests(picked)

    async def claim_for_render(
        self, *, limit: int, lease: dt.timedelta, owner: str, delivery_limit: int
    ) -> Claimed:
        await self.db.query("claim_for_render")
        now = self.db.clock.now()
        due = sorted(
            (
                row
                for row in self.db.jobs.values()
                if row.job.state in CLAIMABLE
                and (row.lease_expires_at is None or row.lease_expires_at < now)
                and (row.not_before is None or row.not_before <= now)
                # a retrying job's next attempt waits in a delay queue until then
                and (
                    row.job.state != JobState.RETRYING
                    or row.job.updated_at < now - self.policy.longest_backoff
                )
            ),
            key=lambda r: r.job.created_at,
        )
        # Tenants take turns: each one's oldest first, then each one's second, ...
        turns: dict[uuid.UUID, int] = {}
        ranked = []
        for row in due:
            turns[row.job.tenant_id] = turns.get(row.job.tenant_id, 0) + 1
            ranked.append((turns[row.job.tenant_id], row.job.created_at, row))
        runnable = [row for _, _, row in sorted(ranked, key=lambda t: (t[0], t[1]))][:limit]
        over = [r for r in runnable if r.deliveries > delivery_limit]
        claimed = [r for r in runnable if r.deliveries <= delivery_limit]
        for row in claimed:
            row.deliveries += 1
        self._lease(claimed, lease, owner)
        return Claimed(jobs=self._requests(claimed), over_limit=self._requests(over))

    async def spare_bystander(self, job_id: uuid.UUID, delivery_limit: int) -> bool:
        await self.db.query("spare_bystander")
        row = self.db.jobs.get(job_id)
        if row is None or row.job.state in TERMINAL:
            return False
        if not may_spare(row.spares, self.db.interrupted(row), delivery_limit):
            return False
        # The lease stays, so a lost republish is still found once it expires.
        row.spares += 1
        row.deliveries = 0
        self.db.set_job(row)
        return True

    async def failed_attempts(self, job_ids: Sequence[uuid.UUID]) -> list[Attempt]:
        await self.db.query("failed_attempts")
        found: list[Attempt] = []
        for job_id in sorted(set(job_ids)):
            row = self.db.jobs.get(job_id)
            if row is None:
                continue
            found += [
                a.attempt
                for a in self.db.attempts_of(job_id)
                if a.outcome == _FAILED and a.attempt.started_at >= row.budget_since
            ]
        return found

    async def start_attempt(
        self, job_id: uuid.UUID, worker: str, lease: dt.timedelta
    ) -> AttemptStart:
        await self.db.query("start_attempt")
        row = self.db.jobs.get(job_id)
        if row is None or row.job.state in TERMINAL:
            return AttemptStart(row.job if row else None, 0)
        number = row.job.attempts + 1
        self.db.set_job(row, state=JobState.RUNNING, attempts=number)
        row.lease_owner, row.lease_expires_at = worker, self.db.clock.now() + lease
        row.not_before = None
        if (job_id, number) not in self.db.attempts:
            started = Attempt(job_id, number, worker, self.db.clock.now(), None, "", False, 1, None)
            self.db.attempts[(job_id, number)] = _AttemptRow(started)
        if self.db.assets[row.job.asset_id].status == AssetStatus.PENDING:
            self.db.set_asset(row.job.asset_id, status=AssetStatus.PROCESSING)
        return AttemptStart(row.job, number)

    def _upsert_rendition(self, row: _JobRow, new: NewRendition) -> None:
        job = row.job
        self.db.renditions[(job.asset_id, new.preset, new.format)] = _RenditionRow(
            job.tenant_id,
            job.id,
            Rendition(
                asset_id=job.asset_id,
                preset=new.preset,
                format=new.format,
                object_key=new.object_key,
                width=new.width,
                height=new.height,
                size_bytes=new.size_bytes,
                quality=new.quality,
                psnr_db=new.psnr_db,
                psnr_infinite=new.psnr_infinite,
                ssim=new.ssim,
                hash_distance=new.hash_distance,
                min_ssim=new.min_ssim,
                updated_at=self.db.clock.now(),
                content_sha256=new.content_sha256,
                preset_version=new.preset_version,
            ),
        )

    async def complete_job(
        self,
        job_id: uuid.UUID,
        attempt: int,
        renditions: Sequence[NewRendition],
        thumbhash: str | None,
        dominant_color: str | None,
    ) -> Job | None:
        await self.db.query("complete_job")
        row = self.db.jobs.get(job_id)
        if row is None or not may_complete(row.job.state, row.job.attempts, attempt):
            return None
        for new in renditions:
            self._upsert_rendition(row, new)
        # The formats a preset made here no longer has (_SUPERSEDED).
        made = {(r.preset, r.format) for r in renditions}
        self.db.renditions = {
            key: kept
            for key, kept in self.db.renditions.items()
            if key[0] != row.job.asset_id
            or key[1] not in {p for p, _ in made}
            or (key[1], key[2]) in made
        }
        settled = self.db.attempts.get((job_id, attempt))
        if settled is not None:
            settled.outcome = _SUCCEEDED
            finished = settled.attempt.finished_at or self.db.clock.now()
            settled.attempt = replace(settled.attempt, finished_at=finished, error="")
        asset = self.db.assets[row.job.asset_id]
        if asset.deleted_at is None:
            self.db.set_asset(
                asset.id,
                status=AssetStatus.READY,
                thumbhash=thumbhash if thumbhash is not None else asset.thumbhash,
                dominant_color=dominant_color
                if dominant_color is not None
                else asset.dominant_color,
            )
        self.db.set_job(
            row,
            state=JobState.DONE,
            last_error="",
            finished_at=row.job.finished_at or self.db.clock.now(),
        )
        row.lease_owner, row.lease_expires_at = None, None
        return row.job

    def _close_failed(self, job_id: uuid.UUID, attempt: int, error: str, transient: bool) -> None:
        """The attempt's row, a transient failure right after another folded into it."""
        earlier = [a for a in self.db.attempts_of(job_id) if a.attempt.attempt < attempt]
        previous = earlier[-1] if earlier else None
        folded = (
            previous
            if transient
            and previous is not None
            and previous.outcome == _FAILED
            and previous.attempt.transient
            else None
        )
        row = self.db.attempts.get((job_id, attempt))
        if row is None:
            return
        row.outcome = _FAILED
        row.attempt = replace(
            row.attempt,
            finished_at=row.attempt.finished_at or self.db.clock.now(),
            error=error,
            transient=transient,
            repeats=folded.attempt.repeats + 1 if folded else 1,
            first_finished_at=(folded.attempt.first_finished_at or folded.attempt.finished_at)
            if folded
            else None,
        )
        if folded is not None:
            del self.db.attempts[(job_id, folded.attempt.attempt)]

    async def fail_attempt(
        self,
        job_id: uuid.UUID,
        attempt: int,
        error: str,
        *,
        transient: bool,
        retry_after: dt.timedelta | None,
        poison_request: bytes = b"",
    ) -> Job | None:
        await self.db.query("fail_attempt")
        self._close_failed(job_id, attempt, error, transient)
        row = self.db.jobs.get(job_id)
        if row is None:
            return None
        if row.job.state in TERMINAL or row.job.attempts != attempt:
            return row.job  # a stale attempt settles nothing more
        now = self.db.clock.now()
        self.db.set_job(
            row,
            state=JobState.RETRYING if retry_after is None else JobState.PENDING,
            last_error=error,
        )
        row.not_before = None if retry_after is None else now + retry_after
        row.lease_owner, row.lease_expires_at, row.deliveries = None, None, 0
        if not transient:
            failures = sum(
                1
                for a in self.db.attempts_of(job_id)
                if a.outcome == _FAILED
                and not a.attempt.transient
                and a.attempt.started_at >= row.budget_since
            )
            if self.policy.spent(failures):
                self.db.poison(row, PoisonReason.RETRIES_EXHAUSTED, error, poison_request)
        return row.job


class FakePoisonStore:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def record_poison(
        self, job_id: uuid.UUID, reason: PoisonReason, error: str, request: bytes
    ) -> PoisonJob | None:
        await self.db.query("record_poison")
        row = self.db.jobs.get(job_id)
        return self.db.poison(row, reason, error, request) if row else None

    async def list_poison_jobs(
        self,
        tenant_id: uuid.UUID,
        include_replayed: bool,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[PoisonJob]:
        await self.db.query("list_poison_jobs")
        matching = (
            p
            for p in self.db.poison_jobs.values()
            if p.tenant_id == tenant_id and (include_replayed or p.replayed_at is None)
        )
        return _keyset(matching, lambda p: (p.created_at, p.id), after, limit)

    async def retry_poison(
        self, tenant_id: uuid.UUID, poison_job_id: uuid.UUID
    ) -> tuple[PoisonJob, Job] | None:
        await self.db.query("retry_poison")
        poison = self.db.poison_jobs.get(poison_job_id)
        if poison is None or poison.tenant_id != tenant_id:
            return None
        row = self.db.jobs[poison.job_id]
        if poison.replayed_at is None:  # replaying twice changes nothing more
            now = self.db.clock.now()
            poison = replace(poison, replayed_at=now)
            self.db.poison_jobs[poison.id] = poison
            if row.job.state == JobState.DEAD:
                self.db.set_job(row, state=JobState.PENDING, last_error="", finished_at=None)
                row.not_before, row.lease_owner, row.lease_expires_at = None, None, None
                row.deliveries, row.spares, row.budget_since = 0, 0, now
                # Made anew: the tenant's presets and the asset's point as they are now.
                row.presets = self.db.presets_of(tenant_id)
                row.focal_point = self.db.assets[poison.asset_id].focal_point
            if self.db.assets[poison.asset_id].status == AssetStatus.FAILED:
                self.db.set_asset(poison.asset_id, status=AssetStatus.PENDING)
        return poison, row.job


class FakeContentLock:
    def __init__(self, db: FakeDatabase, tenant_id: uuid.UUID, key: str) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.key = key

    async def users(self, excluding: uuid.UUID | None = None) -> int:
        await self.db.query("users")
        return sum(
            1
            for a in self.db.assets.values()
            if a.tenant_id == self.tenant_id and a.original_key == self.key and a.id != excluding
        )

    async def still_deleted(self, asset_id: uuid.UUID) -> bool:
        await self.db.query("still_deleted")
        asset = self.db.tenant_asset(self.tenant_id, asset_id, include_deleted=True)
        return asset is not None and asset.deleted_at is not None

    async def remove_asset_rows(self, asset_id: uuid.UUID) -> None:
        await self.db.query("remove_asset_rows")
        asset = self.db.tenant_asset(self.tenant_id, asset_id, include_deleted=True)
        if asset is None or asset.deleted_at is None:
            return  # only a deleted asset's rows go
        db = self.db
        db.poison_jobs = {k: p for k, p in db.poison_jobs.items() if p.asset_id != asset_id}
        db.renditions = {k: r for k, r in db.renditions.items() if r.rendition.asset_id != asset_id}
        gone = {j for j, row in db.jobs.items() if row.job.asset_id == asset_id}
        db.jobs = {j: row for j, row in db.jobs.items() if j not in gone}
        db.attempts = {k: a for k, a in db.attempts.items() if k[0] not in gone}
        del db.assets[asset_id]


class FakePurgeStore:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def deleted_assets(self, tenant_id: uuid.UUID, before: dt.datetime) -> list[DeletedAsset]:
        await self.db.query("deleted_assets")
        found = []
        for a in self.db.assets.values():
            if a.tenant_id != tenant_id or a.deleted_at is None or a.deleted_at >= before:
                continue
            renditions = sorted(
                (r.rendition.object_key, r.rendition.size_bytes)
                for r in self.db.renditions.values()
                if r.rendition.asset_id == a.id and r.tenant_id == tenant_id
            )
            found.append(
                DeletedAsset(a.id, a.original_key, a.size_bytes, a.deleted_at, tuple(renditions))
            )
        return sorted(found, key=lambda d: (d.deleted_at, d.id))

    async def referenced_keys(self, tenant_id: uuid.UUID, keys: Collection[str]) -> set[str]:
        await self.db.query("referenced_keys")
        used = {a.original_key for a in self.db.assets.values() if a.tenant_id == tenant_id}
        used |= {
            r.rendition.object_key for r in self.db.renditions.values() if r.tenant_id == tenant_id
        }
        return used & set(keys)

    async def live_assets(
        self, tenant_id: uuid.UUID, asset_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        await self.db.query("live_assets")
        return {
            a
            for a in set(asset_ids)
            if self.db.tenant_asset(tenant_id, a, include_deleted=False) is not None
        }

    @contextlib.asynccontextmanager
    async def locked_content(
        self, tenant_id: uuid.UUID, original_key: str
    ) -> AsyncIterator[FakeContentLock]:
        await self.db.query("locked_content")
        async with self.db.content_locks[(tenant_id, original_key)]:
            yield FakeContentLock(self.db, tenant_id, original_key)

    def _stale(self, tenant_id: uuid.UUID) -> list[tuple[tuple[uuid.UUID, str, str], Rendition]]:
        return sorted(
            (
                (key, row.rendition)
                for key, row in self.db.renditions.items()
                if row.tenant_id == tenant_id
                and self.db.assets[key[0]].deleted_at is None
                and not self.db.current_rendition(row)
            ),
            key=lambda found: found[1].object_key,
        )

    async def stale_renditions(self, tenant_id: uuid.UUID) -> list[StaleRendition]:
        await self.db.query("stale_renditions")
        return [
            StaleRendition(r.asset_id, r.preset, r.format, r.object_key, r.size_bytes)
            for _, r in self._stale(tenant_id)
        ]

    async def remove_stale_rendition(self, tenant_id: uuid.UUID, stale: StaleRendition) -> bool:
        await self.db.query("remove_stale_rendition")
        for key, rendition in self._stale(tenant_id):
            if key == (stale.asset_id, stale.preset, stale.format) and (
                rendition.object_key == stale.object_key
            ):
                del self.db.renditions[key]
                return True
        return False


class FakePresetStore:
    """The tenant's rows in `tenant_presets`; asyncio runs one change at a time, as the
    lock on the tenant does."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def tenant_presets(self, tenant_id: uuid.UUID) -> TenantPresets:
        await self.db.query("tenant_presets")
        return TenantPresets(self.db.presets_of(tenant_id), own=tenant_id in self.db.tenant_presets)

    def _current(self, tenant_id: uuid.UUID) -> dict[str, Preset] | None:
        if tenant_id not in self.db.tenants:
            return None
        return dict(
            self.db.tenant_presets.get(tenant_id) or {p.name: p for p in self.db.default_presets}
        )

    async def create_preset(
        self, tenant_id: uuid.UUID, preset: Preset, max_presets: int
    ) -> PresetChange:
        await self.db.query("create_preset")
        current = self._current(tenant_id)
        if current is None:
            return PresetChange.NOT_FOUND
        if preset.name in current:
            return PresetChange.EXISTS
        if len(current) >= max_presets:
            return PresetChange.TOO_MANY
        self.db.tenant_presets[tenant_id] = current | {preset.name: preset}
        return PresetChange.DONE

    async def replace_preset(self, tenant_id: uuid.UUID, preset: Preset) -> PresetChange:
        await self.db.query("replace_preset")
        current = self._current(tenant_id)
        if current is None or preset.name not in current:
            return PresetChange.NOT_FOUND
        self.db.tenant_presets[tenant_id] = current | {preset.name: preset}
        return PresetChange.DONE

    async def delete_preset(self, tenant_id: uuid.UUID, name: str) -> PresetChange:
        await self.db.query("delete_preset")
        current = self._current(tenant_id)
        if current is None or name not in current:
            return PresetChange.NOT_FOUND
        if len(current) <= 1:
            return PresetChange.LAST
        del current[name]
        self.db.tenant_presets[tenant_id] = current
        return PresetChange.DONE


class FakeBackfillStore:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def set_focal_point(
        self,
        tenant_id: uuid.UUID,
        asset_id: uuid.UUID,
        point: FocalPoint | None,
        *,
        rerender: bool,
    ) -> FocalChange | None:
        await self.db.query("set_focal_point")
        asset = self.db.tenant_asset(tenant_id, asset_id, include_deleted=False)
        if asset is None:
            return None
        self.db.set_asset(asset_id, focal_point=point)
        job = None
        if rerender and asset.status != AssetStatus.FAILED:
            job = self.db.insert_job(self.db.asset(asset_id), "", rerender=True).job
        return FocalChange(self.db.asset(asset_id), job)

    def _selected(
        self, asset: Asset, scope: BackfillScope, preset: str, asset_ids: Collection[uuid.UUID]
    ) -> bool:
        wanted = {p.name: p.version for p in self.db.presets_of(asset.tenant_id)}
        if preset:
            wanted = {preset: wanted[preset]} if preset in wanted else {}
        mine = [
            r.rendition for r in self.db.renditions.values() if r.rendition.asset_id == asset.id
        ]
        if scope == BackfillScope.ASSET_IDS:
            return asset.id in asset_ids
        if scope == BackfillScope.MISSING:
            return any(name not in {r.preset for r in mine} for name in wanted)
        if scope == BackfillScope.OUTDATED:
            return any(r.preset in wanted and r.preset_version != wanted[r.preset] for r in mine)
        return True

    async def start_backfill(
        self,
        tenant_id: uuid.UUID,
        scope: BackfillScope,
        preset: str,
        asset_ids: Sequence[uuid.UUID],
    ) -> Backfill:
        await self.db.query("start_backfill")
        backfill_id = uuid.uuid4()
        busy = {r.job.asset_id for r in self.db.jobs.values() if r.job.state not in TERMINAL}
        chosen = [
            a
            for a in self.db.assets.values()
            if a.tenant_id == tenant_id
            and a.status == AssetStatus.READY
            and a.deleted_at is None
            and a.id not in busy
            and self._selected(a, scope, preset, set(asset_ids))
        ]
        for asset in chosen:
            self.db.insert_job(asset, "", rerender=True, backfill_id=backfill_id)
        self.db.backfills[backfill_id] = (
            tenant_id,
            scope,
            preset,
            len(chosen),
            self.db.clock.now(),
        )
        backfill = self._backfill(tenant_id, backfill_id)
        assert backfill is not None
        return backfill

    def _backfill(self, tenant_id: uuid.UUID, backfill_id: uuid.UUID) -> Backfill | None:
        found = self.db.backfills.get(backfill_id)
        if found is None or found[0] != tenant_id:
            return None
        _, scope, preset, total, created_at = found
        jobs = [r.job for r in self.db.jobs.values() if r.backfill_id == backfill_id]
        return Backfill(
            id=backfill_id,
            tenant_id=tenant_id,
            scope=scope,
            preset=preset,
            total=total,
            done=sum(1 for j in jobs if j.state == JobState.DONE),
            failed=sum(1 for j in jobs if j.state == JobState.DEAD),
            unfinished=sum(1 for j in jobs if j.state not in TERMINAL),
            created_at=created_at,
            last_finished_at=max((j.finished_at for j in jobs if j.finished_at), default=None),
        )

    async def get_backfill(self, tenant_id: uuid.UUID, backfill_id: uuid.UUID) -> Backfill | None:
        await self.db.query("get_backfill")
        return self._backfill(tenant_id, backfill_id)


class FakeUsageStore:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    async def tenant_metrics(self, tenant_id: uuid.UUID) -> TenantMetrics:
        await self.db.query("tenant_metrics")
        assets = [a for a in self.db.assets.values() if a.tenant_id == tenant_id]
        live = [a for a in assets if a.deleted_at is None]
        live_ids = {a.id for a in live}
        renditions = [r.rendition for r in self.db.renditions.values() if r.tenant_id == tenant_id]
        by_format: dict[str, tuple[int, int]] = {}
        for r in renditions:
            count, size = by_format.get(r.format, (0, 0))
            by_format[r.format] = (count + 1, size + r.size_bytes)
        return TenantMetrics(
            asset_count=len(live),
            assets_by_status=dict(Counter(str(a.status) for a in assets)),
            rendition_count=sum(1 for r in renditions if r.asset_id in live_ids),
            # Each original object once: a key outlives its deleted asset until Purge.
            original_bytes=sum({a.original_key: a.size_bytes for a in assets}.values()),
            rendition_bytes=sum(r.size_bytes for r in renditions),
            logical_bytes=sum(a.size_bytes * a.upload_count for a in live),
            physical_bytes=sum(a.size_bytes for a in live),
            deduplicated_uploads=sum(a.upload_count - 1 for a in live),
            jobs_by_state=dict(
                Counter(
                    str(r.job.state) for r in self.db.jobs.values() if r.job.tenant_id == tenant_id
                )
            ),
            poison_job_count=sum(
                1
                for p in self.db.poison_jobs.values()
                if p.tenant_id == tenant_id and p.replayed_at is None
            ),
            renditions_by_format=by_format,
        )


class FakeCatalog:
    """Every store over one FakeDatabase (the ports.Stores bundle)."""

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        tenant_max_in_flight: int = 0,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.db = FakeDatabase(clock=clock or FakeClock())
        self._tenants = FakeTenantStore(self.db)
        self._assets = FakeAssetStore(self.db, tenant_max_in_flight=tenant_max_in_flight)
        self._jobs = FakeJobStore(self.db, tenant_max_in_flight=tenant_max_in_flight, policy=policy)
        self._poison = FakePoisonStore(self.db)
        self._purge = FakePurgeStore(self.db)
        self._usage = FakeUsageStore(self.db)
        self._presets = FakePresetStore(self.db)
        self._backfills = FakeBackfillStore(self.db)

    @property
    def clock(self) -> FakeClock:
        return self.db.clock

    @property
    def watch(self) -> FakeAssetWatch:
        return self.db.watch

    @property
    def tenants(self) -> FakeTenantStore:
        return self._tenants

    @property
    def assets(self) -> FakeAssetStore:
        return self._assets

    @property
    def jobs(self) -> FakeJobStore:
        return self._jobs

    @property
    def poison(self) -> FakePoisonStore:
        return self._poison

    @property
    def purge(self) -> FakePurgeStore:
        return self._purge

    @property
    def usage(self) -> FakeUsageStore:
        return self._usage

    @property
    def presets(self) -> FakePresetStore:
        return self._presets

    @property
    def backfills(self) -> FakeBackfillStore:
        return self._backfills


# Builders of what the stores take ---------------------------------------------------


def new_asset(tenant_id: uuid.UUID, content: str = "", **changes: object) -> NewAsset:
    """An upload's registration; `content` names its bytes (hash and original key)."""
    content_hash = content or uuid.uuid4().hex
    asset = NewAsset(
        tenant_id=tenant_id,
        content_hash=content_hash,
        perceptual_hash=0,
        filename="photo.jpg",
        declared_content_type="image/jpeg",
        content_type="image/jpeg",
        format="jpeg",
        width=640,
        height=480,
        size_bytes=1000,
        frame_count=1,
        labels={},
        original_key=f"originals/{tenant_id}/{content_hash}",
        request_id=uuid.uuid4().hex,
    )
    return replace(asset, **changes)  # type: ignore[arg-type]


def new_rendition(
    tenant_id: uuid.UUID, asset_id: uuid.UUID, preset: str, image_format: str, **changes: object
) -> NewRendition:
    rendition = NewRendition(
        preset=preset,
        format=image_format,
        object_key=f"renditions/{tenant_id}/{asset_id}/{preset}.{uuid.uuid4().hex[:16]}.{image_format}",
        width=320,
        height=240,
        size_bytes=100,
        quality=80,
        psnr_db=None,
        psnr_infinite=None,
        ssim=None,
        hash_distance=None,
    )
    return replace(rendition, **changes)  # type: ignore[arg-type]


async def registered(catalog: FakeCatalog, new: NewAsset) -> tuple[Asset, Job]:
    """A new asset and its pending job, registered as ingest does."""
    registration = await catalog.assets.register_asset(new)
    assert registration.created and registration.job is not None
    return registration.asset, registration.job


async def rendered(
    catalog: FakeCatalog, new: NewAsset, renditions: Sequence[tuple[str, str]] = ()
) -> Asset:
    """A registered asset whose job's first attempt completed with these (preset,
    format) renditions: ready."""
    asset, job = await registered(catalog, new)
    started = await catalog.jobs.start_attempt(job.id, "renderer", dt.timedelta(minutes=2))
    made = [new_rendition(asset.tenant_id, asset.id, p, f) for p, f in renditions]
    assert await catalog.jobs.complete_job(job.id, started.attempt, made, None, None)
    ready = await catalog.assets.get_asset(asset.tenant_id, asset.id)
    assert ready is not None and ready.status == AssetStatus.READY
    return ready


if TYPE_CHECKING:
    # mypy checks the bundle against the port the servicers take.
    _STORES: Stores = FakeCatalog()
