"""Assets and their renditions: registration (with the asset's first job), reads,
near-duplicate search, soft delete."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.catalog.db import rows
from services.catalog.db.pool import Connection, database_methods, sql_list, transaction
from services.catalog.db.presets import (
    DEFAULT_PRESETS,
    PresetDefaults,
    effective_presets_sql,
    preset_names_sql,
)
from services.catalog.lifecycle import IN_FLIGHT
from services.catalog.model import (
    Asset,
    AssetFilter,
    AssetMetadata,
    AssetRegistration,
    AssetStatus,
    Job,
    NewAsset,
    PresetRenditions,
    Rendition,
    SimilarAsset,
    TenantSettings,
    without_gps,
)
from services.catalog.ports import KeysetPosition, MetadataRule
from services.catalog.similarity import probes, signed_hash
from services.shared.presets import Preset

__all__ = ["PgAssetStore", "asset_row", "lock_content"]

_INSERT_ASSET = """
    INSERT INTO assets (id, tenant_id, status, content_hash, perceptual_hash, filename,
        declared_content_type, content_type, format, width, height, size_bytes,
        frame_count, labels, original_key, metadata, capture_time)
    VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    ON CONFLICT (tenant_id, content_hash) WHERE deleted_at IS NULL DO NOTHING
    RETURNING id
"""
# The job renders the tenant's presets as they are now (a new asset has no focal point).
_INSERT_JOB = f"""
    INSERT INTO jobs AS j (id, tenant_id, asset_id, state, request_id, presets)
    VALUES ($1, $2, $3, 'pending', $4, {effective_presets_sql("$2", "$5")})
    RETURNING {rows.JOB_COLUMNS}
"""
_COUNT_UPLOAD = """
    UPDATE assets SET upload_count = upload_count + 1
    WHERE tenant_id = $1 AND content_hash = $2 AND deleted_at IS NULL RETURNING id
"""
# Found through the one live asset with these bytes (assets_tenant_content), then its
# jobs (jobs_asset): no index on the request id is needed.
_REGISTERED_BY = f"""
    SELECT {rows.JOB_COLUMNS} FROM jobs j
    JOIN assets a ON a.id = j.asset_id AND a.tenant_id = j.tenant_id
    WHERE j.tenant_id = $1 AND j.request_id = $2 AND a.content_hash = $3
      AND a.deleted_at IS NULL
    ORDER BY j.created_at LIMIT 1
"""
# The tenant's settings as a registration reads them: FOR SHARE waits for a settings
# change in flight and holds the next one back until the registration commits, so an
# upload never keeps what its tenant has just stopped keeping.
_REGISTRATION_SETTINGS = (
    f"SELECT {rows.TENANT_SETTINGS_COLUMNS} FROM tenants WHERE id = $1 FOR SHARE"
)
_LIST_ASSETS = f"""
    SELECT {rows.ASSET_COLUMNS} FROM assets a
    WHERE a.tenant_id = $1 AND a.deleted_at IS NULL
      AND ($2::timestamptz IS NULL OR (a.created_at, a.id) < ($2, $3::uuid))
      {{conditions}}
    ORDER BY a.created_at DESC, a.id DESC
    LIMIT $4
"""
# ListAssets' optional conditions, each written only when set, so that the planner sees
# the ones in use and picks their index (assets_labels, assets_tenant_capture).
_ASSET_CONDITIONS = {
    "status": "a.status = ${}",
    "labels": "a.labels @> ${}::jsonb",
    "captured_from": "a.capture_time >= ${}",
    "captured_to": "a.capture_time < ${}",
}
# Only renditions of presets the tenant has: those of a deleted preset are unreferenced
# (Purge reclaims them).
_LIST_RENDITIONS = f"""
    SELECT {rows.RENDITION_COLUMNS}
    FROM renditions WHERE tenant_id = $1 AND asset_id = ANY($2::uuid[])
      AND preset = ANY({preset_names_sql("$1", "$3")})
    ORDER BY asset_id, width * height DESC, preset, format
"""
# The delivery service's lookup on a CDN miss: the asset by its primary key, its
# renditions of one preset by theirs (asset_id, preset, format). Only the asset's status
# is taken from `assets`, so the rendition columns keep their names.
_PRESET_RENDITIONS = f"""
    SELECT a.status AS asset_status, r.* FROM assets a
    LEFT JOIN LATERAL (
        SELECT {rows.RENDITION_COLUMNS} FROM renditions
        WHERE asset_id = a.id AND tenant_id = a.tenant_id AND preset = $3
          AND preset = ANY({preset_names_sql("$1", "$4")})
    ) r ON true
    WHERE a.tenant_id = $1 AND a.id = $2
    ORDER BY r.format
