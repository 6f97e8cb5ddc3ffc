"""Poison jobs of a tenant: listing them, and replaying one."""

from __future__ import annotations

import uuid
from collections import defaultdict

from imagepipe.v1 import catalog_pb2, common_pb2
from services.catalog import convert
from services.catalog.assets import parse_uuid
from services.catalog.repository import CatalogRepository, Record
from services.catalog.usecases.paging import decode_token, encode_token, page_size
from services.shared.errors import NotFound

__all__ = ["list_poison_jobs", "retry_poison_job"]


async def _messages(
    repo: CatalogRepository, tenant_id: uuid.UUID, rows: list[Record]
) -> list[catalog_pb2.PoisonJob]:
    attempts: dict[uuid.UUID, list[Record]] = defaultdict(list)
    for attempt in await repo.list_attempts(tenant_id, [r["job_id"] for r in rows]):
        attempts[attempt["job_id"]].append(attempt)
    return [convert.poison_job_message(r, attempts[r["job_id"]]) for r in rows]


async def list_poison_jobs(
    repo: CatalogRepository,
    tenant_id: uuid.UUID,
    include_replayed: bool,
    requested_size: int,
    token: str,
) -> tuple[list[catalog_pb2.PoisonJob], str]:
    query = f"poison:{tenant_id}:{include_replayed}"
    size = page_size(requested_size)
    rows = await repo.list_poison_jobs(
        tenant_id, include_replayed, decode_token(token, query), size + 1
    )
    page = rows[:size]
    next_token = (
        encode_token(query, page[-1]["created_at"], page[-1]["id"]) if len(rows) > size else ""
    )
    return await _messages(repo, tenant_id, page), next_token


async def retry_poison_job(
    repo: CatalogRepository, tenant_id: uuid.UUID, poison_job_id: str
) -> tuple[catalog_pb2.PoisonJob, common_pb2.Job]:
    """Mark the poison job replayed and put its job back in the outbox with a fresh
    retry budget; the outbox relay publishes it within seconds."""
    replayed = await repo.retry_poison(tenant_id, parse_uuid(poison_job_id, "poison_job_id"))
    if replayed is None:
        raise NotFound(f"no poison job {poison_job_id}", reason="POISON_JOB_NOT_FOUND")
    row, job = replayed
    (message,) = await _messages(repo, tenant_id, [row])
    return message, convert.job_message(job)
