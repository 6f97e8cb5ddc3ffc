"""The stores' retry policy is written down once: it must name real methods."""

from __future__ import annotations

import inspect

from services.catalog import db
from services.catalog.db import pool


def test_every_method_said_to_be_idempotent_exists() -> None:
    public = {
        name
        for store in (
            db.CatalogDatabase,
            db.PgTenantStore,
            db.PgAssetStore,
            db.PgJobStore,
            db.PgPoisonStore,
            db.PgPurgeStore,
            db.PgUsageStore,
            db.PgPresetStore,
            db.PgBackfillStore,
        )
        for name, member in vars(store).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    assert not pool.IDEMPOTENT - public, "no such method"


def test_counting_an_upload_or_opening_an_attempt_is_never_repeated_blindly() -> None:
    for name in ("resolve_duplicate", "start_attempt", "claim_for_render", "create_tenant"):
        assert name not in pool.IDEMPOTENT
