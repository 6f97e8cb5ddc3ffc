-- Bounded deliveries and bounded attempt history.

-- Claims by renderers working without the broker since the job's last settled
-- attempt: the catalog's delivery count, bounded like the work queue's
-- x-delivery-limit, so a crash loop ends as poison with or without the broker.
ALTER TABLE jobs ADD COLUMN deliveries integer NOT NULL DEFAULT 0;

-- Consecutive transient failures are one row: how many, and when the first ended.
ALTER TABLE job_attempts ADD COLUMN repeats integer NOT NULL DEFAULT 1 CHECK (repeats > 0);
ALTER TABLE job_attempts ADD COLUMN first_finished_at timestamptz;

-- The reconciler looks for queued or retrying jobs that made no progress for a while.
CREATE INDEX jobs_waiting ON jobs (updated_at) WHERE state IN ('queued', 'retrying');
