"""The catalog's data as the rest of the service sees it: frozen dataclasses and enums.

The db package turns rows into these (db/rows.py) and the api turns these into
protobuf messages (api/convert.py); between the two, nothing knows either form.

Perceptual hashes are the unsigned 64-bit values everywhere here; only the db
stores them as PostgreSQL's signed bigint (similarity.signed_hash / unsigned_hash).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from dataclasses import dataclass

from services.shared.asset_metadata import AssetMetadata, GpsPosition
from services.shared.presets import Preset

__all__ = [
    "TENANT_SETTING_NAMES",
    "ApiKey",
    "Asset",
    "AssetFilter",
    "AssetMetadata",
    "AssetRegistration",
    "AssetStatus",
    "AssetWithRenditions",
    "Attempt",
    "AttemptStart",
    "Backfill",
    "BackfillScope",
    "Claimed",
    "DeletedAsset",
    "FocalChange",
    "FocalPoint",
    "GpsPosition",
    "Job",
    "JobState",
    "JobWithAttempts",
    "NewAsset",
    "NewRendition",
    "PoisonJob",
    "PoisonJobWithAttempts",
    "PoisonReason",
    "PresetChange",
    "PresetRenditions",
    "PurgeItem",
    "PurgeItemKind",
    "PurgeReport",
    "RenderRequest",
    "RenderRequestWithAttempts",
    "Rendition",
    "SigningKey",
    "SimilarAsset",
    "StaleRendition",
    "StoredApiKey",
    "Tenant",
    "TenantMetrics",
    "TenantPresets",
    "TenantSettings",
    "without_gps",
]


class AssetStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    DELETED = "deleted"


class JobState(enum.StrEnum):
    """The states of a render job; lifecycle.py says which changes each operation makes."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    DEAD = "dead"


class PoisonReason(enum.StrEnum):
    RETRIES_EXHAUSTED = "retries_exhausted"
    DELIVERY_LIMIT = "delivery_limit"


# Tenants and keys ----------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    created_at: dt.datetime


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: uuid.UUID
    label: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class StoredApiKey:
    """What authenticating a key needs; the secret's hash never leaves the catalog."""

    key_id: str
    tenant_id: uuid.UUID
    secret_hash: bytes
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class SigningKey:
    """A key that signs delivery URLs; its secret is derived, never stored."""

    key_id: str
    tenant_id: uuid.UUID
    label: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class TenantSettings:
    """The choices a tenant makes for itself. Each field is a column of `tenants` and a
    field of the TenantSettings message of the same name: a new setting is one line
    here (with its migration and proto field); the stores, the mask check and the
    conversions follow the field list."""

    unsigned_delivery: bool = False
    # Keep the GPS position of uploads in their metadata (renditions never carry it).
    keep_gps: bool = False


TENANT_SETTING_NAMES = tuple(f.name for f in dataclasses.fields(TenantSettings))


# Assets and renditions -------------------------------------------------------------


def without_gps(metadata: AssetMetadata, settings: TenantSettings) -> AssetMetadata:
    """A registration's metadata when its caller gives no rule: never a position."""
    return dataclasses.replace(metadata, gps=None)


@dataclass(frozen=True)
class AssetFilter:
    """Which live assets a listing returns: every condition set must hold."""

    status: AssetStatus | None = None
    labels: tuple[tuple[str, str], ...] = ()  # (key, value) pairs, sorted by key
    captured_from: dt.datetime | None = None  # at or after
    captured_to: dt.datetime | None = None  # before


@dataclass(frozen=True)
class FocalPoint:
    """A point of an image as fractions of its oriented width and height (0..1 each)."""

    x: float
    y: float


@dataclass(frozen=True)
class Asset:
    id: uuid.UUID
    tenant_id: uuid.UUID
    status: AssetStatus
    content_hash: str
    perceptual_hash: int  # unsigned 64-bit
    filename: str
    declared_content_type: str
    content_type: str
    format: str
    width: int
    height: int
    size_bytes: int
    frame_count: int
    labels: dict[str, str]
    original_key: str
    upload_count: int
    thumbhash: str | None
    dominant_color: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    job_id: uuid.UUID | None  # the asset's newest job
    metadata: AssetMetadata = dataclasses.field(default_factory=AssetMetadata)
    focal_point: FocalPoint | None = None


