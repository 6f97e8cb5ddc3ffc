-- Delivery over HTTP (R10): renditions by stable, signed, cacheable URLs.

-- The SHA-256 of a rendition's bytes: the delivery service's strong ETag. NULL for
-- renditions recorded before it was kept (their key still carries its first 16 digits).
ALTER TABLE renditions
    ADD COLUMN content_sha256 text CHECK (content_sha256 ~ '^[0-9a-f]{64}$');

-- Keys that sign delivery URLs. Only the id is stored: the secret is derived from it
-- and the key pepper, so it never rests in the database.
CREATE TABLE signing_keys (
    key_id     text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    label      text NOT NULL DEFAULT '' CHECK (length(label) <= 200),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at timestamptz
);
CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id);

-- A tenant's choices about itself; a tenant that allows unsigned URLs opts in here.
ALTER TABLE tenants ADD COLUMN unsigned_delivery boolean NOT NULL DEFAULT false;
