"""Purge: reclaim a tenant's unreferenced objects, never one a live asset uses.

Purgeable, once older than the cut-off:
- the renditions of a deleted asset (their keys hold the asset id, so nothing else
  uses them) and its original, when no other asset row uses that original;
- the renditions of a live asset whose preset the tenant deleted (unreferenced:
  no longer listed or served), reported as DELETED_RENDITION, the closest kind the
  contract has (a rendition whose reason to exist was deleted); their row goes first,
  and only while the preset is still gone and the row still names that object, so a
  preset made again meanwhile keeps its rendition;
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

The store is asked only about the keys listed, a batch at a time, so a purge holds
no more of the tenant's rows than one batch's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from services.catalog.model import (
    DeletedAsset,
    PurgeItem,
    PurgeItemKind,
    PurgeReport,
    StaleRendition,
)
from services.catalog.ports import PurgeStore
from services.shared.errors import InvalidArgument
from services.shared.logs import get_logger
from services.shared.settings import Settings
from services.shared.storage import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    asset_of_rendition_key,
    tenant_prefixes,
)

__all__ = ["MAX_PURGE_DAYS", "STALE_RENDITION_GRACE", "run_purge"]

log = get_logger(__name__)

# A century: anything older is everything; a larger cut-off would overflow the date.
MAX_PURGE_DAYS = 36_500
# How old an unreferenced rendition of a live asset must be before it is an orphan:
# a render attempt writes its objects, then records them, within its lease
# (LEASE_SECONDS, 2 minutes, in services/renderer/jobs.py); an hour is far past that.
# The default of IMAGEPIPE_PURGE_RENDITION_GRACE_SECONDS.
STALE_RENDITION_GRACE = dt.timedelta(
    seconds=Settings.model_fields["purge_rendition_grace_seconds"].default
)
# Listed keys the store is asked about at once.
BATCH = 1000


class _Purge:
    """One run: what was listed, what it found and (unless a dry run) removed."""

    def __init__(
        self, purge: PurgeStore, store: ObjectStore, tenant_id: uuid.UUID, *, dry_run: bool
    ) -> None:
        self.purge = purge
        self.store = store
        self.tenant_id = tenant_id
        self.dry_run = dry_run
        self.listed: dict[str, ObjectInfo] = {}
        self.items: list[PurgeItem] = []
        self.handled: set[str] = set()  # the keys of deleted assets, whatever became of them
        self.assets_removed = 0

    async def take(self, item: PurgeItem) -> None:
        self.items.append(item)
        if not self.dry_run:
            await self.store.delete(item.object_key)

    async def deleted_asset(self, asset: DeletedAsset) -> None:
        async with self.purge.locked_content(self.tenant_id, asset.original_key) as content:
            if not await content.still_deleted(asset.id):
                return  # purged by a concurrent run
            chosen = [(k, s, PurgeItemKind.DELETED_RENDITION) for k, s in asset.renditions]
            if await content.users(excluding=asset.id) == 0:
                chosen.append(
                    (asset.original_key, asset.size_bytes, PurgeItemKind.DELETED_ORIGINAL)
                )
            for key, size, kind in chosen:
                self.handled.add(key)
                if key not in self.listed:
                    continue  # already gone from the store; the row goes below
                await self.take(PurgeItem(kind, key, size, asset.id, self.listed[key].modified))
            if not self.dry_run:
                await content.remove_asset_rows(asset.id)
            self.assets_removed += 1

    async def stale_rendition(self, stale: StaleRendition, cutoff: dt.datetime) -> None:
        self.handled.add(stale.object_key)
        listed = self.listed.get(stale.object_key)
        if listed is not None and listed.modified >= cutoff:
            return
        item = (
            None
            if listed is None  # already gone from the store; the row goes below
            else PurgeItem(
                PurgeItemKind.DELETED_RENDITION,
                stale.object_key,
                stale.size_bytes,
                stale.asset_id,
                listed.modified,
            )
        )
        if self.dry_run:
            if item is not None:
                self.items.append(item)
            return
        if await self.purge.remove_stale_rendition(self.tenant_id, stale) and item is not None:
            await self.take(item)

    async def orphans(
        self, batch: Sequence[ObjectInfo], renditions_prefix: str, live_cutoff: dt.datetime
    ) -> None:
        referenced = await self.purge.referenced_keys(self.tenant_id, [o.key for o in batch])
        owners = {o.key: asset_of_rendition_key(o.key) for o in batch}
        live = await self.purge.live_assets(
            self.tenant_id, {uuid.UUID(owner) for owner in owners.values() if owner}
        )
        for info in batch:
            if info.key in referenced:
                continue
            orphan = PurgeItem(
                PurgeItemKind.ORPHAN_OBJECT, info.key, info.size, None, info.modified
            )
            if info.key.startswith(renditions_prefix):
                owner = owners[info.key]
                if (
                    owner is not None
                    and uuid.UUID(owner) in live
                    and (info.modified >= live_cutoff or not await _unchanged(self.store, info))
                ):
                    continue
                await self.take(orphan)
                continue
            # An orphan original: check again under its lock, where no upload can register it.
            async with self.purge.locked_content(self.tenant_id, info.key) as content:
                if await content.users() == 0:
                    await self.take(orphan)


async def run_purge(
    purge: PurgeStore,
    store: ObjectStore,
    *,
    tenant_id: uuid.UUID,
    dry_run: bool,
    older_than_days: int,
    rendition_grace: dt.timedelta = STALE_RENDITION_GRACE,
) -> PurgeReport:
    """What is purgeable now (see above); removed too unless `dry_run`."""
    if older_than_days > MAX_PURGE_DAYS:
        raise InvalidArgument(
            f"older_than_days is at most {MAX_PURGE_DAYS} (100 years)",
            reason="AGE_TOO_LARGE",
            metadata={"max_supported": MAX_PURGE_DAYS},
        )
    now = dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=older_than_days)
    live_cutoff = min(cutoff, now - rendition_grace)
    run = _Purge(purge, store, tenant_id, dry_run=dry_run)
    originals, renditions = tenant_prefixes(str(tenant_id))
    for prefix in (originals, renditions):
        run.listed |= {o.key: o for o in await store.list(prefix)}

    for asset in await purge.deleted_assets(tenant_id, before=cutoff):
        await run.deleted_asset(asset)
    for stale in await purge.stale_renditions(tenant_id):
        await run.stale_rendition(stale, cutoff)

    candidates = [
        info
        for key, info in sorted(run.listed.items())
        if key not in run.handled and info.modified < cutoff
    ]
    for start in range(0, len(candidates), BATCH):
        await run.orphans(candidates[start : start + BATCH], renditions, live_cutoff)

    report = PurgeReport(
        dry_run=dry_run,
        cutoff=cutoff,
        items=tuple(run.items),
        asset_rows_removed=0 if dry_run else run.assets_removed,
    )
    log.info(
        "purge %s",
        "planned" if dry_run else "done",
        extra={"objects": len(report.items), "bytes": report.bytes_freed},
    )
    return report


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