@dataclass(frozen=True)
class Rendition:
    asset_id: uuid.UUID
    preset: str
    format: str
    object_key: str
    width: int
    height: int
    size_bytes: int
    quality: int
    psnr_db: float | None
    psnr_infinite: bool | None
    ssim: float | None  # None: no quality scores were recorded
    hash_distance: int | None
    min_ssim: float
    updated_at: dt.datetime
    content_sha256: str | None  # None: recorded before the hash was kept
    preset_version: str = ""  # "": recorded before presets were versioned


@dataclass(frozen=True)
class AssetWithRenditions:
    asset: Asset
    renditions: tuple[Rendition, ...] = ()


@dataclass(frozen=True)
class PresetRenditions:
    """An asset's status (deleted included) and its renditions of one preset."""

    status: AssetStatus
    renditions: tuple[Rendition, ...] = ()


@dataclass(frozen=True)
class SimilarAsset:
    asset_id: uuid.UUID
    perceptual_hash: int  # unsigned 64-bit
    distance: int


@dataclass(frozen=True)
class NewAsset:
    """A registration: the asset RegisterAsset inserts with its pending job."""

    tenant_id: uuid.UUID
    content_hash: str
    perceptual_hash: int  # unsigned 64-bit
    filename: str
    declared_content_type: str
    content_type: str
    format: str
    width: int
    height: int
    size_bytes: int
    frame_count: int
    labels: dict[str, str]
    original_key: str
    request_id: str
    # GPS included as the upload had it: the registration keeps it only for a tenant
    # that keeps GPS (usecases.assets.register_asset).
    metadata: AssetMetadata = dataclasses.field(default_factory=AssetMetadata)


@dataclass(frozen=True)
class NewRendition:
    """A rendition a completed job records."""

    preset: str
    format: str
    object_key: str
    width: int
    height: int
    size_bytes: int
    quality: int
    psnr_db: float | None
    psnr_infinite: bool | None
    ssim: float | None
    hash_distance: int | None
    min_ssim: float = 0.0  # the SSIM target the quality was chosen for; 0: fixed quality
    content_sha256: str | None = None  # SHA-256 of the bytes (hex); None: not sent
    preset_version: str = ""  # the Preset.version it was made from; "": not sent


# Jobs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    tenant_id: uuid.UUID
    asset_id: uuid.UUID
    state: JobState
    attempts: int
    last_error: str
    request_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    published_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class Attempt:
    job_id: uuid.UUID
    attempt: int
    worker: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    error: str
    transient: bool
    repeats: int  # consecutive transient failures folded into this row
    first_finished_at: dt.datetime | None  # when the first of those ended


@dataclass(frozen=True)
class JobWithAttempts:
    job: Job
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class RenderRequest:
    """What a renderer needs to run a job (the message the broker carries)."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    asset_id: uuid.UUID
    request_id: str
    created_at: dt.datetime
    original_key: str
    content_hash: str
    format: str
    # An earlier delivery was never settled (an attempt opened and never finished, a
    # claim before this one that opened none, or a spare at the delivery limit): the
    # renderer runs it alone.
    interrupted: bool
    # The presets to render and the asset's focal point, as they were when the job was
    # made; no presets for a job made before presets travelled (the renderer then
    # renders its configured ones).
    presets: tuple[Preset, ...] = ()
    focal_point: FocalPoint | None = None


@dataclass(frozen=True)
class RenderRequestWithAttempts:
    """A render request with the failed attempts of the job's current retry budget."""

    request: RenderRequest
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class AssetRegistration:
    asset: Asset
    created: bool
    job: Job | None
    deferred: bool = False  # the tenant is at its in-flight limit: the relay publishes it


@dataclass(frozen=True)
class Claimed:
    jobs: list[RenderRequest]  # leased to the caller
    # Past the delivery limit: the caller spares each or records it as poison
    # (delivery_limit) instead of running it.
    over_limit: list[RenderRequest]


