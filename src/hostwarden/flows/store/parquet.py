"""The embedded flow store: day-partitioned, sealed, zstd Parquet segments read with DuckDB.

Layout: ``<home>/<flows.store_dir>/YYYY-MM-DD/<sealed>-<token>.parquet``, one directory
per UTC day of the records' start times. A segment is written once, to a temporary
name, fsynced, renamed, its directory fsynced, and only then chained; it is never
rewritten. Its index row (flow_segments) tells queries which files a time range needs.

Why the rows are ordered and grouped as they are: the common question is "everything
one address did on one day". Rows are sorted by which column holds the provider-side
address (``local_side`` 2: ``dst``, otherwise ``src``, as 0 means "unknown, take src"),
then by that address, then by time. In the first group the ``src`` column is sorted and
in the second the ``dst`` column, so the min/max statistics of row groups of
``ROW_GROUP_ROWS`` rows cover a narrow address range and prune all but the one or two
row groups that hold a customer address. The other side of each flow (the remote
address) is not sorted anywhere; a split-block Bloom filter on ``src_lo`` and ``dst_lo``
in every row group prunes those. DuckDB pushes only conjunctions down to statistics and
Bloom filters, not an OR across two columns, so a query for an address asks one
sub-query per (column, address) and unions them. Measured (bench/store.py, table in
docs/flows.md): over one day of 4,000,000 records in one segment, a customer address
reads 3 of 124 row groups (2 sub-queries × 62) and 5.0 of 82 MB, a remote address 2 of
124 and 7.7 MB; the same records in plain time order are read whole (94 MB).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.errors import ValidationFailed
from hostwarden.flows.models import FlowSegment
from hostwarden.flows.schema import LOCAL_DST, NAMES, FlowBatch
from hostwarden.flows.store import (
    DAY_MS,
    ExpiryReport,
    ProgressFn,
    Segment,
    SegmentUnreadable,
    StoreVerifyReport,
    StoreWriteFailed,
    integrity,
    retention,
    sealing,
)
from hostwarden.flows.store.common import QUERY_SCHEMA, range_condition, with_address_texts
from hostwarden.flows.store.retention import HoldScope

if TYPE_CHECKING:
    from hostwarden.core.runtime import Operation, Runtime

log = get_logger("hostwarden.flows.store")

#: Rows per Parquet row group. Smaller groups read less around a match, but footers and
#: Bloom filters grow and DuckDB spends longer per group; in bench/store.py (4,000,000
#: records) 16,384 to 131,072 all read 12 to 13 MB for the two one-address queries
#: together, and 65,536 was the fastest but one (docs/flows.md has the table).
ROW_GROUP_ROWS = 65_536
#: Bloom filters: sized for a row group of distinct values at 5 % false positives
#: (about 5 % of the file; a lower rate costs more bytes than it saves in reads).
BLOOM_COLUMNS = ("src_lo", "dst_lo")
BLOOM_FPP = 0.05
#: Times are delta-encoded (sorted by address then time, they climb in long runs).
DELTA_COLUMNS = ("start", "end")
#: Columns with too many distinct values per row group for a dictionary: pyarrow would
#: build one and give it up, which is slower and, with zstd, larger (bench/store.py:
#: 82 instead of 100 MB, 2.0 instead of 2.7 s for 4,000,000 records). Every other
#: column is dictionary-encoded.
PLAIN_COLUMNS = ("src_lo", "dst_lo", "src_port", "packets", "bytes")
ZSTD_LEVEL = 3


def _write_all(fd: int, data: memoryview) -> None:
    """Write every byte to ``fd`` (the one place bytes of a segment reach the disk;
    tests replace it to simulate a full disk)."""
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_bytes(batch: FlowBatch) -> tuple[pa.Buffer, dict[str, Any]]:
    """A sealed segment's Parquet bytes (rows in storage order) and its index fields."""
    local_hi, local_lo = sealing.local_address(batch)
    group = (batch["local_side"] == LOCAL_DST).astype(np.uint8)
    order = np.lexsort((batch["start"], local_lo, local_hi, group))
    # Arrow's take is about twice as fast as numpy's column by column.
    table = batch.to_arrow().take(pa.array(order))
    sink = pa.BufferOutputStream()
    bloom_ndv = min(len(batch), ROW_GROUP_ROWS)
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_ROWS,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=[n for n in NAMES if n not in DELTA_COLUMNS + PLAIN_COLUMNS],
        column_encoding=dict.fromkeys(DELTA_COLUMNS, "DELTA_BINARY_PACKED"),
        bloom_filter_options={c: {"ndv": bloom_ndv, "fpp": BLOOM_FPP} for c in BLOOM_COLUMNS},
        write_statistics=True,
    )
    fields = sealing.index_fields(batch)
    return sink.getvalue(), fields


# --- query building ---------------------------------------------------------------------------
#
# Every value put into SQL text below is an int computed here (never text from a caller),
# cast to the column's type so that DuckDB can push the comparison into the scan.


