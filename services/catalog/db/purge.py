"""What Purge asks of the database: deleted assets, which listed keys rows still use,
and the content lock under which an original and its rows go together."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager

import asyncpg

from services.catalog.db import rows
from services.catalog.db.assets import lock_content
from services.catalog.db.pool import (
    DISCONNECTED,
    Connection,
    Uncommitted,
    database_methods,
    transaction,
    translated,
)
from services.catalog.db.presets import DEFAULT_PRESETS, PresetDefaults, preset_names_sql
from services.catalog.model import DeletedAsset, StaleRendition
from services.shared.presets import Preset
from services.shared.storage import asset_of_rendition_key

__all__ = ["PgContentLock", "PgPurgeStore"]

_DELETED_ASSETS = """
    SELECT a.id, a.original_key, a.size_bytes, a.deleted_at,
           coalesce(jsonb_agg(jsonb_build_array(r.object_key, r.size_bytes))
                    FILTER (WHERE r.object_key IS NOT NULL), '[]'::jsonb) AS renditions
    FROM assets a LEFT JOIN renditions r ON r.asset_id = a.id AND r.tenant_id = a.tenant_id
    WHERE a.tenant_id = $1 AND a.deleted_at IS NOT NULL AND a.deleted_at < $2
    GROUP BY a.id
    ORDER BY a.deleted_at, a.id
"""
# Each through an index: originals by (tenant_id, original_key), renditions by the
# asset id their key holds (the primary key), the rest (keys of no asset, which only
# a hand-made row could use) by tenant.
_USED_ORIGINALS = (
    "SELECT original_key AS key FROM assets WHERE tenant_id = $1 AND original_key = ANY($2)"
)
_USED_RENDITIONS = (
    "SELECT object_key AS key FROM renditions "
    "WHERE tenant_id = $1 AND asset_id = ANY($2::uuid[]) AND object_key = ANY($3)"
)
# Renditions of live assets whose preset the tenant no longer has ($2: the defaults'
# names, for a tenant without presets of its own).
_STALE_RENDITIONS = f"""
    SELECT r.asset_id, r.preset, r.format, r.object_key, r.size_bytes
    FROM renditions r JOIN assets a ON a.id = r.asset_id AND a.tenant_id = r.tenant_id
    WHERE r.tenant_id = $1 AND a.deleted_at IS NULL
      AND NOT (r.preset = ANY({preset_names_sql("$1", "$2")}))
    ORDER BY r.object_key
"""
# Still stale and still this object: a preset made again since, or a render that wrote
# the row anew, keeps it.
_REMOVE_STALE = f"""
    DELETE FROM renditions r
    WHERE r.tenant_id = $1 AND r.asset_id = $2 AND r.preset = $3 AND r.format = $4
      AND r.object_key = $5 AND NOT (r.preset = ANY({preset_names_sql("$1", "$6")}))