@dataclass(frozen=True)
class AttemptStart:
    job: Job | None  # None: no such job
    attempt: int  # 0 when no attempt was opened (the job is finished)


# Poison jobs -----------------------------------------------------------------------


@dataclass(frozen=True)
class PoisonJob:
    id: uuid.UUID
    tenant_id: uuid.UUID
    job_id: uuid.UUID
    asset_id: uuid.UUID
    reason: PoisonReason
    error: str
    request: bytes  # the render request as given up, serialised, for replay
    created_at: dt.datetime
    replayed_at: dt.datetime | None


@dataclass(frozen=True)
class PoisonJobWithAttempts:
    poison_job: PoisonJob
    attempts: tuple[Attempt, ...] = ()


# Purge and usage -------------------------------------------------------------------


@dataclass(frozen=True)
class DeletedAsset:
    id: uuid.UUID
    original_key: str
    size_bytes: int
    deleted_at: dt.datetime
    renditions: tuple[tuple[str, int], ...]  # (object key, size in bytes)


class PurgeItemKind(enum.StrEnum):
    DELETED_ORIGINAL = "deleted_original"
    DELETED_RENDITION = "deleted_rendition"
    ORPHAN_OBJECT = "orphan_object"


@dataclass(frozen=True)
class PurgeItem:
    kind: PurgeItemKind
    object_key: str
    size_bytes: int
    asset_id: uuid.UUID | None = None
    modified: dt.datetime | None = None


@dataclass(frozen=True)
class PurgeReport:
    dry_run: bool
    cutoff: dt.datetime
    items: tuple[PurgeItem, ...]
    asset_rows_removed: int  # 0 on a dry run

    @property
    def bytes_freed(self) -> int:
        return sum(item.size_bytes for item in self.items)


@dataclass(frozen=True)
class TenantMetrics:
    asset_count: int
    assets_by_status: dict[str, int]
    rendition_count: int
    original_bytes: int
    rendition_bytes: int
    logical_bytes: int
    physical_bytes: int
    deduplicated_uploads: int
    jobs_by_state: dict[str, int]
    poison_job_count: int
    renditions_by_format: dict[str, tuple[int, int]]  # format name -> (count, bytes)


# Presets and backfills -------------------------------------------------------------


@dataclass(frozen=True)
class TenantPresets:
    """The presets a tenant renders: its own, or the service defaults while it has none."""

    presets: tuple[Preset, ...]
    own: bool


class PresetChange(enum.StrEnum):
    """What a change of a tenant's presets came to (decided under the tenant's lock)."""

    DONE = "done"
    EXISTS = "exists"  # create: the name is taken
    TOO_MANY = "too_many"  # create: the tenant is at the limit
    NOT_FOUND = "not_found"  # update, delete: no such preset
    LAST = "last"  # delete: it is the tenant's only preset


@dataclass(frozen=True)
class FocalChange:
    asset: Asset
    job: Job | None  # the re-render it started; None when none was wanted


class BackfillScope(enum.StrEnum):
    ALL = "all"
    MISSING = "missing"
    OUTDATED = "outdated"
    ASSET_IDS = "asset_ids"


@dataclass(frozen=True)
class Backfill:
    """A re-render of a selection of a tenant's assets; counts come from its jobs."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    scope: BackfillScope
    preset: str  # "": every preset
    total: int  # jobs it made
    done: int  # of those, done
    failed: int  # of those, dead
    unfinished: int  # of those, neither
    created_at: dt.datetime
    last_finished_at: dt.datetime | None  # the latest finish of its jobs

    @property
    def finished(self) -> bool:
        """No job of it is left to run (jobs of assets Purge removed count as gone)."""
        return self.unfinished == 0

    @property
    def finished_at(self) -> dt.datetime | None:
        if not self.finished:
            return None
        return self.last_finished_at or self.created_at


@dataclass(frozen=True)
class StaleRendition:
    """A rendition of a live asset whose preset the tenant no longer has."""

    asset_id: uuid.UUID
    preset: str
    format: str
    object_key: str
    size_bytes: int
