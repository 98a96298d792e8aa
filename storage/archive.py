"""The archive tier of fixes: Parquet files, one per source partition and UTC day, written
with pyarrow and read with DuckDB in-process, on local disk or S3-compatible storage.

Only the files the ledger (`fixes_archive`, storage.archiving) names are part of the
archive: a file written by a move or a purge that then failed is invisible, and swept.

A file holds one day's fixes sorted by person, device and time (reads are by person, so
each row group covers few people and the rest are skipped by their statistics), in types
that cost little at rest: coordinates as int32 in units of 1e-7° (1.1 cm; GNSS receivers
report at most 7 decimals, so those fixes read back exactly), times as milliseconds (the
precision ingest stores; a move refuses a day holding finer times), sequence numbers and
times delta-encoded, ids, enumerations and device-rounded floats dictionary-encoded,
zstd on top. `rid`, the commit order, is not kept: only ingest's restore reads by it, and
no move takes a fix a shard's snapshot has not yet passed."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fencewatch.config import Settings

# The archived columns, in the order the export (storage.archiving) writes them as CSV.
SCHEMA = pa.schema(
    [
        ("supervisee_id", pa.string()),
        ("device_id", pa.string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("seq", pa.int64()),
        ("received_at", pa.timestamp("ms", tz="UTC")),
        ("lat", pa.int32()),  # 1e-7 degrees
        ("lon", pa.int32()),
        ("acc", pa.float32()),
        ("src", pa.string()),
        ("spd", pa.float32()),
        ("hdg", pa.float32()),
        ("batt", pa.int16()),
        ("chg", pa.bool_()),
        ("strap", pa.string()),
        ("quality", pa.int32()),
        ("zone_state", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
E7 = 10_000_000  # units of the archived coordinates per degree

_DELTA = ("ts", "seq", "received_at", "lat", "lon")
_FLOATS = ("acc", "spd", "hdg")
# Ids, enumerations, and the floats too: devices report accuracy, speed and heading with a
# few hundred distinct values (a tenth of a metre, a degree), so a dictionary beats storing
# the floats' bytes (1 byte a fix less than byte-stream-split in benchmarks.storage).
_DICTIONARY = (
    "supervisee_id",
    "device_id",
    "src",
    "batt",
    "strap",
    "quality",
    "zone_state",
    *_FLOATS,
)
ROW_GROUP = 65_536
_BATCH_BYTES = 16 << 20  # CSV read per batch
_CSV_TYPES = pacsv.ConvertOptions(
    column_types={**{f.name: f.type for f in SCHEMA}, "ts": pa.int64(), "received_at": pa.int64()},
    true_values=["t"],
    false_values=["f"],
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,
)
_FILES = "read_parquet($files)"  # how a query names the files it reads


def file_checksum_sql(expr: Mapping[str, str]) -> str:
    """A row's checksum term from the text of each column (`expr`): the first 48 bits of
    the MD5 of the row's canonical text. PostgreSQL and DuckDB compute the same for the
    same fix, so a day's sums compare across the two tiers."""
    text = " || '|' || ".join(f"coalesce({expr[c]}, '~')" for c in COLUMNS)
    return f"substr(md5({text}), 1, 12)"


# Each archived column as canonical text, in DuckDB's words (storage.archiving has
# PostgreSQL's): integers as digits, times as epoch microseconds, floats floored at 1/1000.
_DUCK_TEXT = {
    **{c: c for c in ("supervisee_id", "device_id", "src", "strap", "zone_state")},
    **{c: f"{c}::VARCHAR" for c in ("seq", "lat", "lon", "batt", "quality", "chg")},
    **{c: f"epoch_us({c})::VARCHAR" for c in ("ts", "received_at")},
    **{c: f"floor({c}::DOUBLE * 1000)::BIGINT::VARCHAR" for c in _FLOATS},
}
_DUCK_STATS = (
    "SELECT device_id, epoch_ms(ts) // 86400000 AS day, count(*) AS n,"
    f" sum(('0x' || {file_checksum_sql(_DUCK_TEXT)})::BIGINT) AS sum"
    f" FROM {_FILES} WHERE {{where}} GROUP BY 1, 2"
)

# Per (device, UTC day number): (fixes, checksum).
Stats = dict[tuple[str, int], tuple[int, int]]


class ArchiveError(RuntimeError):
    """The archive could not take or give fixes as asked; nothing was lost."""


@dataclass(frozen=True)
class Written:
    key: str
    fixes: int
    bytes: int


