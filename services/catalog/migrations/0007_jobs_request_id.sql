-- RegisterAsset is idempotent on its request id: a repeat looks up the job it created.
CREATE INDEX jobs_tenant_request_id ON jobs (tenant_id, request_id)
    WHERE request_id <> '';
