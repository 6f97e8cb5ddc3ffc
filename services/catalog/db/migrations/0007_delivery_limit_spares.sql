-- A job at the delivery limit that was rarely the one running when its renderer
-- died (a bystander of a crash) is republished instead of made poison; this counts
-- how often, so that no job is republished forever.
ALTER TABLE jobs ADD COLUMN spares integer NOT NULL DEFAULT 0;
