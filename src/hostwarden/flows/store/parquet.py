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

Bloom filters are not enough for a busy remote address, nor is a day of many segments
(every segment costs a row group or two): the daily compaction (``compact``) rewrites a
finished day as one segment plus a companion file (``<name>.remote.parquet``) of the same
rows sorted by the remote address, and the remote-side branches of a query read the
companion. A segment is still never rewritten in place: compaction seals a new one and
retires the old ones in the chain.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.flows.models import (
    CHAIN_EXPIRE,
    CHAIN_SEAL,
    FLOWS_DATASET,
    FlowChainEntry,
    FlowSegment,
    LegalHold,
)
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
    files,
    integrity,
    retention,
    sealing,
)
from hostwarden.flows.store.common import QUERY_SCHEMA, range_condition, with_address_texts
from hostwarden.flows.store.retention import HoldScope

if TYPE_CHECKING:
    from hostwarden.core.runtime import Operation, Runtime


log = get_logger("hostwarden.flows.store")


@dataclass
class CompactionReport:
    """What compacting one day did: the new segment and what it replaced, or why not."""

    day: str
    replaced: list[str] = field(default_factory=list)
    segment: str | None = None
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    #: Why the day was left as it was (None: compacted).
    skipped: str | None = None


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
#: bench/store.py's one-address queries then read 1 to 2.4 % more bytes; kept at 3 for
#: what stays on disk: compacted days and the log datasets.
ZSTD_LEVEL = 3
#: Fresh segments (sealed by a collector or an import) are read back and rewritten by the
#: nightly compaction within ``compact_after_hours`` of their day's end, so they are
#: written for speed: zstd's fast level -1 and no dictionaries. Encoding a million
#: records (one core, 2026-11-23, a slice of bench/query.py's stream, under load 5–6):
#: 0.36 instead of 0.66 s of CPU, 21.9 instead of 19.2 bytes a record; lz4 was 0.29 s
#: but 32.1 bytes, and the store's files are zstd (issue 5). Bloom filters stay: they
#: cost 0.02–0.03 s a million and keep a remote address over today's segments from
#: reading every row group.
HOT_ZSTD_LEVEL = -1
#: Bits of the packed sort key (see ``storage_order``): group, IPv4 address, time.
_TIME_BITS = 27  # 37 hours of milliseconds; a segment holds one UTC day
_V4_HIGH = np.uint64(0xFFFF)
#: Queries that read at most this many files (an address over a few days) run on a DuckDB
#: that keeps each file's parsed footer (``parquet_metadata_cache``; DuckDB checks the
#: file's modification time, and a segment is never rewritten). An address query reads
#: a compacted day's files in four branches, and each branch parsed its file's 266 KB
#: footer anew: about 20 ms of CPU a branch, 50 of the quiet customer address's 107 ms
#: in bench/query.py's 50,000,000 records (2026-11-23). A parsed footer of such a file
#: holds about 2.6 MB, so a query over many days runs without the cache, and the cache
#: starts afresh once ``CACHED_FILES`` files have gone through it (about 170 MB).
CACHED_QUERY_FILES = 16
CACHED_FILES = 64
#: Rows per piece of a streamed answer (``query_batches``): large enough that DuckDB and
#: the address formatting work in bulk, small enough to start sending at once.
STREAM_ROWS = 65_536


def storage_order(batch: FlowBatch) -> NDArray[np.intp]:
    """Row order of a segment: group (provider side in ``src`` or ``dst``), then that
    address, then start time.

    When every provider-side address is IPv4 and the starts span less than 2^27 ms, the
    three keys fit one uint64 (1 + 32 + 27 bits) and one ``argsort`` of it replaces a
    four-key ``lexsort``: 0.2 instead of 0.36 to 0.5 s per million records. Rows equal in
    all three keys may come in any order."""
    local_hi, local_lo = sealing.local_address(batch)
    return _grouped_order(batch, local_hi, local_lo)


def remote_order(batch: FlowBatch) -> NDArray[np.intp]:
    """Row order of a compacted segment's companion file: the same groups, then the
    remote address (``dst`` in the first group, ``src`` in the second), then start time;
    so a remote address is as narrow a range of row groups as a customer address is in
    the segment."""
    on_dst = batch["local_side"] == LOCAL_DST
    remote_hi = np.where(on_dst, batch["src_hi"], batch["dst_hi"])
    remote_lo = np.where(on_dst, batch["src_lo"], batch["dst_lo"])
    return _grouped_order(batch, remote_hi, remote_lo)


