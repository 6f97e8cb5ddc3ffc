-- Image metadata (R12): what each original says about itself, and the filters on it.

-- The AssetMetadata fields other than the capture time, by their message names (the GPS
-- position only for tenants that keep it). The capture time has a column of its own so
-- that ListAssets can range over it through an index.
ALTER TABLE assets
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(metadata) = 'object'),
    ADD COLUMN capture_time timestamptz;

-- ListAssets' capture-time range within one tenant's live assets.
CREATE INDEX assets_tenant_capture ON assets (tenant_id, capture_time)
    WHERE deleted_at IS NULL AND capture_time IS NOT NULL;

-- ListAssets' label filter: `labels @> '{"key": "value", ...}'` (every pair must match).
-- jsonb_path_ops indexes exactly containment, in less space than the default opclass.
CREATE INDEX assets_labels ON assets USING gin (labels jsonb_path_ops)
    WHERE deleted_at IS NULL;

-- A tenant keeps the GPS position of its uploads only when it opts in.
ALTER TABLE tenants ADD COLUMN keep_gps boolean NOT NULL DEFAULT false;
