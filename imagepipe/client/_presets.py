"""Tenant presets, focal points and backfills: AsyncClient's calls for R11.

A tenant without presets of its own renders the service defaults; its first change
starts from a copy of them. A changed preset gets a new version: its renditions are
re-rendered by a backfill (BACKFILL_SCOPE_OUTDATED), not by the change itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeAlias

import grpc
from google.protobuf import field_mask_pb2

from imagepipe.client._calls import Calls, new_request_id
from imagepipe.client.errors import ImagepipeError
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, renderer_pb2

__all__ = ["BACKFILL_SCOPES", "PresetCalls", "parse_scope"]

_Scope: TypeAlias = catalog_pb2.BackfillScope.ValueType

BACKFILL_SCOPES: dict[str, _Scope] = {
    "all": catalog_pb2.BACKFILL_SCOPE_ALL,
    "missing": catalog_pb2.BACKFILL_SCOPE_MISSING,
    "outdated": catalog_pb2.BACKFILL_SCOPE_OUTDATED,
    "asset_ids": catalog_pb2.BACKFILL_SCOPE_ASSET_IDS,
}


def parse_scope(value: str | _Scope) -> _Scope:
    """`all`, `missing`, `outdated`, `asset_ids` (or the enum value itself)."""
    if isinstance(value, int):
        return value
    scope = BACKFILL_SCOPES.get(value.lower().removeprefix("backfill_scope_"))
    if scope is None:
        raise ImagepipeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"scope must be one of {', '.join(BACKFILL_SCOPES)}, not {value!r}",
            reason="INVALID_BACKFILL_SCOPE",
        )
    return scope


class PresetCalls:
    """AsyncClient's preset, focal point and backfill calls (a mixin)."""

    _calls: Calls

    def _presets_stub(self) -> catalog_pb2_grpc.CatalogServiceAsyncStub:
        return catalog_pb2_grpc.CatalogServiceStub(self._calls.channel("catalog"))

    async def list_tenant_presets(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> catalog_pb2.ListTenantPresetsResponse:
        """The tenant's presets (largest box first) and whether they are the defaults."""
        return await self._calls.tenant(
            self._presets_stub().ListTenantPresets,
            catalog_pb2.ListTenantPresetsRequest(),
            request_id,
            timeout,
        )

    async def create_preset(
        self,
        preset: renderer_pb2.Preset,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> renderer_pb2.Preset:
        """Add a preset (ALREADY_EXISTS for a name in use); returns it with its version."""
        response = await self._calls.tenant(
            self._presets_stub().CreatePreset,
            catalog_pb2.CreatePresetRequest(preset=preset),
            request_id,
            timeout,
        )
        return response.preset

    async def update_preset(
        self,
        preset: renderer_pb2.Preset,
        fields: Iterable[str],
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> renderer_pb2.Preset:
        """Change the `fields` (e.g. max_width, fit) of the preset named preset.name to
        the values `preset` carries; the others keep theirs."""
        request = catalog_pb2.UpdatePresetRequest(
            preset=preset, update_mask=field_mask_pb2.FieldMask(paths=sorted(set(fields)))
        )
        response = await self._calls.tenant(
            self._presets_stub().UpdatePreset, request, request_id, timeout
        )
        return response.preset

    async def set_preset(
        self,
        preset: renderer_pb2.Preset,
        fields: Iterable[str],
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> tuple[renderer_pb2.Preset, bool]:
        """Create the preset, or update `fields` of the existing one of that name;
        returns it and whether it was created."""
        rid = request_id or new_request_id()
        try:
            return await self.create_preset(preset, request_id=rid, timeout=timeout), True
        except ImagepipeError as error:
            if error.reason != "PRESET_EXISTS":
                raise
        updated = await self.update_preset(preset, fields, request_id=rid, timeout=timeout)
        return updated, False

    async def delete_preset(
        self, name: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> None:
        """Delete a preset; its renditions stop being served (Purge reclaims them)."""
        await self._calls.tenant(
            self._presets_stub().DeletePreset,
            catalog_pb2.DeletePresetRequest(name=name),
            request_id,
            timeout,
        )

    async def set_focal_point(
        self,
        asset_id: str,
        point: tuple[float, float] | None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> catalog_pb2.SetFocalPointResponse:
        """Set the asset's focal point (x, y from 0 to 1), or clear it with None; the
        response names the job re-rendering its `cover` presets (empty: none)."""
        request = catalog_pb2.SetFocalPointRequest(asset_id=asset_id)
        if point is not None:
            request.focal_point.CopyFrom(common_pb2.FocalPoint(x=point[0], y=point[1]))
        return await self._calls.tenant(
            self._presets_stub().SetFocalPoint, request, request_id, timeout
        )

    async def start_backfill(
        self,
        scope: str | _Scope = "all",
        *,
        preset: str = "",
        asset_ids: Sequence[str] = (),
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> catalog_pb2.Backfill:
        """Re-render the tenant's ready assets `scope` selects (by `preset`, or every
        preset; `asset_ids` for the asset_ids scope) at fair share with new uploads."""
        rid = request_id or new_request_id()
        request = catalog_pb2.StartBackfillRequest(
            scope=parse_scope(scope), preset=preset, asset_ids=list(asset_ids)
        )
        response = await self._calls.tenant(
            self._presets_stub().StartBackfill, request, rid, timeout or 120.0
        )
        return response.backfill

    async def get_backfill(
        self, backfill_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> catalog_pb2.Backfill:
        """A backfill's progress: total, done, failed, and FINISHED once none is left."""
        response = await self._calls.tenant(
            self._presets_stub().GetBackfill,
            catalog_pb2.GetBackfillRequest(backfill_id=backfill_id),
            request_id,
            timeout,
        )
        return response.backfill
