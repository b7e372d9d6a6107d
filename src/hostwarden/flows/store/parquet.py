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
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import utcnow
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
    common,
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
#: Level 1 would encode in 20 % less CPU (0.40 against 0.49 s a million records on
#: bench/ingest.py's stream, and plain ``dst_port`` 0.6 bytes a record smaller there), but
#: bench/store.py's one-address queries then read 1 to 2.4 % more bytes; kept at 3.
ZSTD_LEVEL = 3
#: Bits of the packed sort key (see ``storage_order``): group, IPv4 address, time.
_TIME_BITS = 27  # 37 hours of milliseconds; a segment holds one UTC day
_V4_HIGH = np.uint64(0xFFFF)
#: Rows per piece of a streamed answer (``query_batches``): large enough that DuckDB and
#: the address formatting work in bulk, small enough to start sending at once.
STREAM_ROWS = 65_536


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


def storage_order(batch: FlowBatch) -> NDArray[np.intp]:
    """Row order of a segment: group (provider side in ``src`` or ``dst``), then that
    address, then start time.

    When every provider-side address is IPv4 and the starts span less than 2^27 ms, the
    three keys fit one uint64 (1 + 32 + 27 bits) and one ``argsort`` of it replaces a
    four-key ``lexsort``: 0.2 instead of 0.36 to 0.5 s per million records. Rows equal in
    all three keys may come in any order."""
    local_hi, local_lo = sealing.local_address(batch)
    on_dst = batch["local_side"] == LOCAL_DST
    start = batch["start"]
    first = int(start.min())
    if (
        int(start.max()) - first < 1 << _TIME_BITS
        and not local_hi.any()
        and bool(((local_lo >> np.uint64(32)) == _V4_HIGH).all())
    ):
        key = (start - first).astype(np.uint64)
        key |= (local_lo & np.uint64(0xFFFF_FFFF)) << np.uint64(_TIME_BITS)
        key |= on_dst.astype(np.uint64) << np.uint64(32 + _TIME_BITS)
        return np.argsort(key)
    return np.lexsort((start, local_lo, local_hi, on_dst))


def _in_order(batch: FlowBatch, order: NDArray[np.intp]) -> FlowBatch:
    """The rows in ``order``; a column holding one value throughout (post-NAT columns,
    sampling, direction with most exporters) is not gathered: half the columns here."""
    columns: dict[str, NDArray[Any]] = {}
    for name, values in batch.columns.items():
        columns[name] = values if (values == values[0]).all() else values[order]
    return FlowBatch(columns)


