-- Per-tenant usage counters: GetTenantMetrics reads `SELECT * FROM tenant_usage($1)`
-- (a few dozen rows) instead of scanning the tenant's assets, renditions and jobs.
--
-- Row triggers write signed deltas in the transaction that changes the rows, so the
-- counters commit, roll back and survive a crash with them, and no code path has to
-- remember them. Deltas are only ever inserted: there is no per-tenant row that every
-- writer would update and queue on. The only rows the triggers lock are ones their
-- transaction locks anyway, in the same order (jobs row, then asset row, then content
-- lock): a rendition's asset row (CompleteJob and Purge lock the job row first, and
-- the asset row later in any case) and an original's counter row (written only under
-- that original's content lock). tenant_usage_compact() folds the deltas into
-- tenant_usage_base; tenant_usage() sums base and remaining deltas in one statement,
-- one snapshot, so it is exact whether or not a compaction ran. tenant_usage_recount()
-- is the full scan the counters replace, kept for checks (tests, the chaos checker).
-- docs/catalog.md describes each counter.

-- Nothing may commit unseen between the backfill at the end and the triggers taking
-- over: writers wait for this migration.
LOCK TABLE jobs, poison_jobs, assets, renditions IN SHARE ROW EXCLUSIVE MODE;

-- The asset's renditions, kept by the renditions trigger. That trigger's UPDATE of the
-- asset row serialises with a soft delete of the asset (a render completing as the
-- asset is deleted), so the renditions of live assets are counted exactly.
ALTER TABLE assets ADD COLUMN rendition_count integer NOT NULL DEFAULT 0;

-- Totals per tenant, metric and key (a status, a job state or a format; '' for none).
CREATE TABLE tenant_usage_base (
    tenant_id uuid NOT NULL,
    metric    text NOT NULL,
    key       text NOT NULL,
    value     bigint NOT NULL,
    PRIMARY KEY (tenant_id, metric, key)
);

-- Changes not yet folded into tenant_usage_base: inserted by the triggers, deleted
-- by tenant_usage_compact(), never updated.
CREATE TABLE tenant_usage_deltas (
    tenant_id uuid NOT NULL,
    metric    text NOT NULL,
    key       text NOT NULL,
    value     bigint NOT NULL
);
CREATE INDEX tenant_usage_deltas_tenant ON tenant_usage_deltas (tenant_id);

-- Asset rows (live or deleted) per original object: original_bytes counts a key once,
-- from its first row to its last. Rows of one key are inserted and deleted under the
-- key's content lock (RegisterAsset, Purge), so its counter row is never contended.
-- The size is the one counted when the key was first used: originals are content
-- addressed, so every row of a key has the same size.
CREATE TABLE tenant_usage_originals (
    tenant_id    uuid NOT NULL,
    original_key text NOT NULL,
    users        bigint NOT NULL CHECK (users > 0),
    size_bytes   bigint NOT NULL,
    PRIMARY KEY (tenant_id, original_key)
);

