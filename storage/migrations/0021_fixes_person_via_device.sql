-- fencewatch schema, version 21: a third less disk per stored fix, and one B-tree fewer to
-- keep up on every insert. A person's fixes are found through their devices
-- (device_assignments, which is never deleted from: a fix's person is its device's wearer
-- when it was judged) and the primary key (device_id, ts, seq), so (supervisee_id, ts) —
-- an index as large as the key, half-empty pages and all, since every device inserts into
-- the middle of it — is no longer needed. The retention purge's
-- `supervisee_id = … AND ts < cutoff` only visits partitions older than the cutoff.
DROP INDEX fixes_supervisee_ts;
