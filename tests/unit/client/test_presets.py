"""Presets, focal points and backfills through AsyncClient and the CLI, against the fake
server (tests/unit/client/fakes.py)."""

from __future__ import annotations

import pytest

from imagepipe.cli.commands.presets import preset_message
from imagepipe.client import AsyncClient, ImagepipeError
from imagepipe.client._presets import parse_scope
from imagepipe.v1 import catalog_pb2, common_pb2, renderer_pb2
from tests.unit.client.fakes import FakeServer
from tests.unit.client.test_cli import _cli


async def test_set_creates_then_updates_only_the_fields_given(
    client: AsyncClient, fake: FakeServer
) -> None:
    listed = await client.list_tenant_presets()
    assert listed.defaults and [p.name for p in listed.presets] == ["zoom", "card", "thumb"]
    hero = renderer_pb2.Preset(
        name="hero", max_width=1600, max_height=900, fit=common_pb2.FIT_COVER
    )
    created, was_new = await client.set_preset(hero, ["max_width", "max_height", "fit"])
    assert was_new and created.version
    wider = renderer_pb2.Preset(name="hero", max_width=2000)
    updated, was_new = await client.set_preset(wider, ["max_width"])
    assert not was_new
    assert (updated.max_width, updated.max_height, updated.fit) == (2000, 900, common_pb2.FIT_COVER)
    assert fake.catalog.presets.masks == [["max_width"]]
    await client.delete_preset("hero")
    with pytest.raises(ImagepipeError) as gone:
        await client.delete_preset("hero")
    assert gone.value.reason == "PRESET_NOT_FOUND"


async def test_focal_points_and_backfills(client: AsyncClient) -> None:
    focused = await client.set_focal_point("a-1", (0.25, 0.5))
    assert (focused.asset.focal_point.x, focused.asset.focal_point.y) == (0.25, 0.5)
    assert focused.job_id == "j-focus"
    cleared = await client.set_focal_point("a-1", None)
    assert not cleared.asset.HasField("focal_point") and not cleared.job_id
    started = await client.start_backfill("outdated", preset="card")
    assert started.scope == catalog_pb2.BACKFILL_SCOPE_OUTDATED and started.preset == "card"
    progress = await client.get_backfill(started.backfill_id)
    assert progress.done == 1 and progress.state == catalog_pb2.BACKFILL_STATE_RUNNING


def test_scopes_are_named_as_on_the_command_line() -> None:
    assert parse_scope("OUTDATED") == catalog_pb2.BACKFILL_SCOPE_OUTDATED
    assert parse_scope("backfill_scope_missing") == catalog_pb2.BACKFILL_SCOPE_MISSING
    with pytest.raises(ImagepipeError) as unknown:
        parse_scope("some")
    assert unknown.value.reason == "INVALID_BACKFILL_SCOPE"


def test_presets_set_sends_only_the_options_given() -> None:
    preset, fields = preset_message(
        "card", {"max_width": 500, "formats": "jpeg,webp", "chroma_subsampling": None}
    )
    assert fields == ["max_width", "formats"]
    assert list(preset.formats) == [common_pb2.IMAGE_FORMAT_JPEG, common_pb2.IMAGE_FORMAT_WEBP]
    assert preset.max_height == 0  # not named: the update mask leaves it as it is


async def test_cli_presets_focus_and_rerender(fake: FakeServer) -> None:
    env = fake.env()
    status, (created,), _ = await _cli(
        env, "presets", "set", "hero", "--width", "800", "--height", "600", "--fit", "cover",
        "--gravity", "attention", "--formats", "jpeg,webp", "--chroma", "4:4:4", "--json",
    )  # fmt: skip
    assert status == 0 and created["created"] and created["fit"] == "cover"
    assert created["gravity"] == "attention" and created["formats"] == ["jpeg", "webp"]
    status, (updated,), _ = await _cli(env, "presets", "set", "hero", "--quality", "70", "--json")
    assert status == 0 and not updated["created"] and updated["quality"] == 70
    status, listed, _ = await _cli(env, "presets", "list", "--json")
    assert status == 0 and "hero" in {row["name"] for row in listed}
    status, _, text = await _cli(env, "presets", "delete", "nope")
    assert status == 1 and "PRESET_NOT_FOUND" in text

    status, (focused,), _ = await _cli(env, "focus", "a-1", "0.3", "0.6", "--json")
    assert status == 0 and focused["focal_point"] == {"x": 0.3, "y": 0.6}
    status, (cleared,), _ = await _cli(env, "focus", "a-1", "--clear", "--json")
    assert status == 0 and cleared["focal_point"] is None and cleared["job_id"] is None
    status, _, text = await _cli(env, "focus", "a-1", "0.3")
    assert status != 0 and "--clear" in text

    status, (finished,), _ = await _cli(env, "rerender", "--scope", "outdated", "--json")
    assert status == 0 and finished["state"] == "finished" and finished["done"] == 3
    assert finished["scope"] == "outdated" and finished["finished"]
    status, (progress,), _ = await _cli(env, "backfill", "get", "b-1", "--json")
    assert status == 0 and progress["backfill_id"] == "b-1"