-- A new asset row of an original key: its size when the key had no row before.
CREATE FUNCTION tenant_usage_original_used(tenant uuid, original text, size bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    now_used bigint;
BEGIN
    INSERT INTO tenant_usage_originals AS o (tenant_id, original_key, users, size_bytes)
    VALUES (tenant, original, 1, size)
    ON CONFLICT (tenant_id, original_key) DO UPDATE SET users = o.users + 1
    RETURNING o.users INTO now_used;
    RETURN CASE WHEN now_used = 1 THEN size ELSE 0 END;
END;
$$;

-- An asset row of an original key gone: minus the key's size when it was the last.
-- Exact without the content lock too: a row another transaction used meanwhile is
-- not deleted (users = 1 is checked again on the newest version), and is decremented
-- on the next turn.
CREATE FUNCTION tenant_usage_original_released(tenant uuid, original text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    size bigint;
BEGIN
    LOOP
        UPDATE tenant_usage_originals SET users = users - 1
        WHERE tenant_id = tenant AND original_key = original AND users > 1;
        IF FOUND THEN
            RETURN 0;
        END IF;
        DELETE FROM tenant_usage_originals
        WHERE tenant_id = tenant AND original_key = original AND users = 1
        RETURNING size_bytes INTO size;
        IF FOUND THEN
            RETURN -size;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM tenant_usage_originals
                       WHERE tenant_id = tenant AND original_key = original) THEN
            RETURN 0;  -- never counted (rows loaded with triggers off; see rebuild)
        END IF;
    END LOOP;
END;
$$;

-- One asset row changing from `o` to `n` (NULL: inserted, deleted) within one tenant.
-- Its renditions are counted by the renditions trigger while it lives; here only when
-- it starts or stops living.
CREATE FUNCTION tenant_usage_asset_changed(o assets, n assets) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    was_live boolean := o.id IS NOT NULL AND o.deleted_at IS NULL;
    is_live boolean := n.id IS NOT NULL AND n.deleted_at IS NULL;
    status_changed boolean := o.status IS DISTINCT FROM n.status;
    key_changed boolean := o.original_key IS DISTINCT FROM n.original_key;
    original bigint := 0;
BEGIN
    IF o.id IS NOT NULL AND key_changed THEN
        original := tenant_usage_original_released(o.tenant_id, o.original_key);
    END IF;
    IF n.id IS NOT NULL AND key_changed THEN
        original := original + tenant_usage_original_used(n.tenant_id, n.original_key, n.size_bytes);
    END IF;
    INSERT INTO tenant_usage_deltas (tenant_id, metric, key, value)
    SELECT coalesce(n.tenant_id, o.tenant_id), d.metric, d.key, d.value
    FROM (VALUES
        ('assets_by_status', o.status, CASE WHEN status_changed THEN -1 ELSE 0 END),
        ('assets_by_status', n.status, CASE WHEN status_changed THEN 1 ELSE 0 END),
        ('asset_count', '', is_live::integer - was_live::integer),
        ('rendition_count', '', CASE WHEN is_live THEN n.rendition_count ELSE 0 END
                                - CASE WHEN was_live THEN o.rendition_count ELSE 0 END),
        ('logical_bytes', '', CASE WHEN is_live THEN n.size_bytes * n.upload_count ELSE 0 END
                              - CASE WHEN was_live THEN o.size_bytes * o.upload_count ELSE 0 END),
        ('physical_bytes', '', CASE WHEN is_live THEN n.size_bytes ELSE 0 END
                               - CASE WHEN was_live THEN o.size_bytes ELSE 0 END),
        ('deduplicated_uploads', '', CASE WHEN is_live THEN n.upload_count - 1 ELSE 0 END
                                     - CASE WHEN was_live THEN o.upload_count - 1 ELSE 0 END),
        ('original_bytes', '', original)
    ) d (metric, key, value)
    WHERE d.value <> 0 AND d.key IS NOT NULL;
END;
$$;

CREATE FUNCTION tenant_usage_assets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.tenant_id <> NEW.tenant_id THEN
        -- Never done by the catalog: the row leaves one tenant and joins another.
        PERFORM tenant_usage_asset_changed(OLD, NULL);
        PERFORM tenant_usage_asset_changed(NULL, NEW);
    ELSE
        PERFORM tenant_usage_asset_changed(OLD, NEW);
    END IF;
    RETURN NULL;
END;
$$;

-- The asset's rendition_count is updated here, and the live delta written here: the
-- UPDATE waits for the asset row's lock and RETURNING shows its newest version, so a
-- soft delete either committed before (the rendition is not counted live) or comes
-- after and subtracts rendition_count, this rendition included.
CREATE FUNCTION tenant_usage_renditions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    live boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.asset_id, OLD.tenant_id, OLD.format)
                            = (NEW.asset_id, NEW.tenant_id, NEW.format) THEN
        -- A rendition written again (CompleteJob's upsert): only its size may differ.
        INSERT INTO tenant_usage_deltas (tenant_id, metric, key, value)
        VALUES (NEW.tenant_id, 'rendition_bytes', NEW.format, NEW.size_bytes - OLD.size_bytes);
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        UPDATE assets SET rendition_count = rendition_count - 1
        WHERE id = OLD.asset_id AND tenant_id = OLD.tenant_id
        RETURNING deleted_at IS NULL INTO live;
        INSERT INTO tenant_usage_deltas (tenant_id, metric, key, value)
        SELECT OLD.tenant_id, d.metric, d.key, d.value
        FROM (VALUES ('renditions_by_format', OLD.format, -1),
                     ('rendition_bytes', OLD.format, -OLD.size_bytes),
                     ('rendition_count', '', CASE WHEN live THEN -1 ELSE 0 END))
             d (metric, key, value)
        WHERE d.value <> 0;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE assets SET rendition_count = rendition_count + 1
        WHERE id = NEW.asset_id AND tenant_id = NEW.tenant_id
        RETURNING deleted_at IS NULL INTO live;
        INSERT INTO tenant_usage_deltas (tenant_id, metric, key, value)
        SELECT NEW.tenant_id, d.metric, d.key, d.value
        FROM (VALUES ('renditions_by_format', NEW.format, 1),
                     ('rendition_bytes', NEW.format, NEW.size_bytes),
                     ('rendition_count', '', CASE WHEN live THEN 1 ELSE 0 END))
             d (metric, key, value)
        WHERE d.value <> 0;
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION tenant_usage_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_usage_deltas (tenant_id, metric, key, value)
    SELECT OLD.tenant_id, 'jobs_by_state', OLD.state, -1 WHERE TG_OP <> 'INSERT'
    UNION ALL
    SELECT NEW.tenant_id, 'jobs_by_state', NEW.state, 1 WHERE TG_OP <> 'DELETE';
    RETURN NULL;
END;
$$;

CREATE FUNCTION tenant_usage_poison_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_usage_deltas (tenant_id, metric, key, value)
    SELECT OLD.tenant_id, 'poison_job_count', '', -1
    WHERE TG_OP <> 'INSERT' AND OLD.replayed_at IS NULL
    UNION ALL
    SELECT NEW.tenant_id, 'poison_job_count', '', 1
    WHERE TG_OP <> 'DELETE' AND NEW.replayed_at IS NULL;
    RETURN NULL;
END;
$$;

-- The row GetTenantMetrics returns: the same columns, types and values as
-- tenant_usage_recount, from the counters.
CREATE FUNCTION tenant_usage(tenant uuid)
RETURNS TABLE (
    asset_count bigint, assets_by_status jsonb, rendition_count bigint,
    original_bytes bigint, rendition_bytes bigint, logical_bytes bigint,
    physical_bytes bigint, deduplicated_uploads bigint, jobs_by_state jsonb,
    poison_job_count bigint, renditions_by_format jsonb
)
LANGUAGE sql STABLE AS $$
    WITH counters AS (
        SELECT metric, key, sum(value)::bigint AS value
        FROM (
            SELECT metric, key, value FROM tenant_usage_base WHERE tenant_id = tenant
            UNION ALL
            SELECT metric, key, value FROM tenant_usage_deltas WHERE tenant_id = tenant
        ) unfolded
        GROUP BY metric, key
    ), formats AS (
        SELECT key,
               sum(value) FILTER (WHERE metric = 'renditions_by_format')::bigint AS n,
               coalesce(sum(value) FILTER (WHERE metric = 'rendition_bytes'), 0)::bigint
                   AS bytes
        FROM counters WHERE metric IN ('renditions_by_format', 'rendition_bytes')
        GROUP BY key
    )
    SELECT
        coalesce(sum(value) FILTER (WHERE metric = 'asset_count'), 0)::bigint,
        coalesce(jsonb_object_agg(key, value)
                 FILTER (WHERE metric = 'assets_by_status' AND value <> 0), '{}'::jsonb),
        coalesce(sum(value) FILTER (WHERE metric = 'rendition_count'), 0)::bigint,
        coalesce(sum(value) FILTER (WHERE metric = 'original_bytes'), 0)::bigint,
        coalesce(sum(value) FILTER (WHERE metric = 'rendition_bytes'), 0)::bigint,
        coalesce(sum(value) FILTER (WHERE metric = 'logical_bytes'), 0)::bigint,
        coalesce(sum(value) FILTER (WHERE metric = 'physical_bytes'), 0)::bigint,
        coalesce(sum(value) FILTER (WHERE metric = 'deduplicated_uploads'), 0)::bigint,
        coalesce(jsonb_object_agg(key, value)
                 FILTER (WHERE metric = 'jobs_by_state' AND value <> 0), '{}'::jsonb),
        coalesce(sum(value) FILTER (WHERE metric = 'poison_job_count'), 0)::bigint,
        (SELECT coalesce(jsonb_object_agg(key, jsonb_build_array(n, bytes)), '{}'::jsonb)
         FROM formats WHERE n <> 0)
    FROM counters
$$;

-- The full scan tenant_usage replaces (the query GetTenantMetrics ran before 0008),
-- for checking the counters against.
CREATE FUNCTION tenant_usage_recount(tenant uuid)
RETURNS TABLE (
    asset_count bigint, assets_by_status jsonb, rendition_count bigint,
    original_bytes bigint, rendition_bytes bigint, logical_bytes bigint,
    physical_bytes bigint, deduplicated_uploads bigint, jobs_by_state jsonb,
    poison_job_count bigint, renditions_by_format jsonb
)
LANGUAGE sql STABLE AS $$
    WITH live AS (
        SELECT size_bytes, upload_count FROM assets
        WHERE tenant_id = $1 AND deleted_at IS NULL
    )
    SELECT
      (SELECT count(*) FROM live) AS asset_count,
      (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb) FROM (
          SELECT status, count(*) AS n FROM assets WHERE tenant_id = $1 GROUP BY status
       ) s) AS assets_by_status,
      (SELECT count(*) FROM renditions r JOIN assets a
          ON a.id = r.asset_id AND a.tenant_id = r.tenant_id
        WHERE r.tenant_id = $1 AND a.deleted_at IS NULL) AS rendition_count,
      -- Each original object once: a key outlives its deleted asset until Purge.
      (SELECT coalesce(sum(size_bytes), 0)::bigint FROM (
          SELECT DISTINCT ON (original_key) size_bytes FROM assets WHERE tenant_id = $1
       ) o) AS original_bytes,
      (SELECT coalesce(sum(size_bytes), 0)::bigint FROM renditions WHERE tenant_id = $1)
        AS rendition_bytes,
      (SELECT coalesce(sum(size_bytes * upload_count), 0)::bigint FROM live)
        AS logical_bytes,
      (SELECT coalesce(sum(size_bytes), 0)::bigint FROM live) AS physical_bytes,
      (SELECT coalesce(sum(upload_count - 1), 0)::bigint FROM live) AS deduplicated_uploads,
      (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb) FROM (
          SELECT state, count(*) AS n FROM jobs WHERE tenant_id = $1 GROUP BY state
       ) j) AS jobs_by_state,
      (SELECT count(*) FROM poison_jobs WHERE tenant_id = $1 AND replayed_at IS NULL)
        AS poison_job_count,
      (SELECT coalesce(jsonb_object_agg(format, jsonb_build_array(n, bytes::bigint)),
                       '{}'::jsonb)
         FROM (SELECT format, count(*) AS n, sum(size_bytes) AS bytes
               FROM renditions WHERE tenant_id = $1 GROUP BY format) f)
        AS renditions_by_format
