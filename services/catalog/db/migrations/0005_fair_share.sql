-- Fair share between tenants: counting a tenant's render jobs on the broker (queued,
-- running or retrying) at every upload and relay pass must not scan its finished ones.
CREATE INDEX jobs_in_flight ON jobs (tenant_id)
    WHERE state IN ('queued', 'running', 'retrying');