"""
_USED_OTHERS = (
    "SELECT object_key AS key FROM renditions WHERE tenant_id = $1 AND object_key = ANY($2)"
)


class PgContentLock:
    """Checks and deletions on one original key, under its content lock."""

    def __init__(self, connection: Connection, tenant_id: uuid.UUID, key: str) -> None:
        self._connection = connection
        self._tenant_id = tenant_id
        self._key = key

    async def users(self, excluding: uuid.UUID | None = None) -> int:
        """Asset rows (live or deleted) whose original is this key."""
        count = await self._connection.fetchval(
            "SELECT count(*) FROM assets WHERE tenant_id = $1 AND original_key = $2 "
            "AND id IS DISTINCT FROM $3",
            self._tenant_id,
            self._key,
            excluding,
        )
        return int(count or 0)

    async def still_deleted(self, asset_id: uuid.UUID) -> bool:
        return bool(
            await self._connection.fetchval(
                "SELECT 1 FROM assets WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL",
                self._tenant_id,
                asset_id,
            )
        )

    async def remove_asset_rows(self, asset_id: uuid.UUID) -> None:
        """Remove a deleted asset and everything hanging off it."""
        # CompleteJob locks the job row too: a render finishing meanwhile waits, then
        # finds no job and is discarded (its objects are orphans for the next purge).
        await self._connection.execute(
            "SELECT id FROM jobs WHERE tenant_id = $1 AND asset_id = $2 FOR UPDATE",
            self._tenant_id,
            asset_id,
        )
        for statement in (
            "DELETE FROM poison_jobs WHERE tenant_id = $1 AND asset_id = $2",
            "DELETE FROM renditions WHERE tenant_id = $1 AND asset_id = $2",
            "DELETE FROM jobs WHERE tenant_id = $1 AND asset_id = $2",
            "DELETE FROM assets WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL",
        ):
            await self._connection.execute(statement, self._tenant_id, asset_id)


# A ContentLock runs inside its holder's transaction: a statement cannot be repeated
# alone, so a lost connection is reported (Unavailable), never retried.
database_methods(PgContentLock, retry=False)


@database_methods
class PgPurgeStore:
    def __init__(self, pool: asyncpg.Pool, defaults: Sequence[Preset] = DEFAULT_PRESETS) -> None:
        self._pool = pool
        self._defaults = PresetDefaults(tuple(defaults))

    async def stale_renditions(self, tenant_id: uuid.UUID) -> list[StaleRendition]:
        """Renditions of live assets whose preset the tenant no longer has."""
        found = await self._pool.fetch(_STALE_RENDITIONS, tenant_id, self._defaults.names)
        return [
            StaleRendition(
                asset_id=r["asset_id"],
                preset=r["preset"],
                format=r["format"],
                object_key=r["object_key"],
                size_bytes=r["size_bytes"],
            )
            for r in found
        ]

    async def remove_stale_rendition(self, tenant_id: uuid.UUID, stale: StaleRendition) -> bool:
        """Its row gone, if it is still stale and still names this object."""
        status = await self._pool.execute(
            _REMOVE_STALE,
            tenant_id,
            stale.asset_id,
            stale.preset,
            stale.format,
            stale.object_key,
            self._defaults.names,
        )
        return bool(status.endswith(" 1"))

    async def deleted_assets(self, tenant_id: uuid.UUID, before: dt.datetime) -> list[DeletedAsset]:
        """Deleted assets whose deletion is older than `before`, with their renditions."""
        found = await self._pool.fetch(_DELETED_ASSETS, tenant_id, before)
        return [rows.deleted_asset(r) for r in found]

    async def referenced_keys(self, tenant_id: uuid.UUID, keys: Collection[str]) -> set[str]:
        """Those of `keys` a row of the tenant uses: an asset's original (live or
        deleted) or a rendition."""
        wanted = list(keys)
        if not wanted:
            return set()
        owners = {key: asset_of_rendition_key(key) for key in wanted}
        of_assets = [key for key, owner in owners.items() if owner is not None]
        others = [key for key, owner in owners.items() if owner is None]
        asset_ids = list({uuid.UUID(owner) for owner in owners.values() if owner is not None})
        async with self._pool.acquire() as connection:
            found = list(await connection.fetch(_USED_ORIGINALS, tenant_id, wanted))
            if of_assets:
                found += await connection.fetch(_USED_RENDITIONS, tenant_id, asset_ids, of_assets)
            if others:
                found += await connection.fetch(_USED_OTHERS, tenant_id, others)
        return {r["key"] for r in found}

    async def live_assets(
        self, tenant_id: uuid.UUID, asset_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of `asset_ids` that are live (not deleted) assets of the tenant."""
        if not asset_ids:
            return set()
        found = await self._pool.fetch(
            "SELECT id FROM assets WHERE tenant_id = $1 AND id = ANY($2::uuid[]) "
            "AND deleted_at IS NULL",
            tenant_id,
            list(asset_ids),
        )
        return {r["id"] for r in found}

    @asynccontextmanager
    async def locked_content(
        self, tenant_id: uuid.UUID, original_key: str
    ) -> AsyncIterator[PgContentLock]:
        """A transaction holding the lock RegisterAsset takes for the same original.

        While it is held no upload can register an asset on this key, so what the
        holder checks about the key's users stays true until it commits.
        """
        try:
            async with transaction(self._pool) as connection:
                await lock_content(connection, tenant_id, original_key)
                yield PgContentLock(connection, tenant_id, original_key)
        except (Uncommitted, *DISCONNECTED, asyncpg.DataError) as error:
            raise translated(error) from (error.cause if isinstance(error, Uncommitted) else error)