$$;

-- Fold up to `max_rows` deltas into tenant_usage_base, in one statement: a reader sees
-- them either still as deltas or already in the base, never both or neither. Returns
-- how many were folded (fewer than max_rows: none are left). One compaction at a time;
-- a caller finding one running returns 0 at once.
CREATE FUNCTION tenant_usage_compact(max_rows integer DEFAULT 50000)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('imagepipe:tenant_usage_compact', 0)) THEN
        RETURN 0;
    END IF;
    WITH taken AS (
        DELETE FROM tenant_usage_deltas
        WHERE ctid = ANY (ARRAY(SELECT ctid FROM tenant_usage_deltas LIMIT max_rows))
        RETURNING tenant_id, metric, key, value
    ), summed AS (
        SELECT tenant_id, metric, key, sum(value)::bigint AS value, count(*) AS n
        FROM taken GROUP BY tenant_id, metric, key
    ), upserted AS (
        INSERT INTO tenant_usage_base AS b (tenant_id, metric, key, value)
        SELECT tenant_id, metric, key, value FROM summed
        ON CONFLICT (tenant_id, metric, key) DO UPDATE SET value = b.value + EXCLUDED.value
    )
    SELECT coalesce(sum(n), 0) INTO folded FROM summed;
    RETURN folded;
