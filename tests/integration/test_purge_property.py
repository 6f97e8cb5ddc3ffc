"""Purge as a property: random upload / duplicate / delete / purge sequences, some of
them concurrent, never lose an object a live asset references, and a real purge
leaves no unreferenced object older than its cut-off."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from devstack import Stack
from imagepipe.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2
from tests.faults.support import make_images, query
from tests.helpers import Services, Tenant, upload

POOL = make_images(6, seed=99, size=(160, 120))


def test_purge_never_removes_what_a_live_asset_uses(
    services: Services, stack: Stack, make_tenant: Callable[[str], Tenant]
) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(services.catalog)
    client = stack.s3.client()

    class Purging(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.tenant = make_tenant("prop")
            self.live: dict[int, str] = {}  # image index -> asset id
            self.deleted: set[int] = set()

        def _upload(self, index: int) -> None:
            response = upload(services, self.tenant, POOL[index])
            self.live[index] = response.asset.asset_id
            self.deleted.discard(index)

        @rule(index=st.integers(0, len(POOL) - 1))
        def upload_or_duplicate(self, index: int) -> None:
            self._upload(index)

        @precondition(lambda self: bool(self.live))
        @rule(data=st.data())
        def delete(self, data: st.DataObject) -> None:
            index = data.draw(st.sampled_from(sorted(self.live)))
            catalog.DeleteAsset(
                catalog_pb2.DeleteAssetRequest(asset_id=self.live.pop(index)),
                metadata=self.tenant.metadata,
            )
            self.deleted.add(index)

        @rule(apply=st.booleans(), race=st.booleans())
        def purge(self, apply: bool, race: bool) -> None:
            started = dt.datetime.now(dt.UTC)
            racer: threading.Thread | None = None
            reuploaded: int | None = None
            if race and self.deleted:
                # Upload the bytes of a deleted asset while the purge runs.
                reuploaded = min(self.deleted)
                racer = threading.Thread(target=self._upload, args=(reuploaded,))
                racer.start()
            response = catalog.Purge(
                catalog_pb2.PurgeRequest(dry_run=not apply, older_than_days=0),
                metadata=self.tenant.metadata,
            )
            if racer is not None:
                racer.join()
            assert response.dry_run is not apply
            if apply and racer is None:
                self._no_old_orphans(started)

        def _objects(self) -> dict[str, dt.datetime]:
            found = {}
            for prefix in ("originals", "renditions"):
                for obj in client.list_objects(
                    stack.bucket, prefix=f"{prefix}/{self.tenant.tenant_id}/", recursive=True
                ):
                    assert obj.object_name and obj.last_modified
                    found[obj.object_name] = obj.last_modified
            return found

        def _no_old_orphans(self, cutoff: dt.datetime) -> None:
            rows = query(
                stack,
                "SELECT original_key AS key FROM assets WHERE tenant_id = $1::uuid "
                "UNION SELECT object_key FROM renditions WHERE tenant_id = $1::uuid",
                self.tenant.tenant_id,
            )
            referenced = {r["key"] for r in rows}
            live_prefixes = tuple(
                f"renditions/{self.tenant.tenant_id}/{a}/" for a in self.live.values()
            )
            for key, modified in self._objects().items():
                if key in referenced or key.startswith(live_prefixes) or modified >= cutoff:
                    continue
                raise AssertionError(f"orphan older than the cut-off left behind: {key}")

        @invariant()
        def live_assets_keep_their_objects(self) -> None:
            # Read the assets first: whatever was ready then must be in the listing after.
            assets = [
                catalog.GetAsset(
                    catalog_pb2.GetAssetRequest(asset_id=asset_id), metadata=self.tenant.metadata
                ).asset
                for asset_id in self.live.values()
            ]
            ready = [a.asset_id for a in assets if a.status == common_pb2.ASSET_STATUS_READY]
            rows = query(
                stack,
                "SELECT object_key FROM renditions WHERE tenant_id = $1::uuid "
                "AND asset_id = ANY($2::uuid[])",
                self.tenant.tenant_id,
                ready,
            )
            objects = self._objects()
            for asset in assets:
                assert f"originals/{self.tenant.tenant_id}/{asset.content_hash}" in objects
            assert len(rows) == 3 * len(ready)
            for row in rows:
                assert row["object_key"] in objects, f"{row['object_key']} of a live asset is gone"

    run_state_machine_as_test(
        Purging,
        settings=settings(
            max_examples=8,
            stateful_step_count=14,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
