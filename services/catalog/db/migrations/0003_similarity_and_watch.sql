-- Near-duplicate search that stays fast as a tenant grows: multi-index hashing.
--
-- The 64-bit perceptual hash is split into four 16-bit blocks. If two hashes are
-- within Hamming distance d, and radii r0..r3 satisfy sum(r_i + 1) > d, then some
-- block i differs by at most r_i bits (a generalised pigeonhole). For the default
-- threshold 8 the radii are (1, 1, 1, 2): 17 + 17 + 17 + 137 = 188 index probes. The
-- candidates are read from the indexes alone (they include the full hash and the id)
-- and kept when within d. Measured in bench/similar.py.

ALTER TABLE assets
    ADD COLUMN phash_b0 integer GENERATED ALWAYS AS ((perceptual_hash >> 48) & 65535) STORED,
    ADD COLUMN phash_b1 integer GENERATED ALWAYS AS ((perceptual_hash >> 32) & 65535) STORED,
    ADD COLUMN phash_b2 integer GENERATED ALWAYS AS ((perceptual_hash >> 16) & 65535) STORED,
    ADD COLUMN phash_b3 integer GENERATED ALWAYS AS (perceptual_hash & 65535) STORED;

CREATE INDEX assets_phash_b0 ON assets (tenant_id, phash_b0) INCLUDE (perceptual_hash, id)
    WHERE deleted_at IS NULL;
CREATE INDEX assets_phash_b1 ON assets (tenant_id, phash_b1) INCLUDE (perceptual_hash, id)
    WHERE deleted_at IS NULL;
CREATE INDEX assets_phash_b2 ON assets (tenant_id, phash_b2) INCLUDE (perceptual_hash, id)
    WHERE deleted_at IS NULL;
CREATE INDEX assets_phash_b3 ON assets (tenant_id, phash_b3) INCLUDE (perceptual_hash, id)
    WHERE deleted_at IS NULL;

-- WatchAsset: every status change is announced on one channel; catalog LISTENs on a
-- single connection and wakes the watchers of that asset.
CREATE FUNCTION notify_asset_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify('imagepipe_asset_status', NEW.id::text || ' ' || NEW.status);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER assets_status_notify
    AFTER UPDATE OF status ON assets
    FOR EACH ROW EXECUTE FUNCTION notify_asset_status();

-- Purge and metrics look up which assets use an original object.
CREATE INDEX assets_tenant_original ON assets (tenant_id, original_key);
CREATE INDEX assets_tenant_deleted ON assets (tenant_id, deleted_at) WHERE deleted_at IS NOT NULL;