END;
$$;

-- Every counter computed again from the rows, for every tenant: the backfill below,
-- and a repair after rows were changed with triggers off (session_replication_role =
-- replica, a bulk load). Writers wait while it runs.
CREATE FUNCTION tenant_usage_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE jobs, poison_jobs, assets, renditions IN SHARE ROW EXCLUSIVE MODE;
    PERFORM pg_advisory_xact_lock(hashtextextended('imagepipe:tenant_usage_compact', 0));
    -- Only rows that are wrong are written (none after a correct bulk load).
    UPDATE assets a SET rendition_count = r.n
    FROM (SELECT asset_id, tenant_id, count(*)::integer AS n FROM renditions
          GROUP BY asset_id, tenant_id) r
    WHERE a.id = r.asset_id AND a.tenant_id = r.tenant_id AND a.rendition_count <> r.n;
    UPDATE assets a SET rendition_count = 0
    WHERE a.rendition_count <> 0 AND NOT EXISTS (
        SELECT 1 FROM renditions r WHERE r.asset_id = a.id AND r.tenant_id = a.tenant_id);
    -- The UPDATEs above may have written deltas: everything is counted afresh below.
    TRUNCATE tenant_usage_deltas, tenant_usage_base, tenant_usage_originals;
    INSERT INTO tenant_usage_originals (tenant_id, original_key, users, size_bytes)
    SELECT tenant_id, original_key, count(*), min(size_bytes) FROM assets
    GROUP BY tenant_id, original_key;
    INSERT INTO tenant_usage_base (tenant_id, metric, key, value)
    SELECT tenant_id, metric, key, value FROM (
        SELECT tenant_id, 'assets_by_status' AS metric, status AS key, count(*) AS value
        FROM assets GROUP BY tenant_id, status
        UNION ALL
        SELECT l.tenant_id, m.metric, '', m.value
        FROM (SELECT tenant_id, count(*) AS n, sum(rendition_count)::bigint AS r,
                     sum(size_bytes * upload_count)::bigint AS logical,
                     sum(size_bytes)::bigint AS physical,
                     sum(upload_count - 1)::bigint AS duplicates
              FROM assets WHERE deleted_at IS NULL GROUP BY tenant_id) l
        CROSS JOIN LATERAL (VALUES ('asset_count', l.n), ('rendition_count', l.r),
                                   ('logical_bytes', l.logical), ('physical_bytes', l.physical),
                                   ('deduplicated_uploads', l.duplicates)) m (metric, value)
        UNION ALL
        SELECT tenant_id, 'original_bytes', '', sum(size_bytes)::bigint
        FROM tenant_usage_originals GROUP BY tenant_id
        UNION ALL
        SELECT tenant_id, 'renditions_by_format', format, count(*)
        FROM renditions GROUP BY tenant_id, format
        UNION ALL
        SELECT tenant_id, 'rendition_bytes', format, sum(size_bytes)::bigint
        FROM renditions GROUP BY tenant_id, format
        UNION ALL
        SELECT tenant_id, 'jobs_by_state', state, count(*) FROM jobs GROUP BY tenant_id, state
        UNION ALL
        SELECT tenant_id, 'poison_job_count', '', count(*) FROM poison_jobs
        WHERE replayed_at IS NULL GROUP BY tenant_id
    ) counted
    WHERE value <> 0;
