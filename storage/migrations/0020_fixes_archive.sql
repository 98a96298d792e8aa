-- fencewatch schema, version 20: the archive tier of fixes (storage/archiving.py).
-- A Parquet file is part of the archive exactly when it has a row here, written in the
-- same transaction that takes its fixes out of PostgreSQL: a move that stops half-way
-- leaves only files no reader looks at.
CREATE TABLE fixes_archive (
    key         text PRIMARY KEY,               -- the file, under the archive's root
    day         date NOT NULL,                  -- the UTC day of every fix in it
    source      text NOT NULL,                  -- the partition it came from, or late-…
    fixes       bigint NOT NULL,
    checksum    numeric NOT NULL,               -- sum of its fixes' checksums (storage/archive.py)
    bytes       bigint NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fixes_archive_day ON fixes_archive (day);

-- A partition detached from `fixes` to be moved: no fix can arrive in it any more (late
-- ones go to the default partition), and readers read it beside `fixes` until its move
-- commits and drops it.
CREATE TABLE fixes_archive_moves (
    source      text PRIMARY KEY,
    lo          timestamptz NOT NULL,
    hi          timestamptz NOT NULL,
    detached_at timestamptz NOT NULL DEFAULT now()
);
