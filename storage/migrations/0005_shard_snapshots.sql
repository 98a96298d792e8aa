-- fencewatch schema, version 5: engine snapshots per shard (ingest/shards.py). Existing
-- snapshots were taken by a single engine: shard 0 of 1.
ALTER TABLE engine_snapshots
    ADD COLUMN shard  integer NOT NULL DEFAULT 0,
    ADD COLUMN shards integer NOT NULL DEFAULT 1;

CREATE INDEX engine_snapshots_shard ON engine_snapshots (shards, shard, id DESC);
