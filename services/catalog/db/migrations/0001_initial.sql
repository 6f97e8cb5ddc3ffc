-- The catalog: tenants and their keys, assets, renditions, render jobs (the outbox),
-- attempts and poison jobs. Every tenant-owned table carries tenant_id so that every
-- query can filter on it.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Keys are `ip_<key_id>_<secret>`; only an HMAC-SHA256 of the secret is stored.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    secret_hash bytea NOT NULL,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE assets (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants (id),
    status                text NOT NULL
        CHECK (status IN ('pending', 'processing', 'ready', 'failed', 'deleted')),
    content_hash          text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    -- 64-bit perceptual hash stored as signed bigint (two's complement of the uint64).
    perceptual_hash       bigint NOT NULL,
    filename              text NOT NULL DEFAULT '',
    declared_content_type text NOT NULL DEFAULT '',
    content_type          text NOT NULL,
    format                text NOT NULL,
    width                 integer NOT NULL CHECK (width > 0),
    height                integer NOT NULL CHECK (height > 0),
    size_bytes            bigint NOT NULL CHECK (size_bytes > 0),
    frame_count           integer NOT NULL DEFAULT 1,
    labels                jsonb NOT NULL DEFAULT '{}'::jsonb,
    original_key          text NOT NULL,
    -- Uploads that resolved to this asset, duplicates included (logical bytes).
    upload_count          bigint NOT NULL DEFAULT 1,
    thumbhash             text,
    dominant_color        text,
    created_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at            timestamptz,
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
-- One live asset per tenant and content; deleting frees the content for a new upload.
CREATE UNIQUE INDEX assets_tenant_content ON assets (tenant_id, content_hash)
    WHERE deleted_at IS NULL;
CREATE INDEX assets_tenant_created ON assets (tenant_id, created_at DESC, id DESC);
CREATE INDEX assets_tenant_status_created ON assets (tenant_id, status, created_at DESC, id DESC);

-- The job row is the outbox: it is written in the asset's transaction and published
-- afterwards; `pending` jobs are ones the broker has not confirmed.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    asset_id         uuid NOT NULL REFERENCES assets (id),
    state            text NOT NULL
        CHECK (state IN ('pending', 'queued', 'running', 'retrying', 'done', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text NOT NULL DEFAULT '',
    request_id       text NOT NULL DEFAULT '',
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at     timestamptz,
    finished_at      timestamptz
);
CREATE INDEX jobs_pending ON jobs (created_at) WHERE state = 'pending';
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX jobs_asset ON jobs (asset_id);

CREATE TABLE job_attempts (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt > 0),
    worker      text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('succeeded', 'failed')),
    error       text NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE renditions (
    asset_id      uuid NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    preset        text NOT NULL,
    format        text NOT NULL,
    object_key    text NOT NULL,
    width         integer NOT NULL CHECK (width > 0),
    height        integer NOT NULL CHECK (height > 0),
    size_bytes    bigint NOT NULL CHECK (size_bytes > 0),
    quality       integer NOT NULL,
    psnr_db       double precision,
    psnr_infinite boolean,
    ssim          double precision,
    hash_distance integer,
    job_id        uuid REFERENCES jobs (id),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (asset_id, preset, format)
);
CREATE INDEX renditions_tenant ON renditions (tenant_id);

CREATE TABLE poison_jobs (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    job_id      uuid NOT NULL REFERENCES jobs (id),
    asset_id    uuid NOT NULL REFERENCES assets (id),
    reason      text NOT NULL CHECK (reason IN ('retries_exhausted', 'delivery_limit')),
    error       text NOT NULL DEFAULT '',
    -- The RenderRequest as dead-lettered (protobuf), for replay.
    request     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    replayed_at timestamptz
);
-- At most one open poison job per job: recording it again is a no-op.
CREATE UNIQUE INDEX poison_jobs_open ON poison_jobs (job_id) WHERE replayed_at IS NULL;
CREATE INDEX poison_jobs_tenant_created ON poison_jobs (tenant_id, created_at DESC, id DESC);