def segment_bytes(batch: FlowBatch) -> tuple[pa.Buffer, dict[str, Any]]:
    """A sealed segment's Parquet bytes (rows in storage order) and its index fields."""
    table = _in_order(batch, storage_order(batch)).to_arrow()
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
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int | None = None,
    ) -> pa.Table:
        planned = self.plan_query(
            start_ms=start_ms,
            end_ms=end_ms,
            ips=ips,
            customers=customers,
            ports=ports,
            protos=protos,
            limit=limit,
        )
        if planned is None:
            return QUERY_SCHEMA.empty_table()
        return with_address_texts(self._run(*planned))

    def query_batches(
        self,
        *,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int | None = None,
    ) -> Iterator[pa.Table]:
        planned = self.plan_query(
            start_ms=start_ms,
            end_ms=end_ms,
            ips=ips,
            customers=customers,
            ports=ports,
            protos=protos,
            limit=limit,
        )
        if planned is None:
            return iter(())
        sql, params, names = planned
        try:
            relation = self._connection().sql(sql, params=params)
            assert relation is not None  # a SELECT always gives a relation
            reader = relation.to_arrow_reader(STREAM_ROWS)
            # Read the first piece here, not in the generator: an unreadable segment
            # then raises to the caller before anything was sent.
            first = reader.read_next_batch()
        except StopIteration:
            return iter(())
        except duckdb.Error as exc:
            raise self._unreadable(names, exc) from exc
        return self._pieces(first, reader, names)

    def _pieces(
        self, first: pa.RecordBatch, reader: pa.RecordBatchReader, names: Sequence[str]
    ) -> Iterator[pa.Table]:
        batch: pa.RecordBatch | None = first
        try:
            while batch is not None:
                if batch.num_rows:
                    yield with_address_texts(pa.Table.from_batches([batch]))
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    batch = None
        except duckdb.Error as exc:
            raise self._unreadable(names, exc) from exc
        finally:
            reader.close()

    def top_talkers(
        self,
        *,
        start_ms: int,
        end_ms: int,
        by: str = "bytes",
        group: str = "ip",
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int = 20,
    ) -> pa.Table:
        common.check_top(by, group, limit)
        wanted = common.filters(ips=ips, customers=customers, ports=ports, protos=protos)
        scanned = self._scan(start_ms, end_ms, wanted, common.TOP_COLUMNS)
        if scanned is None:
            return common.TOP_SCHEMA.empty_table()
        source, params, names = scanned
        found = self._run(common.top_sql(source, by=by, group=group, limit=limit), params, names)
        return common.top_table(found, group)

    def time_series(
        self,
        *,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
    ) -> pa.Table:
        buckets = common.check_series(start_ms, end_ms, step_ms)
        wanted = common.filters(ips=ips, customers=customers, ports=ports, protos=protos)
        scanned = self._scan(start_ms, end_ms, wanted, common.SERIES_COLUMNS)
        found = pa.table({"bucket": pa.array([], pa.int64())})
        if scanned is not None:
            source, params, names = scanned
            bucket = f"(epoch_ms(start) - {int(start_ms)}) // {int(step_ms)}"
            found = self._run(common.series_sql(source, bucket), params, names)
        return common.series_table(found, start_ms=start_ms, step_ms=step_ms, buckets=buckets)

    def _run(self, sql: str, params: dict[str, Any], names: Sequence[str]) -> pa.Table:
        try:
            relation = self._connection().sql(sql, params=params)
            assert relation is not None  # a SELECT always gives a relation
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise self._unreadable(names, exc) from exc

    def plan_query(
        self,
        *,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int | None = None,
    ) -> tuple[str, dict[str, Any], list[str]] | None:
        """The DuckDB SQL, its parameters and the segments a query reads (None: no
        segment covers the range); bench/store.py runs it under EXPLAIN ANALYZE."""
        common.check_range(start_ms, end_ms)
        common.check_limit(limit)
        wanted = common.filters(ips=ips, customers=customers, ports=ports, protos=protos)
        scanned = self._scan(start_ms, end_ms, wanted)
        if scanned is None:
            return None
        sql, params, names = scanned
        sql = (
            f"SELECT * FROM ({sql}) ORDER BY start, src_hi, src_lo, dst_hi, dst_lo, "  # noqa: S608
            "src_port, dst_port, proto"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return sql, params, names

    def _scan(
        self,
        start_ms: int,
        end_ms: int,
        wanted: common.Filters,
        columns: Sequence[str] = (),
    ) -> tuple[str, dict[str, Any], list[str]] | None:
        """The SQL of the matching rows (``columns``, or all), before any order or
        aggregation, with its parameters and segments; None when no segment covers
        the range. Addresses go into one branch each (see the module's note)."""
        common.check_range(start_ms, end_ms)
        with self.runtime.reading() as session:
            names = [row.name for row in self.live_segments(session, start_ms, end_ms)]
        if not names:
            return None
        conditions = ["start >= $start", "start < $end", *wanted.conditions()]
        selected = ", ".join(columns) if columns else "*"
        scan = (
            f"SELECT {selected} FROM read_parquet($files) WHERE "  # noqa: S608
            + " AND ".join(conditions)
        )
        branches = _address_branches(wanted.ranges)
        sql = " UNION ALL ".join(f"{scan} AND {b}" for b in branches) if branches else scan
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
            conditions.append(common.customer_condition(scope.customers))
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