"""
# Multi-index hashing: one index-only probe per hash block (see similarity.py), then
# the exact distance, instead of a scan of the tenant's assets.
_NEAR_DUPLICATES = """
    SELECT id, perceptual_hash, distance FROM (
        SELECT id, perceptual_hash,
               bit_count((perceptual_hash # $2)::bit(64))::int AS distance
        FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
          AND phash_b0 = ANY($6::int[])
        UNION
        SELECT id, perceptual_hash, bit_count((perceptual_hash # $2)::bit(64))::int
        FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
          AND phash_b1 = ANY($7::int[])
        UNION
        SELECT id, perceptual_hash, bit_count((perceptual_hash # $2)::bit(64))::int
        FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
          AND phash_b2 = ANY($8::int[])
        UNION
        SELECT id, perceptual_hash, bit_count((perceptual_hash # $2)::bit(64))::int
        FROM assets WHERE tenant_id = $1 AND deleted_at IS NULL
          AND phash_b3 = ANY($9::int[])
    ) candidates
    WHERE distance <= $3 AND id IS DISTINCT FROM $4
    ORDER BY distance, id
    LIMIT $5
"""


async def lock_content(connection: Connection, tenant_id: uuid.UUID, key: str) -> None:
    """A transaction-scoped lock on one original object of a tenant."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{tenant_id}:{key}"
    )


async def asset_row(connection: Connection, tenant_id: uuid.UUID, asset_id: uuid.UUID) -> Asset:
    row = await connection.fetchrow(
        f"SELECT {rows.ASSET_COLUMNS} FROM assets a WHERE a.tenant_id = $1 AND a.id = $2",
        tenant_id,
        asset_id,
    )
    assert row is not None
    return rows.asset(row)


async def _insert_asset(
    connection: Connection, new: NewAsset, metadata: AssetMetadata
) -> uuid.UUID | None:
    """The new asset's id; None when a concurrent upload of the same bytes won."""
    asset_id: uuid.UUID | None = await connection.fetchval(
        _INSERT_ASSET,
        uuid.uuid4(),
        new.tenant_id,
        new.content_hash,
        signed_hash(new.perceptual_hash),
        new.filename,
        new.declared_content_type,
        new.content_type,
        new.format,
        new.width,
        new.height,
        new.size_bytes,
        new.frame_count,
        new.labels,
        new.original_key,
        rows.metadata_document(metadata),
        metadata.capture_time,
    )
    return asset_id


@database_methods
class PgAssetStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        tenant_max_in_flight: int = 0,
        defaults: Sequence[Preset] = DEFAULT_PRESETS,
    ) -> None:
        self._pool = pool
        self._defaults = PresetDefaults(tuple(defaults))
        # Render jobs one tenant may have on the broker at once (0: no limit).
        self._tenant_max_in_flight = tenant_max_in_flight

    async def resolve_duplicate(
        self, tenant_id: uuid.UUID, content_hash: str, request_id: str = ""
    ) -> Asset | None:
        """The live asset with these bytes, counting this upload against it.

        None also when that asset was registered by this same request: an upload
        retried after its answer was lost is not a duplicate of itself, and its
        RegisterAsset answers `created` as the first did (see register_asset).
        """
        async with transaction(self._pool) as connection:
            if request_id and await connection.fetchval(
                "SELECT 1 FROM assets a "
                "JOIN jobs j ON j.asset_id = a.id AND j.tenant_id = a.tenant_id "
                "WHERE a.tenant_id = $1 AND a.content_hash = $2 AND a.deleted_at IS NULL "
                "AND j.request_id = $3",
                tenant_id,
                content_hash,
                request_id,
            ):
                return None
            asset_id = await connection.fetchval(_COUNT_UPLOAD, tenant_id, content_hash)
            if asset_id is None:
                return None
            return await asset_row(connection, tenant_id, asset_id)

    async def register_asset(
        self, new: NewAsset, keep: MetadataRule = without_gps
    ) -> AssetRegistration:
        """Insert the asset and its pending job together; the unique index picks a winner.

        Idempotent on the request id: a registration repeated after its commit's answer
        was lost (a retry here, or the caller's) finds its own row and answers as the
        first run did, `created`, instead of taking itself for a duplicate.
        """
        tenant_id = new.tenant_id
        async with transaction(self._pool) as connection:
            # Serialises with Purge deleting this original (see locked_content), and
            # with a concurrent repeat of this same registration.
            await lock_content(connection, tenant_id, new.original_key)
            own = await self._registered_by(connection, new)
            if own is not None:
                return AssetRegistration(
                    asset=await asset_row(connection, tenant_id, own.asset_id),
                    created=True,
                    job=own,
                    deferred=await self._at_in_flight_limit(connection, tenant_id),
                )
            metadata = await self._kept_metadata(connection, new, keep)
            asset_id = await _insert_asset(connection, new, metadata)
            if asset_id is None:
                # A concurrent upload of the same bytes won; count this one against it.
                asset_id = await connection.fetchval(_COUNT_UPLOAD, tenant_id, new.content_hash)
                asset = await asset_row(connection, tenant_id, asset_id)
                return AssetRegistration(asset=asset, created=False, job=None)
            job = await connection.fetchrow(
                _INSERT_JOB,
                uuid.uuid4(),
                tenant_id,
                asset_id,
                new.request_id,
                self._defaults.snapshot,
            )
            assert job is not None
            return AssetRegistration(
                asset=await asset_row(connection, tenant_id, asset_id),
                created=True,
                job=rows.job(job),
                deferred=await self._at_in_flight_limit(connection, tenant_id),
            )

    @staticmethod
    async def _kept_metadata(
        connection: Connection, new: NewAsset, keep: MetadataRule
    ) -> AssetMetadata:
        found = await connection.fetchrow(_REGISTRATION_SETTINGS, new.tenant_id)
        settings = TenantSettings() if found is None else rows.tenant_settings(found)
        return keep(new.metadata, settings)

    @staticmethod
    async def _registered_by(connection: Connection, new: NewAsset) -> Job | None:
        """The job a registration with this request id and these bytes already created."""
        if not new.request_id:
            return None
        row = await connection.fetchrow(
            _REGISTERED_BY, new.tenant_id, new.request_id, new.content_hash
        )
        return None if row is None else rows.job(row)

    async def _at_in_flight_limit(self, connection: Connection, tenant_id: uuid.UUID) -> bool:
        if not self._tenant_max_in_flight:
            return False
        # A soft limit: concurrent uploads may each see room and pass it by a few.
        in_flight = await connection.fetchval(
            f"SELECT count(*) FROM jobs WHERE tenant_id = $1 AND state IN ({sql_list(IN_FLIGHT)})",
            tenant_id,
        )
        return bool(in_flight >= self._tenant_max_in_flight)

    async def get_asset(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, *, include_deleted: bool = False
    ) -> Asset | None:
        row = await self._pool.fetchrow(
            f"SELECT {rows.ASSET_COLUMNS} FROM assets a WHERE a.tenant_id = $1 AND a.id = $2 "
            "AND ($3 OR a.deleted_at IS NULL)",
            tenant_id,
            asset_id,
            include_deleted,
        )
        return None if row is None else rows.asset(row)

    async def list_renditions(
        self, tenant_id: uuid.UUID, asset_ids: Sequence[uuid.UUID]
    ) -> list[Rendition]:
        found = await self._pool.fetch(
            _LIST_RENDITIONS, tenant_id, list(asset_ids), self._defaults.names
        )
        return [rows.rendition(r) for r in found]

    async def preset_renditions(
        self, tenant_id: uuid.UUID, asset_id: uuid.UUID, preset: str
    ) -> PresetRenditions | None:
        found = await self._pool.fetch(
            _PRESET_RENDITIONS, tenant_id, asset_id, preset, self._defaults.names
        )
        if not found:
            return None
        return PresetRenditions(
            status=AssetStatus(found[0]["asset_status"]),
            renditions=tuple(rows.rendition(r) for r in found if r["asset_id"] is not None),
        )

    async def list_assets(
        self,
        tenant_id: uuid.UUID,
        where: AssetFilter,
        after: KeysetPosition | None,
        limit: int,
    ) -> list[Asset]:
        """Live assets meeting `where`, newest first, keyset-paged on (created_at, id)."""
        after_time, after_id = after if after else (None, None)
        given = {
            "status": where.status,
            "labels": dict(where.labels) or None,
            "captured_from": where.captured_from,
            "captured_to": where.captured_to,
        }
        used = [(name, value) for name, value in given.items() if value is not None]
        conditions = "".join(
            f" AND {_ASSET_CONDITIONS[name].format(index)}"
            for index, (name, _) in enumerate(used, start=5)
        )
        found = await self._pool.fetch(
            _LIST_ASSETS.format(conditions=conditions),
            tenant_id,
            after_time,
            after_id,
            limit,
            *(value for _, value in used),
        )
        return [rows.asset(r) for r in found]

    async def near_duplicates(
        self,
        tenant_id: uuid.UUID,
        perceptual_hash: int,
        max_distance: int,
        limit: int,
        exclude: uuid.UUID | None,
    ) -> list[SimilarAsset]:
        """Live assets within `max_distance`, closest first, ties by id."""
        found = await self._pool.fetch(
            _NEAR_DUPLICATES,
            tenant_id,
            signed_hash(perceptual_hash),
            max_distance,
            exclude,
            limit,
            *probes(perceptual_hash, max_distance),
        )
        return [rows.similar_asset(r) for r in found]

    async def delete_asset(self, tenant_id: uuid.UUID, asset_id: uuid.UUID) -> Asset | None:
        """Soft delete (idempotent). None when the tenant has no such asset."""
        async with transaction(self._pool) as connection:
            await connection.execute(
                "UPDATE assets SET status = 'deleted', deleted_at = clock_timestamp(), "
                "updated_at = clock_timestamp() "
                "WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
                tenant_id,
                asset_id,
            )
            row = await connection.fetchrow(
                f"SELECT {rows.ASSET_COLUMNS} FROM assets a WHERE a.tenant_id = $1 AND a.id = $2",
                tenant_id,
                asset_id,
            )
            return None if row is None else rows.asset(row)
