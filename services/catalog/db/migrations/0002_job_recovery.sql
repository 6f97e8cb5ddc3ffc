-- Job recovery: transient attempts, a not-before time for jobs waiting in the outbox,
-- and a fresh retry budget after a poison job is replayed.

ALTER TABLE job_attempts ADD COLUMN transient boolean NOT NULL DEFAULT false;

-- A pending job is not published (or claimed) before this time.
ALTER TABLE jobs ADD COLUMN not_before timestamptz;

-- Failed attempts count against the retry budget only from this time on.
ALTER TABLE jobs ADD COLUMN budget_since timestamptz NOT NULL DEFAULT '-infinity';

DROP INDEX jobs_pending;
CREATE INDEX jobs_pending ON jobs (coalesce(not_before, created_at)) WHERE state = 'pending';
CREATE INDEX jobs_unfinished ON jobs (lease_expires_at)
    WHERE state IN ('queued', 'running', 'retrying');