END;
$$;

SELECT tenant_usage_rebuild();

CREATE TRIGGER assets_usage_insert_delete
    AFTER INSERT OR DELETE ON assets
    FOR EACH ROW EXECUTE FUNCTION tenant_usage_assets();
-- Most updates of an asset (timestamps, thumbhash, labels) change no counter; nor
-- does the renditions trigger's update of rendition_count (it counts those itself;
-- anything else that sets rendition_count alone is tenant_usage_rebuild()).
CREATE TRIGGER assets_usage_update
    AFTER UPDATE ON assets
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.status, OLD.deleted_at IS NULL, OLD.size_bytes, OLD.upload_count,
           OLD.original_key)
          IS DISTINCT FROM
          (NEW.tenant_id, NEW.status, NEW.deleted_at IS NULL, NEW.size_bytes, NEW.upload_count,
           NEW.original_key))
    EXECUTE FUNCTION tenant_usage_assets();

CREATE TRIGGER renditions_usage_insert_delete
    AFTER INSERT OR DELETE ON renditions
    FOR EACH ROW EXECUTE FUNCTION tenant_usage_renditions();
CREATE TRIGGER renditions_usage_update
    AFTER UPDATE ON renditions
    FOR EACH ROW
    WHEN ((OLD.asset_id, OLD.tenant_id, OLD.format, OLD.size_bytes)
          IS DISTINCT FROM (NEW.asset_id, NEW.tenant_id, NEW.format, NEW.size_bytes))
    EXECUTE FUNCTION tenant_usage_renditions();

CREATE TRIGGER jobs_usage_insert_delete
    AFTER INSERT OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION tenant_usage_jobs();
-- Leases, attempts and timestamps change far more often than the state.
CREATE TRIGGER jobs_usage_update
    AFTER UPDATE ON jobs
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.state) IS DISTINCT FROM (NEW.tenant_id, NEW.state))
    EXECUTE FUNCTION tenant_usage_jobs();

CREATE TRIGGER poison_jobs_usage_insert_delete
    AFTER INSERT OR DELETE ON poison_jobs
    FOR EACH ROW EXECUTE FUNCTION tenant_usage_poison_jobs();
CREATE TRIGGER poison_jobs_usage_update
    AFTER UPDATE ON poison_jobs
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.replayed_at IS NULL)
          IS DISTINCT FROM (NEW.tenant_id, NEW.replayed_at IS NULL))
    EXECUTE FUNCTION tenant_usage_poison_jobs();
