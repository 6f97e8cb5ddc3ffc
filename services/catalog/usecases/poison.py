"""Poison jobs of a tenant: listing them, and replaying one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.catalog.model import Job, PoisonJob, PoisonJobWithAttempts
from services.catalog.ports import JobStore, PoisonStore
from services.catalog.usecases import paging
from services.catalog.usecases.jobs import attempts_by_job
from services.catalog.usecases.paging import Page, decode_token, encode_token, paginate
from services.shared.errors import NotFound

__all__ = ["Replayed", "list_poison_jobs", "retry_poison_job"]


@dataclass(frozen=True)
class Replayed:
    poison_job: PoisonJobWithAttempts  # marked replayed
    job: Job  # back in the outbox


async def _with_attempts(
    jobs: JobStore, tenant_id: uuid.UUID, found: Sequence[PoisonJob]
) -> list[PoisonJobWithAttempts]:
    attempts = await attempts_by_job(jobs, tenant_id, [p.job_id for p in found])
    return [PoisonJobWithAttempts(p, attempts[p.job_id]) for p in found]


async def list_poison_jobs(
    poison: PoisonStore,
    jobs: JobStore,
    *,
    tenant_id: uuid.UUID,
    include_replayed: bool,
    page_size: int,
    page_token: str,
) -> Page[PoisonJobWithAttempts]:
    """Newest first; replayed ones only when asked for."""
    query = f"poison:{tenant_id}:{include_replayed}"
    size = paging.page_size(page_size)
    after = decode_token(page_token, query)
    page = await paginate(
        lambda limit: poison.list_poison_jobs(tenant_id, include_replayed, after, limit),
        size=size,
        token_of=lambda found: encode_token(query, found.created_at, found.id),
    )
    return Page(await _with_attempts(jobs, tenant_id, page.items), page.next_page_token)


async def retry_poison_job(
    poison: PoisonStore, jobs: JobStore, *, tenant_id: uuid.UUID, poison_job_id: uuid.UUID
) -> Replayed:
    """Mark the poison job replayed and put its job back in the outbox with a fresh
    retry budget; the outbox relay publishes it within seconds."""
    replayed = await poison.retry_poison(tenant_id, poison_job_id)
    if replayed is None:
        raise NotFound(f"no poison job {poison_job_id}", reason="POISON_JOB_NOT_FOUND")
    found, job = replayed
    (with_attempts,) = await _with_attempts(jobs, tenant_id, [found])
    return Replayed(with_attempts, job)
