"""A tenant's presets: listing, creating, updating and deleting them, each definition
checked against the one Preset model (services.shared.presets) with a reason per kind
of mistake.

A tenant without presets of its own renders the service defaults; its first change
starts from a copy of them (the store does the copy, under the tenant's lock). Changing
a preset gives it a new version; renditions made from the old one stay until a
backfill re-renders them. Deleting one leaves its renditions unreferenced: they are
no longer listed or served, and Purge reclaims them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import NamedTuple

from pydantic import ValidationError

from services.catalog.model import PresetChange, TenantPresets
from services.catalog.ports import PresetStore
from services.catalog.usecases.masks import masked_fields
from services.shared.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.shared.presets import MAX_PRESET_SIDE, MAX_TENANT_PRESETS, Preset

__all__ = [
    "UPDATABLE_FIELDS",
    "checked_preset",
    "create_preset",
    "delete_preset",
    "list_presets",
    "preset_not_found",
    "update_preset",
]

# What UpdatePreset may change: every field but the name (and the version, derived).
UPDATABLE_FIELDS = tuple(name for name in Preset.model_fields if name != "name")


class _Problem(NamedTuple):
    reason: str
    wanted: str


_SIZE = _Problem(reason="INVALID_PRESET_SIZE", wanted=f"a whole number from 1 to {MAX_PRESET_SIDE}")
# What each field's mistakes are reported as, and what it must be.
_PROBLEMS: dict[str, _Problem] = {
    "name": _Problem(
        reason="INVALID_PRESET", wanted="a-z first, then up to 31 of a-z, 0-9, '-' and '_'"
    ),
    "max_width": _SIZE,
    "max_height": _SIZE,
    "formats": _Problem(
        reason="INVALID_PRESET_FORMAT", wanted="one or more of jpeg, webp, avif, each once"
    ),
    "quality": _Problem(reason="INVALID_PRESET_QUALITY", wanted="from 1 to 100"),
    "min_ssim": _Problem(
        reason="INVALID_PRESET_QUALITY", wanted="0 (a fixed quality) or above 0 and below 1"
    ),
    "chroma_subsampling": _Problem(reason="INVALID_PRESET_CHROMA", wanted="4:2:0 or 4:4:4"),
    "fit": _Problem(reason="INVALID_PRESET_FIT", wanted="inside or cover"),
    "gravity": _Problem(
        reason="INVALID_PRESET_GRAVITY", wanted="centre, entropy, attention or focal"
    ),
}


def preset_not_found(name: str) -> NotFound:
    return NotFound(
        f"the tenant has no preset {name!r} (ListTenantPresets lists them)",
        reason="PRESET_NOT_FOUND",
        metadata={"preset": name},
    )


def _invalid(field: str, value: object) -> InvalidArgument:
    reason, wanted = _PROBLEMS[field]
    shown = repr(value)[:64]
    return InvalidArgument(
        f"preset.{field} is {shown}; it must be {wanted}",
        reason=reason,
        metadata={"field": f"preset.{field}"},
    )


def checked_preset(fields: Mapping[str, object]) -> Preset:
    """The preset these values define (Preset's field names; a missing one takes its
    default), or InvalidArgument naming the first field that is wrong."""
    try:
        preset = Preset.model_validate(dict(fields))
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "name"
        if field not in _PROBLEMS:
            field = "name"
        raise _invalid(field, fields.get(field)) from None
    if len(set(preset.formats)) != len(preset.formats):
        raise _invalid("formats", preset.formats)
    return preset


async def list_presets(presets: PresetStore, *, tenant_id: uuid.UUID) -> TenantPresets:
    """Its own presets, or the defaults while it has none; largest box first."""
    return await presets.tenant_presets(tenant_id)


async def create_preset(
    presets: PresetStore, *, tenant_id: uuid.UUID, fields: Mapping[str, object]
) -> Preset:
    preset = checked_preset(fields)
    change = await presets.create_preset(tenant_id, preset, MAX_TENANT_PRESETS)
    if change == PresetChange.EXISTS:
        raise AlreadyExists(
            f"the tenant already has a preset {preset.name!r}; UpdatePreset changes it",
            reason="PRESET_EXISTS",
            metadata={"preset": preset.name},
        )
    if change == PresetChange.TOO_MANY:
        raise FailedPrecondition(
            f"a tenant has at most {MAX_TENANT_PRESETS} presets; delete one first",
            reason="TOO_MANY_PRESETS",
            metadata={"max": str(MAX_TENANT_PRESETS)},
        )
    if change != PresetChange.DONE:
        raise preset_not_found(preset.name)
    return preset


async def update_preset(
    presets: PresetStore,
    *,
    tenant_id: uuid.UUID,
    name: str,
    fields: Mapping[str, object],
    paths: list[str],
) -> Preset:
    """The fields `paths` names take their `fields` values; the others keep theirs."""
    paths = masked_fields(
        paths, UPDATABLE_FIELDS, what="preset fields", unknown_reason="UNKNOWN_PRESET_FIELD"
    )
    current = {p.name: p for p in (await presets.tenant_presets(tenant_id)).presets}
    if name not in current:
        raise preset_not_found(name)
    values = current[name].model_dump() | {path: fields.get(path) for path in paths}
    preset = checked_preset(values)
    if await presets.replace_preset(tenant_id, preset) != PresetChange.DONE:
        raise preset_not_found(name)  # deleted meanwhile
    return preset


async def delete_preset(presets: PresetStore, *, tenant_id: uuid.UUID, name: str) -> None:
    change = await presets.delete_preset(tenant_id, name)
    if change == PresetChange.LAST:
        raise FailedPrecondition(
            f"{name!r} is the tenant's only preset; create another before deleting it",
            reason="LAST_PRESET",
            metadata={"preset": name},
        )
    if change != PresetChange.DONE:
        raise preset_not_found(name)
