-- fencewatch schema, version 27: closed hours of `fixes` packed one row per device-hour
-- (storage/compaction.py), a column's values in one array each, in (ts, seq) order. About
-- 120 fixes a row share one row's overhead, one key and one compressed value per column:
-- ~46 bytes a fix against ~185 packed a row each, indexes and TOAST included
-- (docs/benchmarks.md). A fix is in `fixes` or in here, never both; `rid` is not kept:
-- only fixes every shard's newest snapshot has judged are packed, so a restore's
-- `rid > last_rid` finds what it needs in `fixes` alone.
CREATE TABLE fixes_hours (
    device_id     text NOT NULL,
    hour          timestamptz NOT NULL,            -- its fixes' ts in [hour, hour + 1 h)
    supervisee_id text[] NOT NULL,
    seq           bigint[] NOT NULL,
    ts            timestamptz[] NOT NULL,
    received_at   timestamptz[] NOT NULL,
    lat           double precision[] NOT NULL,     -- float8 as ingest stored them: lossless
    lon           double precision[] NOT NULL,
    acc           real[] NOT NULL,
    src           text[] NOT NULL,
    spd           real[] NOT NULL,
    hdg           real[] NOT NULL,
    batt          smallint[] NOT NULL,
    chg           boolean[] NOT NULL,
    strap         text[] NOT NULL,
    quality       integer[] NOT NULL,
    zone_state    text[] NOT NULL,
    PRIMARY KEY (device_id, hour)
);
-- The archive's move of a day, and packing an hour's late fixes, read one hour or one day
-- of every device: ~0.2 bytes a fix.
CREATE INDEX fixes_hours_hour ON fixes_hours (hour);

-- lz4 compresses these arrays a little smaller than pglz and faster; a server built
-- without it keeps the default.
DO $$
DECLARE c text;
BEGIN
    FOREACH c IN ARRAY ARRAY['supervisee_id', 'seq', 'ts', 'received_at', 'lat', 'lon', 'acc',
        'src', 'spd', 'hdg', 'batt', 'chg', 'strap', 'quality', 'zone_state'] LOOP
        EXECUTE format('ALTER TABLE fixes_hours ALTER COLUMN %I SET COMPRESSION lz4', c);
    END LOOP;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    NULL;
END $$;

-- The packed fixes a row each, with the columns of `fixes` (but `rid`) and their hour: a
-- reader bounds `hour` (and `device_id`) so that only the device-hours it needs are read.
CREATE VIEW fixes_packed AS
SELECT h.hour, h.device_id, f.*
FROM fixes_hours h CROSS JOIN LATERAL unnest(h.supervisee_id, h.seq, h.ts, h.received_at,
    h.lat, h.lon, h.acc, h.src, h.spd, h.hdg, h.batt, h.chg, h.strap, h.quality, h.zone_state)
    AS f (supervisee_id, seq, ts, received_at, lat, lon, acc, src, spd, hdg, batt, chg, strap,
          quality, zone_state);
