"""Settings come from IMAGEPIPE_* variables; the README table is generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.shared.settings import Settings, render_env_table

README = Path(__file__).resolve().parents[3] / "README.md"


def test_defaults_match_the_documented_ports_and_limits() -> None:
    settings = Settings()
    assert [
        settings.ingest_port,
        settings.catalog_port,
        settings.renderer_port,
        settings.quality_port,
    ] == [
        50051,
        50052,
        50053,
        50054,
    ]
    assert settings.ingest_metrics_port == 9101 and settings.quality_metrics_port == 9104
    assert settings.max_upload_bytes == 50 * 1024 * 1024
    assert settings.max_pixels == 50_000_000
    assert {p.name: (p.max_width, p.max_height, p.quality) for p in settings.presets} == {
        "thumb": (100, 100, 85),
        "card": (400, 400, 85),
        "zoom": (1200, 1200, 85),
    }


def test_presets_are_read_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "IMAGEPIPE_PRESETS",
        '[{"name": "card", "max_width": 400, "max_height": 300, '
        '"formats": ["jpeg", "webp"], "min_ssim": 0.97}]',
    )
    (card,) = Settings().presets
    assert (card.max_height, card.formats, card.min_ssim) == (300, ["jpeg", "webp"], 0.97)


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_PRESETS", '[{"name": "x", "max_width": 0, "max_height": 1}]')
    with pytest.raises(ValidationError):
        Settings()


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_ADMIN_KEY", "super-secret-admin")
    assert "super-secret-admin" not in repr(Settings())


def test_readme_configuration_table_is_the_generated_one() -> None:
    assert render_env_table() in README.read_text(), (
        "README's configuration table is out of date: "
        "paste the output of `python -m services.shared.settings`"
    )
