-- fencewatch schema, version 6: `rid` is only ever searched as "after the engine's last
-- snapshot" (storage/snapshots.py), and it grows with every insert, so a BRIN index serves
-- that as well as the B-tree did, at a fraction of the cost on every stored fix.
DROP INDEX fixes_rid;
CREATE INDEX fixes_rid ON fixes USING brin (rid);