def _grouped_order(
    batch: FlowBatch, hi: NDArray[np.uint64], lo: NDArray[np.uint64]
) -> NDArray[np.intp]:
    on_dst = batch["local_side"] == LOCAL_DST
    start = batch["start"]
    first = int(start.min())
    if (
        int(start.max()) - first < 1 << _TIME_BITS
        and not hi.any()
        and bool(((lo >> np.uint64(32)) == _V4_HIGH).all())
    ):
        key = (start - first).astype(np.uint64)
        key |= (lo & np.uint64(0xFFFF_FFFF)) << np.uint64(_TIME_BITS)
        key |= on_dst.astype(np.uint64) << np.uint64(32 + _TIME_BITS)
        return np.argsort(key)
    return np.lexsort((start, lo, hi, on_dst))


def _in_order(batch: FlowBatch, order: NDArray[np.intp]) -> FlowBatch:
    """The rows in ``order``; a column holding one value throughout (post-NAT columns,
    sampling, direction with most exporters) is not gathered: half the columns here."""
    columns: dict[str, NDArray[Any]] = {}
    for name, values in batch.columns.items():
        columns[name] = values if (values == values[0]).all() else values[order]
    return FlowBatch(columns)


def segment_bytes(
    batch: FlowBatch,
    order: Callable[[FlowBatch], NDArray[np.intp]] = storage_order,
    *,
    compacted: bool = False,
) -> tuple[pa.Buffer, dict[str, Any]]:
    """A sealed segment's Parquet bytes (rows in storage order, or ``order``: a
    companion's is ``remote_order``) and its index fields. ``compacted``: written to
    stay (zstd level ``ZSTD_LEVEL``, dictionaries), else fresh (``HOT_ZSTD_LEVEL``)."""
    table = _in_order(batch, order(batch)).to_arrow()
    sink = pa.BufferOutputStream()
    bloom_ndv = min(len(batch), ROW_GROUP_ROWS)
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_ROWS,
        compression="zstd",
        compression_level=ZSTD_LEVEL if compacted else HOT_ZSTD_LEVEL,
        use_dictionary=(
            [n for n in NAMES if n not in DELTA_COLUMNS + PLAIN_COLUMNS] if compacted else False
        ),
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


def _address_branches(ranges: Sequence[tuple[int, int]]) -> list[tuple[str, bool]]:
    """One condition per (side, column, prefix), each excluding the rows an earlier one
    took, so that their UNION ALL is every matching row once; with each, whether it
    asks for the remote side (better read from a companion file, ordered by it).

    Each is a conjunction with ``local_side`` so that DuckDB pushes the address range
    into the row groups' statistics: in a segment the provider-side column of each
    ``local_side`` group is sorted, in a companion the remote-side one."""
    on_dst = f"local_side = {LOCAL_DST}"
    on_src = f"local_side != {LOCAL_DST}"
    conditions: list[tuple[str, bool]] = []
    for first, last in ranges:
        src = range_condition("src", first, last, _u64)
        dst = range_condition("dst", first, last, _u64)
        conditions += [
            (f"{on_src} AND {src}", False),
            (f"{on_dst} AND {dst}", False),
            (f"{on_src} AND {dst}", True),
            (f"{on_dst} AND {src}", True),
        ]
    branches = []
    for i, (condition, remote) in enumerate(conditions):
        taken = " OR ".join(f"({c})" for c, _ in conditions[:i])
        branches.append((f"({condition}) AND NOT ({taken})" if taken else f"({condition})", remote))
    return branches


#: Query bounds are clamped to what a datetime holds (years 1970–9999).
_LAST_MS = 253_402_300_799_000


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(min(max(ms, 0), _LAST_MS) / 1000, tz=UTC)