def _u64(value: int) -> str:
    return f"CAST({int(value)} AS UBIGINT)"


def _address_branches(ranges: Sequence[tuple[int, int]]) -> list[str]:
    """One condition per (column, prefix), each excluding the rows an earlier one took,
    so that their UNION ALL is every matching row once."""
    conditions = [
        range_condition(column, first, last, _u64)
        for first, last in ranges
        for column in ("src", "dst")
    ]
    branches = []
    for i, condition in enumerate(conditions):
        taken = " OR ".join(f"({c})" for c in conditions[:i])
        branches.append(f"({condition}) AND NOT ({taken})" if taken else f"({condition})")
    return branches


def _customer_condition(customers: Sequence[int]) -> str:
    ids = sorted({int(c) for c in customers})
    return f"customer_id IN ({', '.join(str(i) for i in ids)})"


#: Query bounds are clamped to what a datetime holds (years 1970–9999).
_LAST_MS = 253_402_300_799_000


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(min(max(ms, 0), _LAST_MS) / 1000, tz=UTC)


class ParquetStore(sealing.BufferedStore):
    """The default ``FlowStore``; one per process (collector worker, CLI call, job).
    Buffering and when to seal come from ``sealing.BufferedStore``."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.root = runtime.settings.home / runtime.settings.flows.store_dir
        self._duck: duckdb.DuckDBPyConnection | None = None
        self._closed = False

    # --- writing -------------------------------------------------------------------------

    def _seal(self, day: int, batch: FlowBatch) -> Segment:
        data, fields = segment_bytes(batch)
        day_name = sealing.day_text(day)
        sealed_at = utcnow()
        name = f"{day_name}/{sealed_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.parquet"
        path = self.root / name
        digest = hashlib.sha256(memoryview(data)).hexdigest()
        try:
            self._write_file(path, memoryview(data))
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise StoreWriteFailed(
                f"flow segment {name} ({len(batch)} records) could not be written to "
                f"{path.parent}: {exc.strerror or exc}.",
                hint=(
                    "The disk is full: free space there or move flows.store_dir. "
                    if full
                    else "Check the directory's permissions and the disk. "
                )
                + "The records stay buffered in this process and are written at the next flush.",
            ) from exc
        try:
            segment, checkpoint = sealing.record_seal(
                self.runtime,
                name=name,
                day=day_name,
                sha256=digest,
                size=len(data),
                fields=fields,
                sealed_at=sealed_at,
            )
        except BaseException:
            # Not chained, so not sealed: a file left here would show as "added".
            with suppress(OSError):
                path.unlink()
                _fsync_dir(path.parent)
            raise
        # After the commit: a failure here is logged, never raised, or the records
        # would go back to the buffer and be sealed twice.
        sealing.publish_head(self.runtime, checkpoint)
        log.info("flow segment sealed", segment=name, rows=len(batch), bytes=len(data))
        return segment

    def _write_file(self, path: Path, data: memoryview) -> None:
        """Temporary name, fsync, rename, fsync directory: after a crash the segment is
        either complete under its name or absent (a leftover ``.tmp`` at worst)."""
        new_dir = not path.parent.is_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        if new_dir:
            _fsync_dir(path.parent.parent)
        tmp = path.with_name(f".{path.name}{integrity.TEMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)

    # --- reading -------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._duck is None:
                duck = duckdb.connect(":memory:")
                duck.execute("SET GLOBAL TimeZone = 'UTC'")
                self._duck = duck
            return self._duck.cursor()

    def query(
        self,
        *,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        limit: int | None = None,
    ) -> pa.Table:
        planned = self.plan_query(
            start_ms=start_ms, end_ms=end_ms, ips=ips, customers=customers, limit=limit
        )
        if planned is None:
            return QUERY_SCHEMA.empty_table()
        sql, params, names = planned
        try:
            relation = self._connection().sql(sql, params=params)
            assert relation is not None  # a SELECT always gives a relation
            table = relation.to_arrow_table()
        except duckdb.Error as exc:
            raise self._unreadable(names, exc) from exc
        return with_address_texts(table)

    def plan_query(
        self,
        *,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        limit: int | None = None,
    ) -> tuple[str, dict[str, Any], list[str]] | None:
        """The DuckDB SQL, its parameters and the segments a query reads (None: no
        segment covers the range); bench/store.py runs it under EXPLAIN ANALYZE."""
        if end_ms <= start_ms:
            raise ValidationFailed(
                f"the query's end ({isoformat(_when(end_ms))}) is not after its start "
                f"({isoformat(_when(start_ms))}).",
                hint="Give a later end time.",
            )
        if limit is not None and limit < 1:
            raise ValidationFailed(f"limit {limit} is not positive.", hint="Give 1 or more.")
        ranges = retention.address_ranges(ips)
        with self.runtime.reading() as session:
            names = [row.name for row in self.live_segments(session, start_ms, end_ms)]
        if not names:
            return None
        common = ["start >= $start", "start < $end"]
        if customers:
            common.append(_customer_condition(customers))
        scan = "SELECT * FROM read_parquet($files) WHERE " + " AND ".join(common)  # noqa: S608
        branches = _address_branches(ranges)
        sql = " UNION ALL ".join(f"{scan} AND {b}" for b in branches) if branches else scan
        sql = (
            f"SELECT * FROM ({sql}) ORDER BY start, src_hi, src_lo, dst_hi, dst_lo, "  # noqa: S608
            "src_port, dst_port, proto"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        params = {
            "files": [str(self.root / n) for n in names],
            "start": _when(start_ms),
            "end": _when(end_ms),
        }
        return sql, params, names

    def _unreadable(self, names: Sequence[str], exc: duckdb.Error) -> SegmentUnreadable:
        """Name the segment DuckDB could not read: from its message, else by opening
        each file's footer."""
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        culprit = next((n for n in names if str(self.root / n) in str(exc)), None)
        if culprit is None:
            for name in names:
                try:
                    pq.read_metadata(self.root / name)
                except Exception:
                    culprit = name
                    break
        hint = "Run `hostwarden logs verify` to see whether it was altered, truncated or deleted."
        if culprit is None:
            return SegmentUnreadable(
                f"the flow segments of this time range cannot be read: {message}", hint=hint
            )
        path = self.root / culprit
        state = "is missing" if not path.exists() else "is corrupt"
        return SegmentUnreadable(f"flow segment {culprit} {state}: {message}", hint=hint)

    # --- integrity and retention -------------------------------------------------------------

    def verify(
        self, *, since_ms: int | None = None, progress: ProgressFn | None = None
    ) -> StoreVerifyReport:
        since_day = None if since_ms is None else sealing.day_text(since_ms // DAY_MS)
        return integrity.verify_store(
            self.runtime, self.root, since_day=since_day, progress=progress
        )

    def _contains(self, segment: Segment, scope: HoldScope) -> bool:
        """Does any record of the segment fall in the hold's scope? True when unsure."""
        if scope.everything:
            return True
        path = self.root / segment.name
        conditions = _address_branches(scope.ranges)
        if scope.customers:
            conditions.append(_customer_condition(sorted(scope.customers)))
        probe = " UNION ALL ".join(
            f"SELECT 1 FROM read_parquet($file) WHERE {c}"  # noqa: S608
            for c in conditions
        )
        try:
            found = self._connection().execute(f"SELECT EXISTS ({probe})", {"file": str(path)})
            row = found.fetchone()
        except duckdb.Error as exc:
            log.warning(
                "segment not readable while checking a legal hold; kept",
                segment=segment.name,
                hold=scope.hold_id,
                error=str(exc).splitlines()[0] if str(exc) else "",
            )
            return True
        return bool(row and row[0])

    def expire(self, op: Operation, now_ms: int) -> ExpiryReport:
        return retention.expire_segments(
            self.runtime,
            op,
            now_ms,
            backend="parquet",
            contains=self._contains,
            stored_state=self._file_state,
            leftovers=self._expired_leftovers,
            remove=self._remove_files,
        )

    def _file_state(self, row: FlowSegment) -> str:
        """present, missing or resized (against the size it was sealed with)."""
        try:
            size = (self.root / row.name).stat().st_size
        except FileNotFoundError:
            return "missing"
        return "present" if size == row.size else "resized"

    def _expired_leftovers(self, session: Session, cutoff: int) -> list[str]:
        """Files of segments expired earlier that are still there (a crash between the
        expiry's commit and the deletion), in day directories old enough to expire."""
        if not self.root.is_dir():
            return []
        cutoff_day = sealing.day_text(cutoff // DAY_MS)
        days = [d.name for d in self.root.iterdir() if d.is_dir() and d.name <= cutoff_day]
        if not days:
            return []
        on_disk = [
            f"{d}/{f.name}"
            for d in days
            for f in (self.root / d).iterdir()
            if f.name.endswith(integrity.SEGMENT_SUFFIX)
        ]
        if not on_disk:
            return []
        expired = session.scalars(
            select(FlowSegment.name).where(
                FlowSegment.name.in_(on_disk), FlowSegment.expired_at.is_not(None)
            )
        )
        return list(expired)

    def _remove_files(self, names: Sequence[str]) -> None:
        touched: set[Path] = set()
        for name in names:
            path = self.root / name
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                log.exception("expired flow segment not removed; retried next run", segment=name)
                continue
            touched.add(path.parent)
        for directory in touched:
            with suppress(OSError):
                if any(directory.iterdir()):
                    _fsync_dir(directory)
                else:
                    directory.rmdir()
                    _fsync_dir(directory.parent)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            with self._lock:
                duck, self._duck = self._duck, None
            if duck is not None:
                duck.close()
