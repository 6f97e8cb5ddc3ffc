"""What the use cases need from the outside, one Protocol per aggregate.

The db package implements the stores on PostgreSQL (services/catalog/db) and
db/watch.py the AssetWatch; unit tests implement them in memory. Every method
returns model objects (services/catalog/model.py), never rows or messages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Protocol, TypeAlias

from services.catalog.model import (
    ApiKey,
    Asset,
    AssetFilter,
    AssetMetadata,
    AssetRegistration,
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
from services.shared.presets import Preset

__all__ = [
    "AssetStore",
    "AssetWatch",
    "BackfillStore",
    "ContentLock",
    "JobStore",
    "KeysetPosition",
    "MetadataRule",
    "PoisonStore",
    "PresetStore",
    "PurgeStore",
    "RequestEncoder",
    "Stores",
    "TenantStore",
    "UsageStore",
]

# Where a newest-first listing stopped: the (created_at, id) of its last row.
KeysetPosition: TypeAlias = tuple[dt.datetime, uuid.UUID]
# What a registration keeps of an upload's metadata, given the tenant's settings as the
# registering transaction reads them.
MetadataRule: TypeAlias = Callable[[AssetMetadata, TenantSettings], AssetMetadata]


class TenantStore(Protocol):
    async def create_tenant(
        self, name: str, key_id: str, secret_hash: bytes, label: str
    ) -> tuple[Tenant, ApiKey] | None:
        """The tenant with its first key; None when the name is taken."""
        ...

    async def list_tenants(self, after_name: str, limit: int) -> list[Tenant]: ...

    async def tenant_exists(self, tenant_id: uuid.UUID) -> bool: ...

    async def create_api_key(
        self, tenant_id: uuid.UUID, key_id: str, secret_hash: bytes, label: str
    ) -> ApiKey: ...

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str) -> ApiKey | None: ...

    async def get_api_key(self, key_id: str) -> StoredApiKey | None: ...

    async def create_signing_key(
        self, tenant_id: uuid.UUID, key_id: str, label: str, max_active: int
    ) -> SigningKey | None:
        """The new key; None when the tenant already has `max_active` active keys
        (counted and inserted under a lock on the tenant, so racing calls cannot
        pass the limit together)."""
        ...

    async def list_signing_keys(self, tenant_id: uuid.UUID) -> list[SigningKey]:
        """Oldest first, revoked ones included."""
        ...

    async def revoke_signing_key(self, tenant_id: uuid.UUID, key_id: str) -> SigningKey | None:
        """Revoked from now on (revoking again keeps the first time); None when the
        tenant has no such key."""
        ...

    async def active_signing_key(
        self, tenant_id: uuid.UUID, key_id: str | None
    ) -> SigningKey | None:
        """The tenant's unrevoked key `key_id`, or its newest unrevoked key when
        `key_id` is None; None when there is none such."""
        ...

    async def tenant_settings(self, tenant_id: uuid.UUID) -> TenantSettings | None:
        """None when there is no such tenant."""
        ...

    async def update_tenant_settings(
        self, tenant_id: uuid.UUID, changes: Mapping[str, object]
    ) -> TenantSettings | None:
        """Set the named settings (TenantSettings field names); the settings after
        the change, None when there is no such tenant."""
        ...


class AssetStore(Protocol):
    async def resolve_duplicate(
        self, tenant_id: uuid.UUID, content_hash: str, request_id: str = ""
    ) -> Asset | None:
        """The live asset with these bytes, counting this upload against it; None
        also when that asset was registered by this same request."""
        ...

    async def register_asset(
        self, new: NewAsset, keep: MetadataRule = without_gps
    ) -> AssetRegistration:
        """The asset and its pending job, or the live asset with the same bytes. The
        tenant's settings are read in the registration's transaction, locked against
        a concurrent change, and the asset stores `keep(new.metadata, settings)`."""
        ...

    async def get_asset(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, *, include_deleted: bool = False
    ) -> Asset | None: ...

    async def list_renditions(
        self, tenant_id: uuid.UUID, asset_ids: Sequence[uuid.UUID]
    ) -> list[Rendition]:
        """By asset, then largest first, then preset and format."""
        ...

    async def preset_renditions(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, preset: str
    ) -> PresetRenditions | None:
        """The asset's status, deleted ones included, and its `preset` renditions by
        format; None when the tenant has no such asset."""
        ...

    async def list_assets(
        self,
        tenant_id: uuid.UUID,
        where: AssetFilter,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[Asset]:
        """Live assets meeting every condition of `where`, newest first. An asset
        without a capture time fails any capture-time condition."""
        ...

    async def near_duplicates(
        self,
        tenant_id: uuid.UUID,
        perceptual_hash: int,
        max_distance: int,
        limit: int,
        exclude: uuid.UUID | None,
    ) -> list[SimilarAsset]:
        """Live assets within `max_distance`, closest first, ties by id."""
        ...

    async def delete_asset(self, tenant_id: uuid.UUID, asset_id: uuid.UUID) -> Asset | None:
        """Soft delete (idempotent); None when the tenant has no such asset."""
        ...


class JobStore(Protocol):
    async def get_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None: ...

    async def list_attempts(
        self, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
    ) -> list[Attempt]: ...

    async def list_jobs(
        self,
        tenant_id: uuid.UUID,
        state: JobState | None,
        asset_id: uuid.UUID | None,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[Job]:
        """Newest first."""
        ...

    async def render_request_row(self, job_id: uuid.UUID) -> RenderRequest | None: ...

    async def mark_job_published(self, job_id: uuid.UUID) -> Job | None: ...

    async def claim_unpublished(
        self,
        *,
        limit: int,
        lease: dt.timedelta,
        min_age: dt.timedelta,
        owner: str,
        stuck_after: dt.timedelta | None = None,
    ) -> list[RenderRequest]: ...

    async def claim_for_render(
        self, *, limit: int, lease: dt.timedelta, owner: str, delivery_limit: int
    ) -> Claimed: ...

    async def spare_bystander(self, job_id: uuid.UUID, delivery_limit: int) -> bool:
        """Spare a job at the delivery limit (lifecycle.may_spare); False: poison it."""
        ...

    async def failed_attempts(self, job_ids: Sequence[uuid.UUID]) -> list[Attempt]:
        """Failed attempts of these jobs since their budget was last renewed."""
        ...

    async def start_attempt(
        self, job_id: uuid.UUID, worker: str, lease: dt.timedelta
    ) -> AttemptStart: ...

    async def complete_job(
        self,
        job_id: uuid.UUID,
        attempt: int,
        renditions: Sequence[NewRendition],
        thumbhash: str | None,
        dominant_color: str | None,
    ) -> Job | None:
        """None when the job is dead, unknown, or `attempt` is not its newest."""
        ...

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
        """None when the job is unknown. A failure that spends the retry budget makes
        the job poison, with `poison_request` as its replayable request."""
        ...


class PoisonStore(Protocol):
    async def record_poison(
        self, job_id: uuid.UUID, reason: PoisonReason, error: str, request: bytes
    ) -> PoisonJob | None:
        """The job's open poison job; None when the job is unknown or done."""
        ...

    async def list_poison_jobs(
        self,
        tenant_id: uuid.UUID,
        include_replayed: bool,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[PoisonJob]:
        """Newest first."""
        ...

    async def retry_poison(
        self, tenant_id: uuid.UUID, poison_job_id: uuid.UUID
    ) -> tuple[PoisonJob, Job] | None:
        """Replayed (once), its job back in the outbox; None when there is none such."""
        ...


class ContentLock(Protocol):
    """Checks and deletions on one original key, under its content lock."""

    async def users(self, excluding: uuid.UUID | None = None) -> int:
        """Asset rows (live or deleted) whose original is this key."""
        ...

    async def still_deleted(self, asset_id: uuid.UUID) -> bool: ...

    async def remove_asset_rows(self, asset_id: uuid.UUID) -> None:
        """Remove a deleted asset and everything hanging off it."""
        ...


class PurgeStore(Protocol):
    async def deleted_assets(self, tenant_id: uuid.UUID, before: dt.datetime) -> list[DeletedAsset]:
        """Assets deleted before `before`, oldest deletion first."""
        ...

    async def referenced_keys(self, tenant_id: uuid.UUID, keys: Collection[str]) -> set[str]:
        """Those of `keys` a row of the tenant uses (an original or a rendition)."""
        ...

    async def live_assets(
        self, tenant_id: uuid.UUID, asset_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of `asset_ids` that are live (not deleted) assets of the tenant."""
        ...

    def locked_content(
        self, tenant_id: uuid.UUID, original_key: str
    ) -> AbstractAsyncContextManager[ContentLock]:
        """The lock RegisterAsset takes for the same original, held until exit."""
        ...

    async def stale_renditions(self, tenant_id: uuid.UUID) -> list[StaleRendition]:
        """Renditions of live assets whose preset the tenant no longer has."""
        ...

    async def remove_stale_rendition(self, tenant_id: uuid.UUID, stale: StaleRendition) -> bool:
        """Its row gone; False (nothing done) when its preset is the tenant's again or
        the row names another object by now."""
        ...


class PresetStore(Protocol):
    """A tenant's presets: its own, or the service defaults until its first change,
    which copies them (copy-on-write). Each change is decided under a lock on the
    tenant, so limits hold against concurrent changes."""

    async def tenant_presets(self, tenant_id: uuid.UUID) -> TenantPresets:
        """Largest box first, then by name."""
        ...

    async def create_preset(
        self, tenant_id: uuid.UUID, preset: Preset, max_presets: int
    ) -> PresetChange:
        """DONE, EXISTS (the name is taken) or TOO_MANY (it has `max_presets`)."""
        ...

    async def replace_preset(self, tenant_id: uuid.UUID, preset: Preset) -> PresetChange:
        """The preset of that name replaced: DONE or NOT_FOUND."""
        ...

    async def delete_preset(self, tenant_id: uuid.UUID, name: str) -> PresetChange:
        """DONE, NOT_FOUND or LAST (a tenant keeps at least one)."""
        ...


class BackfillStore(Protocol):
    """Re-renders: jobs of assets that are (usually) ready already. A re-render job is
    pending in the outbox like any other; the asset stays as it is until it completes,
    and its failure does not fail the asset."""

    async def set_focal_point(
        self,
        tenant_id: uuid.UUID,
        asset_id: uuid.UUID,
        point: FocalPoint | None,
        *,
        rerender: bool,
    ) -> FocalChange | None:
        """Set (None: clear) the live asset's point; with `rerender`, a re-render job
        too unless the asset failed. None when the tenant has no such live asset."""
        ...

    async def start_backfill(
        self,
        tenant_id: uuid.UUID,
        scope: BackfillScope,
        preset: str,
        asset_ids: Sequence[uuid.UUID],
    ) -> Backfill:
        """One re-render job for each ready asset the scope selects (`preset`: "" for
        every preset; `asset_ids`: for BackfillScope.ASSET_IDS), except assets with an
        unfinished job."""
        ...

    async def get_backfill(
        self, tenant_id: uuid.UUID, backfill_id: uuid.UUID
    ) -> Backfill | None: ...


class UsageStore(Protocol):
    async def tenant_metrics(self, tenant_id: uuid.UUID) -> TenantMetrics: ...


class AssetWatch(Protocol):
    def subscribe(self, asset_id: uuid.UUID) -> AbstractContextManager[asyncio.Event]:
        """An event set whenever the asset's status may have changed."""
        ...


class Stores(Protocol):
    """Every store, as the servicers take them (db.CatalogDatabase is one)."""

    @property
    def tenants(self) -> TenantStore: ...

    @property
    def assets(self) -> AssetStore: ...

    @property
    def jobs(self) -> JobStore: ...

    @property
    def poison(self) -> PoisonStore: ...

    @property
    def purge(self) -> PurgeStore: ...

    @property
    def usage(self) -> UsageStore: ...

    @property
    def presets(self) -> PresetStore: ...

    @property
    def backfills(self) -> BackfillStore: ...


class RequestEncoder(Protocol):
    """The bytes a poison job keeps of the render request it gave up (the api's wire
    format): the request with the failed attempts of its budget and, when a failure
    being recorded spends the budget, that failure as its last attempt."""

    def __call__(
        self,
        request: RenderRequest,
        attempts: Sequence[Attempt],
        *,
        failed: tuple[int, str] | None = None,
    ) -> bytes: ...
