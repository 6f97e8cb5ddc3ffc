"""Purge: reclaim a tenant's unreferenced objects, never one a live asset uses.

Purgeable, once older than the cut-off:
- the renditions of a deleted asset (their keys hold the asset id, so nothing else
  uses them) and its original, when no other asset row uses that original;
- objects under the tenant's prefixes that no row references (orphans, e.g. from an
  upload interrupted between storing its original and registering it, or the output
  of a stale or superseded render attempt). A live (or failed) asset's unreferenced
  rendition may be between being written and being recorded, so it must also be older
  than the rendition grace (IMAGEPIPE_PURGE_RENDITION_GRACE_SECONDS, an hour), far
  past a render attempt's lease; it is stat'ed again just
  before it goes, and kept if an attempt wrote it again since it was listed.

Each deleted asset is purged under the lock RegisterAsset takes for the same original
key, and the key's users are checked again under it; ingest checks its original still
exists after registering. So an upload of the same bytes racing with the purge either
registers first (and the original is kept) or finds the original gone after
registering and stores it again. Objects and rows go together: the objects first,
then the rows, in the lock's transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from imagepipe.v1 import catalog_pb2
from services.catalog.repository import CatalogRepository
from services.shared.errors import InvalidArgument
from services.shared.logs import get_logger
from services.shared.settings import Settings
from services.shared.storage import ObjectInfo, ObjectNotFound, ObjectStore

__all__ = ["STALE_RENDITION_GRACE", "run_purge"]

log = get_logger(__name__)

KIND = catalog_pb2.PurgeItemKind
# A century: anything older is everything; a larger cut-off would overflow the date.
MAX_PURGE_DAYS = 36_500
# How old an unreferenced rendition of a live asset must be before it is an orphan:
# a render attempt writes its objects, then records them, within its lease
# (LEASE_SECONDS, 2 minutes, in services/renderer/jobs.py); an hour is far past that.
# The default of IMAGEPIPE_PURGE_RENDITION_GRACE_SECONDS.
STALE_RENDITION_GRACE = dt.timedelta(
    seconds=Settings.model_fields["purge_rendition_grace_seconds"].default
)


@dataclass
class _Plan:
    items: list[catalog_pb2.PurgeItem] = field(default_factory=list)
    assets_removed: int = 0

    def add(
        self,
        kind: int,
        key: str,
        size: int,
        asset_id: str = "",
        modified: dt.datetime | None = None,
    ) -> None:
        item = catalog_pb2.PurgeItem(
            kind=kind,  # type: ignore[arg-type]
            object_key=key,
            size_bytes=size,
            asset_id=asset_id,
        )
        if modified is not None:
            item.modify_time.FromDatetime(modified)
        self.items.append(item)


def _asset_of(rendition_key: str) -> uuid.UUID | None:
    """`renditions/<tenant>/<asset>/<preset>.<ext>` -> the asset id."""
    parts = rendition_key.split("/")
    try:
        return uuid.UUID(parts[2]) if len(parts) == 4 else None
    except ValueError:
        return None


async def run_purge(
    repo: CatalogRepository,
    store: ObjectStore,
    tenant_id: uuid.UUID,
    *,
    dry_run: bool,
    older_than_days: int,
    rendition_grace: dt.timedelta = STALE_RENDITION_GRACE,
) -> catalog_pb2.PurgeResponse:
    if older_than_days > MAX_PURGE_DAYS:
        raise InvalidArgument(
            f"older_than_days is at most {MAX_PURGE_DAYS} (100 years)",
            reason="AGE_TOO_LARGE",
            metadata={"max_supported": MAX_PURGE_DAYS},
        )
    now = dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=older_than_days)
    live_cutoff = min(cutoff, now - rendition_grace)
    listed: dict[str, ObjectInfo] = {}
    for prefix in (f"originals/{tenant_id}/", f"renditions/{tenant_id}/"):
        listed |= {o.key: o for o in await store.list(prefix)}
    plan = _Plan()
    handled: set[str] = set()

    for asset in await repo.deleted_assets(tenant_id, before=cutoff):
        asset_id: uuid.UUID = asset["id"]
        keys = [(str(key), int(size)) for key, size in asset["renditions"]]
        async with repo.locked_content(tenant_id, asset["original_key"]) as content:
            if not await content.still_deleted(asset_id):
                continue  # purged by a concurrent run
            original_free = await content.users(excluding=asset_id) == 0
            chosen = [(k, s, KIND.PURGE_ITEM_KIND_DELETED_RENDITION) for k, s in keys]
            if original_free:
                chosen.append(
                    (
                        asset["original_key"],
                        asset["size_bytes"],
                        KIND.PURGE_ITEM_KIND_DELETED_ORIGINAL,
                    )
                )
            for key, size, kind in chosen:
                handled.add(key)
                if key not in listed:
                    continue  # already gone from the store; the row goes below
                plan.add(kind, key, size, str(asset_id), listed[key].modified)
                if not dry_run:
                    await store.delete(key)
            if not dry_run:
                await content.remove_asset_rows(asset_id)
            plan.assets_removed += 1

    referenced, live = await repo.referenced_keys(tenant_id)
    for key, info in sorted(listed.items()):
        if key in referenced or key in handled or info.modified >= cutoff:
            continue
        if key.startswith("renditions/"):
            owner = _asset_of(key)
            if (
                owner is not None
                and owner in live
                and (info.modified >= live_cutoff or not await _unchanged(store, info))
            ):
                continue
            plan.add(KIND.PURGE_ITEM_KIND_ORPHAN_OBJECT, key, info.size, "", info.modified)
            if not dry_run:
                await store.delete(key)
            continue
        # An orphan original: check again under its lock, where no upload can register it.
        async with repo.locked_content(tenant_id, key) as content:
            if await content.users() == 0:
                plan.add(KIND.PURGE_ITEM_KIND_ORPHAN_OBJECT, key, info.size, "", info.modified)
                if not dry_run:
                    await store.delete(key)

    response = catalog_pb2.PurgeResponse(
        dry_run=dry_run,
        items=plan.items,
        object_count=len(plan.items),
        bytes_freed=sum(i.size_bytes for i in plan.items),
        asset_rows_removed=0 if dry_run else plan.assets_removed,
    )
    response.cutoff_time.CopyFrom(_timestamp(cutoff))
    log.info(
        "purge %s",
        "planned" if dry_run else "done",
        extra={"objects": response.object_count, "bytes": response.bytes_freed},
    )
    return response


async def _unchanged(store: ObjectStore, listed: ObjectInfo) -> bool:
    """The object is still there as listed: no attempt wrote it again since."""
    try:
        current = await store.stat(listed.key)
    except ObjectNotFound:
        return False
    # A listing has milliseconds, a HEAD whole seconds (an HTTP date): compare seconds.
    # A rewrite since the listing is later than the grace (or cut-off) it was listed
    # under, so it still shows.
    return current.modified.replace(microsecond=0) == listed.modified.replace(microsecond=0)


def _timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