class ParquetStore(common.Aggregations, sealing.BufferedStore):
    """The default ``FlowStore``; one per process (collector worker, CLI call, job).
    Buffering and when to seal come from ``sealing.BufferedStore``."""

    BUCKET_SQL = "(epoch_ms(start) - {start}) // {step}"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.root = runtime.settings.home / runtime.settings.flows.store_dir
        self._duck: duckdb.DuckDBPyConnection | None = None
        #: The DuckDB that keeps parsed footers, and the files it has read.
        self._cached: duckdb.DuckDBPyConnection | None = None
        self._footers: set[str] = set()
        self._closed = False

    # --- writing -------------------------------------------------------------------------

    def _seal(self, day: int, batch: FlowBatch) -> Segment:
        data, fields = segment_bytes(batch)
        return files.seal_file(
            self.runtime,
            self.root,
            data,
            day_name=sealing.day_text(day),
            fields=fields,
            what="flow segment",
            kept="The records stay buffered in this process and are written at the next flush.",
        )

    # --- reading -------------------------------------------------------------------------

    def _connection(self, names: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
        """A cursor for a statement reading the segment files ``names``: on the DuckDB
        that keeps parsed footers when they are few (``CACHED_QUERY_FILES``), else on the
        plain one."""
        with self._lock:
            if 0 < len(names) <= CACHED_QUERY_FILES:
                fresh = set(names) - self._footers
                if self._cached is None or len(self._footers) + len(fresh) > CACHED_FILES:
                    # Dropped, not closed: a stream still reading from it keeps it
                    # alive, and it goes (with its footers) when that stream ends.
                    self._cached = self._open(metadata_cache=True)
                    self._footers = set()
                self._footers |= fresh
                return self._cached.cursor()
            if self._duck is None:
                self._duck = self._open(metadata_cache=False)
            return self._duck.cursor()

    @staticmethod
    def _open(*, metadata_cache: bool) -> duckdb.DuckDBPyConnection:
        duck = duckdb.connect(":memory:")
        duck.execute("SET GLOBAL TimeZone = 'UTC'")
        if metadata_cache:
            duck.execute("SET GLOBAL parquet_metadata_cache = true")
        return duck

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
            relation = self._connection(names).sql(sql, params=params)
            assert relation is not None  # a SELECT always gives a relation
            reader = relation.to_arrow_reader(STREAM_ROWS)
            # Read the first piece here, not in the generator: an unreadable segment
            # then raises to the caller before anything was sent.
            first = reader.read_next_batch()
        except StopIteration:
            return iter(())
        except duckdb.Error as exc:
            raise files.unreadable(self.root, names, exc, "flow segment") from exc
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
            raise files.unreadable(self.root, names, exc, "flow segment") from exc
        finally:
            reader.close()

    def _aggregate_source(
        self, start_ms: int, end_ms: int, wanted: common.Filters, columns: Sequence[str]
    ) -> common.AggregateSource | None:
        scanned = self._scan(start_ms, end_ms, wanted, columns)
        if scanned is None:
            return None
        source, params, names = scanned
        return source, lambda sql: self._run(sql, params, names)

    def _run(self, sql: str, params: dict[str, Any], names: Sequence[str]) -> pa.Table:
        try:
            relation = self._connection(names).sql(sql, params=params)
            assert relation is not None  # a SELECT always gives a relation
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise files.unreadable(self.root, names, exc, "flow segment") from exc

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
        where = " AND ".join(conditions)
        scan = f"SELECT {selected} FROM read_parquet($files) WHERE {where}"  # noqa: S608
        params: dict[str, Any] = {
            "files": [str(self.root / n) for n in names],
            "start": _when(start_ms),
            "end": _when(end_ms),
        }
        branches = _address_branches(wanted.ranges)
        if not branches:
            return scan, params, names
        # Remote-side branches read a segment's companion where it has one (a compacted
        # day). Its presence on disk decides, not the chain: a companion deleted by
        # accident then costs speed, not answers (verify names it).
        remote = [self._remote_file(n) for n in names]
        params["remote"] = [str(self.root / n) for n in remote]
        remote_scan = f"SELECT {selected} FROM read_parquet($remote) WHERE {where}"  # noqa: S608
        sql = " UNION ALL ".join(
            f"{remote_scan if on_remote else scan} AND {b}" for b, on_remote in branches
        )
        names += [n for n in remote if n not in names]
        return sql, params, names

    def _remote_file(self, name: str) -> str:
        """The file that answers remote-side queries for a segment: its companion if it
        has one, else itself."""
        companion = integrity.companion_name(name)
        return companion if (self.root / companion).is_file() else name

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
        conditions = [c for c, _ in _address_branches(scope.ranges)]
        if scope.customers:
            conditions.append(common.customer_condition(scope.customers))
        probe = " UNION ALL ".join(
            f"SELECT 1 FROM read_parquet($file) WHERE {c}"  # noqa: S608
            for c in conditions
        )
        return files.holds_any(self._connection(), probe, self.root, segment, scope.hold_id)

    def expire(self, op: Operation, now_ms: int) -> ExpiryReport:
        return retention.expire_segments(
            self.runtime,
            op,
            now_ms,
            backend="parquet",
            contains=self._contains,
            stored_state=partial(files.file_state, self.root),
            leftovers=self._expired_leftovers,
            remove=self._remove_files,
        )

    def _expired_leftovers(self, session: Session, cutoff: int) -> list[str]:
        return files.expired_leftovers(session, self.root, [""], cutoff)

    def _remove_files(self, names: Sequence[str]) -> None:
        # A segment's companion goes with it (no-op for a segment without one).
        files.remove_files(self.root, [f for n in names for f in (n, integrity.companion_name(n))])

    # --- compaction ----------------------------------------------------------------------

    def days_to_compact(self, session: Session, now_ms: int) -> list[str]:
        """Finished UTC days, ``compact_after_hours`` past their end and within retention,
        with more than one live flow segment or one without a companion file."""
        settings = self.runtime.settings.flows
        last_day = (now_ms - settings.compact_after_hours * 3_600_000) // DAY_MS - 1
        first_day = (now_ms - settings.retention_days * DAY_MS) // DAY_MS
        if last_day < first_day:
            return []
        rows = session.scalars(
            select(FlowSegment).where(
                FlowSegment.dataset == FLOWS_DATASET,
                FlowSegment.expired_at.is_(None),
                FlowSegment.day >= sealing.day_text(first_day),
                FlowSegment.day <= sealing.day_text(last_day),
            )
        )
        by_day: dict[str, list[str]] = {}
        for row in rows:
            by_day.setdefault(row.day, []).append(row.name)
        return sorted(
            day
            for day, names in by_day.items()
            if len(names) > 1 or not self._has_companion(session, names[0])
        )

    def _has_companion(self, session: Session, name: str) -> bool:
        sealed = session.scalar(
            select(FlowChainEntry.body).where(
                FlowChainEntry.kind == CHAIN_SEAL, FlowChainEntry.segment == name
            )
        )
        return sealed is not None and '"companion_sha256"' in sealed

    def compact(self, op: Operation, day: str) -> CompactionReport:
        """Rewrite the live flow segments of one UTC day as one segment (storage order)
        and its companion file (remote order), in ``op``'s transaction: the new seal entry
        names the companion's SHA-256 and size and the segments it replaces, each of
        which gets an ``expire`` entry (``reason: compacted``). Old files are deleted
        once the transaction has committed; the new ones if it rolls back.

        Skipped, leaving everything as it is: a day a legal hold pins (its evidence
        files stay untouched), and a day whose files no longer match their seal (verify
        names them; a compaction must not seal altered records anew)."""
        session = op.session
        integrity.lock_chain(session)
        rows = self._live_of_day(session, day)
        report = CompactionReport(day=day, replaced=[r.name for r in rows])
        self._remove_files(self._compacted_leftovers(session, day))
        if not rows or (len(rows) == 1 and self._has_companion(session, rows[0].name)):
            report.replaced = []
            report.skipped = "nothing to compact"
            return report
        holds = session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None)))
        scopes = [retention.scope_of(h) for h in holds]
        for row in rows:
            pins = retention.pinning_holds(Segment.of(row), scopes, self._contains)
            if pins:
                report.skipped = f"pinned by legal hold(s) {', '.join(map(str, pins))}"
                log.info("flow day not compacted: a legal hold pins it", day=day, holds=pins)
                return report
        batch = self._read_sealed(rows, report)
        if batch is None:
            return report
        expected = sum(r.rows for r in rows)
        if len(batch) != expected:
            raise SegmentUnreadable(
                f"the segments of {day} hold {len(batch)} records, but were sealed with "
                f"{expected}; the day was not compacted.",
                hint="Run `hostwarden logs verify` to find the segment that differs.",
            )
        data, fields = segment_bytes(batch, compacted=True)
        remote, _ = segment_bytes(batch, remote_order, compacted=True)
        sealed_at = utcnow()
        name = files.segment_name("", day, sealed_at)
        companion = integrity.companion_name(name)
        written: list[str] = []
        try:
            for file, content in ((name, data), (companion, remote)):
                self._write_compacted(file, content, expected)
                written.append(file)
            self._check_rows(written, expected)
            row = sealing.add_seal(
                session,
                name=name,
                day=day,
                sha256=hashlib.sha256(memoryview(data)).hexdigest(),
                size=len(data),
                fields=fields,
                sealed_at=sealed_at,
                extra={
                    "companion_sha256": hashlib.sha256(memoryview(remote)).hexdigest(),
                    "companion_size": len(remote),
                    "replaces": report.replaced,
                },
            )
            now = utcnow()
            for old in rows:
                entry = integrity.append(
                    session,
                    CHAIN_EXPIRE,
                    old.name,
                    {
                        "sha256": old.sha256,
                        "seal_seq": old.seal_seq,
                        "rows": old.rows,
                        "reason": "compacted",
                        "into": name,
                        "expired_at": isoformat(now),
                        "file": "present",
                    },
                )
                old.expired_at = now
                old.expire_seq = entry.seq
            report.segment = name
            report.rows = expected
            report.bytes_before = sum(r.size for r in rows)
            report.bytes_after = len(data) + len(remote)
            op.audit(
                "flow_segments.compact",
                "flow_store",
                "parquet",
                after={
                    "day": day,
                    "segment": name,
                    "companion": companion,
                    "replaced": report.replaced,
                    "rows": expected,
                    "bytes_before": report.bytes_before,
                    "bytes_after": report.bytes_after,
                    "seal_seq": row.seal_seq,
                },
                reason="daily compaction: one segment and a remote-ordered companion per day",
            )
            checkpoint = integrity.sign_head(session, self.runtime.signer)
        except BaseException:
            self._remove_files(written)
            raise
        doomed = list(report.replaced)

        def _after_commit(_session: Session) -> None:
            event.remove(session, "after_rollback", _after_rollback)
            sealing.publish_head(self.runtime, checkpoint)
            self._remove_files(doomed)

        def _after_rollback(_session: Session) -> None:
            # Not chained, so not sealed: files left here would show as "added".
            event.remove(session, "after_commit", _after_commit)
            self._remove_files(written)

        event.listen(session, "after_commit", _after_commit, once=True)
        event.listen(session, "after_rollback", _after_rollback, once=True)
        log.info(
            "flow day compacted",
            day=day,
            segment=name,
            replaced=len(rows),
            rows=expected,
            bytes=report.bytes_after,
        )
        return report

    @staticmethod
    def _live_of_day(session: Session, day: str) -> list[FlowSegment]:
        return list(
            session.scalars(
                select(FlowSegment)
                .where(
                    FlowSegment.dataset == FLOWS_DATASET,
                    FlowSegment.expired_at.is_(None),
                    FlowSegment.day == day,
                )
                .order_by(FlowSegment.first_ms, FlowSegment.id)
            )
        )

    def _read_sealed(
        self, rows: Sequence[FlowSegment], report: CompactionReport
    ) -> FlowBatch | None:
        """The records of these segments, each file checked against the SHA-256 it was
        sealed with first (None, with ``report.skipped`` set, when one does not match)."""
        parts = []
        for row in rows:
            path = self.root / row.name
            try:
                data = path.read_bytes()
            except OSError as exc:
                report.skipped = f"segment {row.name} is not readable ({exc.strerror or exc})"
                log.warning("flow day not compacted", day=report.day, reason=report.skipped)
                return None
            if len(data) != row.size or hashlib.sha256(data).hexdigest() != row.sha256:
                report.skipped = f"segment {row.name} no longer matches its seal"
                log.warning("flow day not compacted", day=report.day, reason=report.skipped)
                return None
            parts.append(FlowBatch.from_arrow(pq.read_table(pa.BufferReader(data))))
        return FlowBatch.concat(parts)

    def _write_compacted(self, name: str, data: pa.Buffer, rows: int) -> None:
        path = self.root / name
        try:
            files.write_file(path, memoryview(data))
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise StoreWriteFailed(
                f"the compacted segment {name} ({rows} records) could not be written to "
                f"{path.parent}: {exc.strerror or exc}.",
                hint=(
                    "The disk is full: free space there or move flows.store_dir. "
                    if full
                    else "Check the directory's permissions and the disk. "
                )
                + "The day's segments are unchanged and stay in use; the next run tries again.",
            ) from exc

    def _check_rows(self, names: Sequence[str], expected: int) -> None:
        for name in names:
            found = pq.read_metadata(self.root / name).num_rows
            if found != expected:
                raise StoreWriteFailed(
                    f"the compacted file {name} holds {found} records instead of {expected}.",
                    hint="The day's segments are unchanged; check the disk and run again.",
                )

    def _compacted_leftovers(self, session: Session, day: str) -> list[str]:
        """Files of this day's segments retired earlier that are still there (a crash
        between a compaction's commit and the deletion)."""
        directory = self.root / day
        if not directory.is_dir():
            return []
        on_disk = {
            f"{day}/{f.name}"
            for f in directory.iterdir()
            if f.name.endswith(integrity.SEGMENT_SUFFIX)
            and not f.name.endswith(integrity.COMPANION_SUFFIX)
        }
        if not on_disk:
            return []
        retired = session.scalars(
            select(FlowSegment.name).where(
                FlowSegment.name.in_(sorted(on_disk)), FlowSegment.expired_at.is_not(None)
            )
        )
        return list(retired)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            with self._lock:
                ducks = [self._duck, self._cached]
                self._duck = self._cached = None
            for duck in ducks:
                if duck is not None:
                    duck.close()
