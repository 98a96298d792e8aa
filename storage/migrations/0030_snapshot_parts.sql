-- fencewatch schema, version 30: an engine snapshot written as it is encoded, one row per
-- part (storage/snapshots.py), instead of one value the worker had to hold whole (some
-- 50 MB for a 100,000-tag shard, every 30 s). Its header row (state NULL) and its parts
-- are committed together. Snapshots written before keep their state in the header row.
ALTER TABLE engine_snapshots ALTER COLUMN state DROP NOT NULL;

CREATE TABLE engine_snapshot_parts (
    snapshot_id  bigint NOT NULL REFERENCES engine_snapshots (id) ON DELETE CASCADE,
    part         integer NOT NULL,
    state        bytea NOT NULL,
    PRIMARY KEY (snapshot_id, part)
);

-- A 100,000-tag shard's 49 MB of parts compress to 3.0 MB with lz4 in 0.13–0.24 s of the
-- server's CPU, against 2.8 MB in 0.37–0.43 s with pglz (docs/benchmarks.md, eighth
-- round), every 30 s, on the cores ingest shares. A server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE engine_snapshot_parts ALTER COLUMN state SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$$;