class Archive:
    """Where archived fixes live, and DuckDB to read them. Blocking: callers on the event
    loop run these methods in a thread (asyncio.to_thread)."""

    def __init__(self, url: str, s3_endpoint: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.endpoint = s3_endpoint
        # The footers of the day files, read once: a person-day reads one or two row groups
        # of a file whose footer describes thousands.
        self._duck = duckdb.connect(config={"threads": 2})
        self._duck.execute("SET parquet_metadata_cache = true")
        self.remote = self.url.startswith("s3://")
        if self.remote:
            # pyarrow both writes and (for DuckDB) reads the bucket: DuckDB's own S3 reader
            # is an extension it downloads on first use, which an isolated network refuses.
            host, scheme = _endpoint(s3_endpoint)
            self.fs: pafs.FileSystem = pafs.S3FileSystem(endpoint_override=host, scheme=scheme)
            self.root = self.url.removeprefix("s3://")
        else:
            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(self.url).resolve())

    @classmethod
    def of(cls, settings: Settings) -> Archive:
        """The settings' archive, one per location in a process."""
        url = settings.archive_url or str(settings.data_dir / "archive")
        with _OPEN_LOCK:
            found = _OPEN.get(url)
            if found is None:
                found = _OPEN[url] = cls(url, settings.archive_s3_endpoint)
            return found

    @staticmethod
    def key(day: date, source: str) -> str:
        """A new file's name: a file is never written twice under one name, so no reader
        (nor DuckDB's cache of footers) can mistake one for another."""
        return f"fixes/day={day.isoformat()}/{source}.{uuid.uuid4().hex[:8]}.parquet"

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def create(self, key: str) -> DayFile:
        """A new file at `key`, written a piece at a time (DayFile)."""
        return DayFile(self, key)

    def rewrite_without(self, key: str, new_key: str, supervisee: str, before_ms: int) -> Written:
        """The file `key` again at `new_key`, without `supervisee`'s fixes before
        `before_ms` (epoch ms): a retention purge."""
        source = pq.ParquetFile(self.fs.open_input_file(self._path(key)))
        batches = (
            b.filter(
                pc.invert(
                    pc.and_kleene(
                        pc.fill_null(pc.equal(b.column("supervisee_id"), supervisee), False),
                        pc.less(b.column("ts").cast(pa.int64()), before_ms),
                    )
                )
            )
            for b in source.iter_batches(batch_size=ROW_GROUP)
        )
        return self._write(new_key, batches)

    def _write(self, key: str, batches: Iterable[pa.RecordBatch]) -> Written:
        """`batches` (archived columns, sorted) as a Parquet file at `key`."""
        out = self.create(key)
        try:
            out.append(batches)
            return out.close()
        except BaseException:
            out.discard()
            raise

    def read_back(self, key: str, fixes: int) -> ReadBack:
        """The file `key` to read back in runs of row groups of at least `fixes` fixes."""
        return ReadBack(self, key, fixes)

    def size(self, key: str) -> int:
        return int(self.fs.get_file_info(self._path(key)).size or 0)

    def delete(self, key: str) -> None:
        info = self.fs.get_file_info(self._path(key))
        if info.type != pafs.FileType.NotFound:
            self.fs.delete_file(self._path(key))

    def keys(self) -> list[str]:
        """Every file under the archive's root, committed or not."""
        selector = pafs.FileSelector(f"{self.root}/fixes", recursive=True, allow_not_found=True)
        prefix = len(self.root) + 1
        return sorted(
            i.path[prefix:] for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File
        )

    def stats(
        self, keys: Sequence[str], where: str = "true", params: Mapping[str, Any] | None = None
    ) -> Stats:
        """(fixes, checksum) per device and UTC day of the files `keys` (of their fixes
        that match `where`)."""
        return _stats(self.sql(_DUCK_STATS.format(where=where), keys, params))

    def query(
        self, sql: str, keys: Sequence[str], params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """The rows of `sql` over the files `keys`, which it names `read_parquet($files)`."""
        cursor = self.sql(sql, keys, params)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def count_by_file(
        self, keys: Sequence[str], where: str, params: Mapping[str, Any]
    ) -> dict[str, int]:
        """Of the files `keys`, those with fixes matching `where`, and how many each has."""
        if self.remote:
            found = {
                k: self.sql(f"SELECT count(*) FROM read_parquet($files) WHERE {where}", [k], params)
                for k in keys
            }
            counts = {k: int(c.fetchall()[0][0]) for k, c in found.items()}
            return {k: n for k, n in counts.items() if n}
        by_uri = {self._path(k): k for k in keys}
        rows = self.sql(
            "SELECT filename, count(*) FROM read_parquet($files, filename = true)"
            f" WHERE {where} GROUP BY filename",
            keys,
            params,
        ).fetchall()
        return {by_uri[f]: int(n) for f, n in rows}

    def sql(
        self, sql: str, keys: Sequence[str], params: Mapping[str, Any] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """Run `sql`, which names the files `keys` `read_parquet($files)`: DuckDB's reader
        on local disk, a pyarrow dataset over the bucket on S3 (filters and columns pushed
        down to it all the same)."""
        if not keys:
            raise ArchiveError("no archive files to read")
        cursor = self._duck.cursor()  # one per call: DuckDB cursors are per thread
        if not self.remote:
            return cursor.execute(sql, {**(params or {}), "files": [self._path(k) for k in keys]})
        paths = [self._path(k) for k in keys]
        cursor.register("archive_files", pads.dataset(paths, SCHEMA, "parquet", self.fs))
        return cursor.execute(sql.replace(_FILES, "archive_files"), params or {})


class DayFile:
    """A Parquet file being written at `key`: sorted batches appended in order, in row
    groups of ROW_GROUP fixes across appends, so that a day is written a piece at a time
    (storage.archiving) into one file as if all at once. It is written under a temporary
    name and moved to `key` by `close`; one never closed is a stray the next run sweeps.
    Blocking, as Archive; one thread at a time."""

    def __init__(self, archive: Archive, key: str) -> None:
        self.archive = archive
        self.key = key
        self.fixes = 0
        self._temp = archive._path(f"{key}.{uuid.uuid4().hex}.tmp")
        archive.fs.create_dir(archive._path(key).rsplit("/", 1)[0], recursive=True)
        self._out = archive.fs.open_output_stream(self._temp)
        self._writer = pq.ParquetWriter(
            self._out,
            SCHEMA,
            compression="zstd",
            compression_level=9,
            use_dictionary=list(_DICTIONARY),
            column_encoding=dict.fromkeys(_DELTA, "DELTA_BINARY_PACKED"),
            write_statistics=True,
            sorting_columns=[pq.SortingColumn(i) for i in range(4)],
        )
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0

    def append(self, batches: Iterable[pa.RecordBatch]) -> None:
        """`batches` (archived columns), sorted, following those appended before."""
        for batch in batches:
            self._pending.append(batch)
            self._rows += batch.num_rows
            while self._rows >= ROW_GROUP:
                table = pa.Table.from_batches(self._pending, SCHEMA)
                self._writer.write_table(table.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
                rest = table.slice(ROW_GROUP)
                self._pending, self._rows = rest.to_batches(), rest.num_rows
                self.fixes += ROW_GROUP

    def append_csv(self, data: bytes) -> None:
        """The export's CSV (storage.archiving: COLUMNS in order, sorted), appended."""
        reader = pacsv.open_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=list(COLUMNS), block_size=_BATCH_BYTES),
            convert_options=_CSV_TYPES,
        )
        self.append(_typed(b) for b in reader)

    def close(self) -> Written:
        """The file complete, at its name."""
        if self._rows:
            table = pa.Table.from_batches(self._pending, SCHEMA)
            self._writer.write_table(table, row_group_size=ROW_GROUP)
            self.fixes += self._rows
            self._pending, self._rows = [], 0
        self._writer.close()
        self._out.close()
        self.archive.fs.move(self._temp, self.archive._path(self.key))
        return Written(self.key, self.fixes, self.archive.size(self.key))

    def discard(self) -> None:
        """Give up the file: what was written of it is deleted."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._out.close()
        with contextlib.suppress(Exception):
            self.archive.fs.delete_file(self._temp)


class ReadBack:
    """A file read back through pyarrow's reader (the one DuckDB reads S3 files through),
    in `runs` of whole row groups of at least `fixes` fixes: a day of 100,000 tags is
    288 M fixes, checked a run at a time, its footer read once. Blocking, as Archive."""

    def __init__(self, archive: Archive, key: str, fixes: int) -> None:
        self._duck = archive._duck
        self._file = pq.ParquetFile(archive.fs.open_input_file(archive._path(key)))
        meta = self._file.metadata
        self.runs: list[range] = []
        first, rows = 0, 0
        for group in range(meta.num_row_groups):
            rows += meta.row_group(group).num_rows
            if rows >= fixes or group == meta.num_row_groups - 1:
                self.runs.append(range(first, group + 1))
                first, rows = group + 1, 0

    def stats(self, run: range) -> Stats:
        """(fixes, checksum) per device and UTC day of the row groups `run`."""
        cursor = self._duck.cursor()
        cursor.register("archive_files", self._file.read_row_groups(list(run)))
        return _stats(
            cursor.execute(_DUCK_STATS.format(where="true").replace(_FILES, "archive_files"))
        )

    def close(self) -> None:
        self._file.close()


_OPEN: dict[str, Archive] = {}
_OPEN_LOCK = threading.Lock()


def _endpoint(text: str | None) -> tuple[str | None, str]:
    """host:port (HTTPS), or http://host:port, as pyarrow takes it; None: AWS itself."""
    if text is None:
        return None, "https"
    scheme, sep, rest = text.partition("://")
    return (rest, scheme) if sep else (text, "https")


def _stats(cursor: duckdb.DuckDBPyConnection) -> Stats:
    return {(d, int(day)): (int(n), int(s)) for d, day, n, s in cursor.fetchall()}


def _typed(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A CSV batch in the archived types (its times arrive as epoch milliseconds)."""
    arrays = [
        batch.column(name).cast(field.type) if name in ("ts", "received_at") else batch.column(name)
        for name, field in zip(COLUMNS, SCHEMA, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def day_number(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def at_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
