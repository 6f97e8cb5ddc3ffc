-- Presets that tenants own (R11): their definitions, the focal point of an asset, the
-- presets each render job was made for, the preset version each rendition was made
-- from, and backfills (re-renders of a selection of a tenant's assets).

-- A tenant's own presets. A tenant with none sees the service defaults
-- (IMAGEPIPE_PRESETS); its first change copies them here (copy-on-write), and it is
-- never left with none (deleting the last one is refused).
CREATE TABLE tenant_presets (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,31}$'),
    -- services.shared.presets.Preset as JSON (its model_dump), name included.
    definition jsonb NOT NULL,
    -- Preset.version of the definition (content-addressed, 16 hex digits).
    version    text NOT NULL CHECK (version ~ '^[0-9a-f]{16}$'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, name)
);

-- The version of the preset a rendition was made from; '' when it was recorded before
-- presets were versioned (or by a renderer that does not say).
ALTER TABLE renditions ADD COLUMN preset_version text NOT NULL DEFAULT '';

-- Where `cover` presets with focal gravity centre their crop, as fractions of the
-- oriented width and height; both NULL when the tenant has not set one.
ALTER TABLE assets
    ADD COLUMN focal_x double precision,
    ADD COLUMN focal_y double precision,
    ADD CONSTRAINT assets_focal_point CHECK (
        (focal_x IS NULL AND focal_y IS NULL)
        OR (focal_x BETWEEN 0 AND 1 AND focal_y BETWEEN 0 AND 1)
    );

-- One re-render of a selection of a tenant's assets. Its progress is counted from its
-- jobs (jobs.backfill_id); `total` is the number of jobs it made.
CREATE TABLE backfills (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    scope      text NOT NULL CHECK (scope IN ('all', 'missing', 'outdated', 'asset_ids')),
    preset     text NOT NULL DEFAULT '',
    total      bigint NOT NULL CHECK (total >= 0),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX backfills_tenant ON backfills (tenant_id, created_at DESC);

-- What a job renders, fixed when it is made, so a redelivery renders what was asked:
-- the presets (definitions with their versions; NULL for jobs made before presets
-- travelled, which render the renderer's configured presets) and the asset's focal
-- point. A re-render (`rerender`: SetFocalPoint, a backfill) of an asset leaves its
-- status alone: it stays ready with its renditions until the new ones replace them,
-- and a failed re-render does not fail it.
ALTER TABLE jobs
    ADD COLUMN presets jsonb,
    ADD COLUMN focal_x double precision,
    ADD COLUMN focal_y double precision,
    ADD COLUMN rerender boolean NOT NULL DEFAULT false,
    ADD COLUMN backfill_id uuid REFERENCES backfills (id);
CREATE INDEX jobs_backfill ON jobs (backfill_id, state) WHERE backfill_id IS NOT NULL;
-- StartBackfill skips assets with an unfinished job: found by asset, unfinished only.
CREATE INDEX jobs_asset_unfinished ON jobs (asset_id)
    WHERE state IN ('pending', 'queued', 'running', 'retrying');
