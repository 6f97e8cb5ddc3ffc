"""ingest: accepts uploads, stores originals once per tenant, queues render jobs."""
