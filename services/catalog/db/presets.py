"""Tenant presets: the stored definitions, copy-on-write from the service defaults, and
the SQL every other store uses to read "the tenant's presets" (its own, else the
defaults) in the statement that needs them, so a job's snapshot and a listing's filter
see one consistent state.

A tenant without rows here renders the defaults (IMAGEPIPE_PRESETS). Its first change
copies them in, under a lock on its `tenants` row that every change takes, so two first
changes cannot both copy, and counts (the limit, the last preset) are exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.catalog.db.pool import Connection, database_methods, transaction
from services.catalog.model import PresetChange, TenantPresets
from services.shared.presets import Preset
from services.shared.settings import Settings

__all__ = [
    "DEFAULT_PRESETS",
    "PgPresetStore",
    "PresetDefaults",
    "effective_presets_sql",
    "preset_names_sql",
    "presets_from_snapshot",
    "snapshot",
    "sorted_presets",
]

DEFAULT_PRESETS: tuple[Preset, ...] = tuple(Settings.model_fields["presets"].default_factory())  # type: ignore[call-arg,misc]

# Largest box first, then by name: how presets are listed and snapshotted.
_ORDER = "(p.definition->>'max_width')::bigint * (p.definition->>'max_height')::bigint DESC, p.name"


def sorted_presets(presets: Sequence[Preset]) -> tuple[Preset, ...]:
    return tuple(sorted(presets, key=lambda p: (-p.max_width * p.max_height, p.name)))


def snapshot(presets: Sequence[Preset]) -> list[dict[str, Any]]:
    """Definitions with their versions, as a job keeps them (jobs.presets)."""
    return [{**p.model_dump(mode="json"), "version": p.version} for p in sorted_presets(presets)]


def presets_from_snapshot(value: list[dict[str, Any]] | None) -> tuple[Preset, ...]:
    """A job's presets; () for a job made before presets travelled (NULL). The version
    is recomputed from the definition, which is what it names."""
    if not value:
        return ()
    return tuple(
        Preset.model_validate({k: v for k, v in item.items() if k != "version"}) for item in value
    )


@dataclass(frozen=True)
class PresetDefaults:
    """The service defaults as the SQL below takes them (parameters, not literals)."""

    presets: tuple[Preset, ...]

    @property
    def snapshot(self) -> list[dict[str, Any]]:
        return snapshot(self.presets)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.presets]


def effective_presets_sql(tenant: str, defaults: str) -> str:
    """An expression: the tenant's presets as a jsonb snapshot (see `snapshot`), its own
    or, while it has none, `defaults` (a parameter holding PresetDefaults.snapshot)."""
    return (
        "coalesce((SELECT jsonb_agg(p.definition || jsonb_build_object('version', p.version) "
        f"ORDER BY {_ORDER}) FROM tenant_presets p WHERE p.tenant_id = {tenant}), "
        f"{defaults}::jsonb)"
    )


def preset_names_sql(tenant: str, defaults: str) -> str:
    """An expression: the names of the tenant's presets as text[], its own or, while it
    has none, `defaults` (a parameter holding PresetDefaults.names)."""
    return (
        f"(SELECT CASE WHEN count(*) = 0 THEN {defaults}::text[] ELSE array_agg(p.name) END "
        f"FROM tenant_presets p WHERE p.tenant_id = {tenant})::text[]"
    )


_OWN = f"SELECT definition FROM tenant_presets p WHERE p.tenant_id = $1 ORDER BY {_ORDER}"
_INSERT = """
    INSERT INTO tenant_presets (tenant_id, name, definition, version) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant_id, name) DO NOTHING
"""
_REPLACE = """
    UPDATE tenant_presets SET definition = $3, version = $4, updated_at = clock_timestamp()
    WHERE tenant_id = $1 AND name = $2
"""


def _preset(definition: dict[str, Any]) -> Preset:
    return Preset.model_validate(definition)


@database_methods
class PgPresetStore:
    def __init__(self, pool: asyncpg.Pool, defaults: Sequence[Preset] = DEFAULT_PRESETS) -> None:
        self._pool = pool
        self._defaults = sorted_presets(defaults)

    async def tenant_presets(self, tenant_id: uuid.UUID) -> TenantPresets:
        found = await self._pool.fetch(_OWN, tenant_id)
        if not found:
            return TenantPresets(self._defaults, own=False)
        return TenantPresets(tuple(_preset(r["definition"]) for r in found), own=True)

    async def _locked(
        self, connection: Connection, tenant_id: uuid.UUID
    ) -> tuple[list[str], bool] | None:
        """Lock the tenant's presets: the names of those it renders and whether they are
        its own (else the defaults'); None when there is no such tenant."""
        locked = await connection.fetchval(
            "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id
        )
        if locked is None:
            return None
        own = await connection.fetch(
            "SELECT name FROM tenant_presets WHERE tenant_id = $1", tenant_id
        )
        if own:
            return [r["name"] for r in own], True
        return [p.name for p in self._defaults], False

    async def _copy_on_write(
        self, connection: Connection, tenant_id: uuid.UUID, *, own: bool
    ) -> None:
        """Under the lock, before the first change: the defaults become the tenant's own."""
        if own:
            return
        await connection.executemany(
            _INSERT,
            [(tenant_id, p.name, p.model_dump(mode="json"), p.version) for p in self._defaults],
        )

    async def create_preset(
        self, tenant_id: uuid.UUID, preset: Preset, max_presets: int
    ) -> PresetChange:
        async with transaction(self._pool) as connection:
            locked = await self._locked(connection, tenant_id)
            if locked is None:
                return PresetChange.NOT_FOUND
            names, own = locked
            if preset.name in names:
                return PresetChange.EXISTS
            if len(names) >= max_presets:
                return PresetChange.TOO_MANY
            await self._copy_on_write(connection, tenant_id, own=own)
            await connection.execute(
                _INSERT, tenant_id, preset.name, preset.model_dump(mode="json"), preset.version
            )
            return PresetChange.DONE

    async def replace_preset(self, tenant_id: uuid.UUID, preset: Preset) -> PresetChange:
        async with transaction(self._pool) as connection:
            locked = await self._locked(connection, tenant_id)
            if locked is None or preset.name not in locked[0]:
                return PresetChange.NOT_FOUND
            await self._copy_on_write(connection, tenant_id, own=locked[1])
            await connection.execute(
                _REPLACE, tenant_id, preset.name, preset.model_dump(mode="json"), preset.version
            )
            return PresetChange.DONE

    async def delete_preset(self, tenant_id: uuid.UUID, name: str) -> PresetChange:
        async with transaction(self._pool) as connection:
            locked = await self._locked(connection, tenant_id)
            if locked is None or name not in locked[0]:
                return PresetChange.NOT_FOUND
            if len(locked[0]) <= 1:
                return PresetChange.LAST
            await self._copy_on_write(connection, tenant_id, own=locked[1])
            await connection.execute(
                "DELETE FROM tenant_presets WHERE tenant_id = $1 AND name = $2", tenant_id, name
            )
            return PresetChange.DONE
