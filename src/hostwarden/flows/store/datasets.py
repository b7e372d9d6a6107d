"""Log datasets (HTTP access, NAT port blocks, SSH logins) as sealed segments in the flow chain.

Each dataset keeps zstd Parquet segments under ``<store_dir>/<dataset>/YYYY-MM-DD/``,
sealed as flow segments are (temporary name, fsync, rename, fsync directory, then the
seal entry in the same segment hash chain, naming its dataset) and listed in
``flow_segments`` with their dataset. So ``logs verify``, retention and legal holds
cover them with the same code. They stay in Parquet whichever flow backend is
configured: log volumes are small beside flows, and one format keeps verification a
matter of hashing files.

Every dataset has the columns ``time``, ``local_hi``/``local_lo`` (the provider-side
address: the web or SSH server, the NAT public address), ``remote_hi``/``remote_lo``
(the client, the NAT inside address), ``customer_id`` and ``instance_id`` (who held the
provider side then; -1: nobody), plus its own. Rows are sorted by local address, then
time, so that a query for a customer's address reads one or two row groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import isoformat
from hostwarden.errors import ValidationFailed
from hostwarden.flows.store import (
    DAY_MS,
    ExpiryReport,
    Segment,
    files,
    parquet,
    retention,
    sealing,
)
from hostwarden.flows.store.common import range_condition
from hostwarden.flows.store.retention import HoldScope
from hostwarden.registry import attribution, netaddr

if TYPE_CHECKING:
    from hostwarden.core.runtime import Operation, Runtime

log = get_logger("hostwarden.flows.store")

HTTP, NAT, SSH = "http", "nat", "ssh"
LOG_DATASETS = (HTTP, NAT, SSH)

_TS = pa.timestamp("ms", tz="UTC")
_ADDRESS = [
    pa.field("local_hi", pa.uint64(), nullable=False),
    pa.field("local_lo", pa.uint64(), nullable=False),
    pa.field("remote_hi", pa.uint64(), nullable=False),
    pa.field("remote_lo", pa.uint64(), nullable=False),
]
_WHO = [
    pa.field("customer_id", pa.int64(), nullable=False),
    pa.field("instance_id", pa.int64(), nullable=False),
]

#: What each parser produces (attribution adds ``customer_id`` and ``instance_id``).
PARSED_SCHEMAS: dict[str, pa.Schema] = {
    HTTP: pa.schema(
        [
            pa.field("time", _TS, nullable=False),
            *_ADDRESS,
            pa.field("remote_port", pa.int32()),
            pa.field("host", pa.string(), nullable=False),
            pa.field("method", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("protocol", pa.string(), nullable=False),
            pa.field("status", pa.uint16(), nullable=False),
            pa.field("bytes", pa.uint64(), nullable=False),
            pa.field("referer", pa.string(), nullable=False),
            pa.field("user_agent", pa.string(), nullable=False),
            pa.field("request_time", pa.float64()),
        ]
    ),
    NAT: pa.schema(
        [
            pa.field("time", _TS, nullable=False),
            *_ADDRESS,
            pa.field("event", pa.string(), nullable=False),
            pa.field("port_first", pa.uint16(), nullable=False),
            pa.field("port_last", pa.uint16(), nullable=False),
            pa.field("proto", pa.string()),
        ]
    ),
    SSH: pa.schema(
        [
            pa.field("time", _TS, nullable=False),
            *_ADDRESS,
            pa.field("host", pa.string(), nullable=False),
            pa.field("remote_port", pa.int32()),
            pa.field("user", pa.string(), nullable=False),
            pa.field("result", pa.string(), nullable=False),
            pa.field("method", pa.string()),
            pa.field("pid", pa.int32()),
        ]
    ),
}
#: What each dataset stores.
SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([*schema, *_WHO]) for name, schema in PARSED_SCHEMAS.items()
}
#: What the local and remote address are called in query results.
ADDRESS_NAMES: dict[str, tuple[str, str]] = {
    HTTP: ("server", "client"),
    NAT: ("public", "inside"),
    SSH: ("server", "remote"),
}
_WORD_COLUMNS = frozenset(f.name for f in _ADDRESS)
#: Columns of high cardinality: no dictionary (as for flows, bench/store.py).
_PLAIN = ("local_lo", "remote_lo", "path", "remote_port", "bytes", "request_time")
_BLOOM = ("remote_lo",)


def check_dataset(dataset: str) -> str:
    if dataset not in SCHEMAS:
        raise ValidationFailed(
            f"'{dataset}' is not a log dataset.", hint=f"Use one of: {', '.join(LOG_DATASETS)}."
        )
    return dataset


# --- attribution ------------------------------------------------------------------------


def _words(table: pa.Table, side: str) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    return (
        table.column(f"{side}_hi").to_numpy().astype(np.uint64, copy=False),
        table.column(f"{side}_lo").to_numpy().astype(np.uint64, copy=False),
    )


def _times_ms(table: pa.Table) -> NDArray[np.int64]:
    times: NDArray[np.int64] = table.column("time").cast(pa.int64()).to_numpy()
    return times


def _nat_private(
    index: attribution.AttributionIndex,
    public: tuple[NDArray[np.uint64], NDArray[np.uint64]],
    ports: NDArray[np.int64],
    times_ms: NDArray[np.int64],
) -> tuple[NDArray[np.uint64], NDArray[np.uint64], NDArray[np.bool_]]:
    """The private address the registry's NAT port blocks give each (public address,
    port, time), and where one did. A CGNAT pool has few public addresses, so this
    loops over those the registry has blocks for, and over their blocks, in numpy."""
    n = len(ports)
    hi, lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    found = np.zeros(n, np.bool_)
    if not index.nat or n == 0:
        return hi, lo, found
    pairs = np.stack(public, axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    t_us = times_ms * 1000
    for k, (p_hi, p_lo) in enumerate(unique):
        blocks = index.nat.get((int(p_hi) << 64) | int(p_lo))
        if not blocks:
            continue
        rows = inverse == k
        for block in blocks:
            hit = (
                rows
                & ~found
                & (ports >= block.port_start)
                & (ports <= block.port_end)
                & (t_us >= block.from_us)
                & (t_us < block.to_us)
            )
            if hit.any():
                hi[hit] = np.uint64(block.private_int >> 64)
                lo[hit] = np.uint64(block.private_int & 0xFFFFFFFFFFFFFFFF)
                found |= hit
    return hi, lo, found


def attribute(index: attribution.AttributionIndex, dataset: str, table: pa.Table) -> pa.Table:
    """Add ``customer_id`` and ``instance_id``: who held the provider-side address at
    each row's time. NAT rows are attributed through the registry's NAT port blocks
    (public address and first port of the block) when it has one, else through the
    inside address the line names, else through the public address."""
    times = _times_ms(table)
    customer, instance = attribution.attribute_many(index, _words(table, "local"), times)
    if dataset == NAT and len(table):
        ports = table.column("port_first").to_numpy().astype(np.int64)
        p_hi, p_lo, via_block = _nat_private(index, _words(table, "local"), ports, times)
        c_block, i_block = attribution.attribute_many(index, (p_hi, p_lo), times)
        c_inside, i_inside = attribution.attribute_many(index, _words(table, "remote"), times)
        use_block = via_block & (c_block >= 0)
        use_inside = ~use_block & (c_inside >= 0)
        customer = np.where(use_block, c_block, np.where(use_inside, c_inside, customer))
        instance = np.where(use_block, i_block, np.where(use_inside, i_inside, instance))
    table = table.append_column(SCHEMAS[dataset].field("customer_id"), pa.array(customer))
    return table.append_column(SCHEMAS[dataset].field("instance_id"), pa.array(instance))


# --- sealing ----------------------------------------------------------------------------


def index_fields(table: pa.Table) -> dict[str, Any]:
    """A log segment's index fields, as ``sealing.index_fields`` gives a flow segment's:
    its local (provider-side) addresses stand for the flows' provider side."""
    hi, lo = _words(table, "local")
    low_hi, high_hi = hi.min(), hi.max()
    low = (int(low_hi) << 64) | int(lo[hi == low_hi].min())
    high = (int(high_hi) << 64) | int(lo[hi == high_hi].max())
    customers = table.column("customer_id").to_numpy()
    known = customers[customers >= 0]
    times = _times_ms(table)
    return {
        "rows": table.num_rows,
        "first_ms": int(times.min()),
        "last_ms": int(times.max()),
        "min_local": netaddr.key_of_int(low),
        "max_local": netaddr.key_of_int(high),
        "min_customer": int(known.min()) if len(known) else -1,
        "max_customer": int(known.max()) if len(known) else -1,
    }


def segment_bytes(dataset: str, table: pa.Table) -> bytes:
    """A log segment's Parquet bytes: rows ordered by local address, then time."""
    order = pc.sort_indices(
        table,
        sort_keys=[("local_hi", "ascending"), ("local_lo", "ascending"), ("time", "ascending")],
    )
    table = table.take(order)
    sink = pa.BufferOutputStream()
    names = SCHEMAS[dataset].names
    pq.write_table(
        table,
        sink,
        row_group_size=parquet.ROW_GROUP_ROWS,
        compression="zstd",
        compression_level=parquet.ZSTD_LEVEL,
        use_dictionary=[n for n in names if n not in _PLAIN and n != "time"],
        column_encoding={"time": "DELTA_BINARY_PACKED"},
        bloom_filter_options={
            c: {"ndv": min(table.num_rows, parquet.ROW_GROUP_ROWS), "fpp": parquet.BLOOM_FPP}
            for c in _BLOOM
        },
        write_statistics=True,
    )
    return bytes(sink.getvalue())


#: Query bounds are clamped to what a datetime holds (years 1970–9999).
_LAST_MS = 253_402_300_799_000


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(min(max(ms, 0), _LAST_MS) / 1000, tz=UTC)


def _u64(value: int) -> str:
    return f"CAST({int(value)} AS UBIGINT)"


def _scope_condition(ranges: Sequence[tuple[int, int]], customers: Sequence[int]) -> str:
    """Rows with one of the addresses on either side, or (when only customers are
    given) of one of the customers. Every value is an int computed here."""
    parts = [
        f"({range_condition(column, first, last, _u64)})"
        for first, last in ranges
        for column in ("local", "remote")
    ]
    address = " OR ".join(parts)
    if customers:
        ids = ", ".join(str(int(c)) for c in sorted(set(customers)))
        who = f"customer_id IN ({ids})"
        return f"({address}) AND {who}" if address else who
    return address


def _address_texts(hi: NDArray[np.uint64], lo: NDArray[np.uint64]) -> pa.Array:
    if len(hi) == 0:
        return pa.array([], type=pa.string())
    pairs = np.stack([hi, lo], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    texts = np.array(
        [
            "" if h == 0 and low == 0 else str(netaddr.hilo_to_address(int(h), int(low)))
            for h, low in unique
        ],
        dtype=object,
    )
    return pa.array(texts[inverse.reshape(-1)], type=pa.string())


def readable(dataset: str, table: pa.Table) -> pa.Table:
    """A stored table as answered: address words replaced by address texts named for
    the dataset (server/client, public/inside, server/remote)."""
    local_name, remote_name = ADDRESS_NAMES[dataset]
    local = _address_texts(*_words(table, "local"))
    remote = _address_texts(*_words(table, "remote"))
    kept = [n for n in SCHEMAS[dataset].names if n not in _WORD_COLUMNS]
    out = table.select(kept)
    out = out.add_column(1, local_name, local)
    return out.add_column(2, remote_name, remote)


class LogStore:
    """Buffers parsed, attributed log tables per dataset and UTC day and seals them;
    answers queries; verifies (through ``integrity``) and expires its segments. One per
    process (a CLI call, a job)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.root = runtime.settings.home / runtime.settings.flows.store_dir
        self.segment_records = runtime.settings.flows.segment_records
        self._buffers: dict[tuple[str, int], list[pa.Table]] = {}
        self._rows: dict[tuple[str, int], int] = {}
        self._duck: duckdb.DuckDBPyConnection | None = None

    @property
    def buffered_rows(self) -> int:
        return sum(self._rows.values())

    # --- writing -------------------------------------------------------------------------

    def write(self, dataset: str, table: pa.Table) -> list[Segment]:
        """Buffer ``table`` (in ``SCHEMAS[dataset]``); seals each day whose buffer
        reached ``flows.segment_records``. A failed seal raises and keeps the records
        buffered, so that the next ``flush`` writes them."""
        check_dataset(dataset)
        if table.num_rows == 0:
            return []
        schema = SCHEMAS[dataset]
        if not table.schema.equals(schema):
            raise ValidationFailed(
                f"a {dataset} log table has columns {table.schema.names}, not the "
                f"dataset's {schema.names}.",
                hint="Build it with hostwarden.flows.logformats and datasets.attribute.",
            )
        days = _times_ms(table) // DAY_MS
        distinct = np.unique(days).tolist()
        due = []
        for day in distinct:
            part = table if len(distinct) == 1 else table.filter(pa.array(days == day))
            key = (dataset, int(day))
            self._buffers.setdefault(key, []).append(part)
            self._rows[key] = self._rows.get(key, 0) + part.num_rows
            if self._rows[key] >= self.segment_records:
                due.append(key)
        return self._seal_keys(due)

    def flush(self) -> list[Segment]:
        """Seal everything buffered; raises the first failure, keeping what failed."""
        return self._seal_keys(sorted(self._buffers))

    def _seal_keys(self, keys: Sequence[tuple[str, int]]) -> list[Segment]:
        sealed: list[Segment] = []
        failure: Exception | None = None
        for key in keys:
            parts = self._buffers.pop(key, None)
            rows = self._rows.pop(key, 0)
            if not parts:
                continue
            table = pa.concat_tables(parts)
            try:
                sealed.append(self._seal(key[0], key[1], table))
            except Exception as exc:
                self._buffers[key] = [table]
                self._rows[key] = rows
                log.error(
                    "log segment not sealed; its records stay buffered for the next try",
                    dataset=key[0],
                    day=sealing.day_text(key[1]),
                    rows=rows,
                    error=f"{exc.__class__.__name__}: {exc}",
                )
                failure = failure or exc
        if failure is not None:
            raise failure
        return sealed

    def _seal(self, dataset: str, day: int, table: pa.Table) -> Segment:
        return files.seal_file(
            self.runtime,
            self.root,
            segment_bytes(dataset, table),
            day_name=sealing.day_text(day),
            fields=index_fields(table),
            what=f"{dataset} log segment",
            kept="These records were not stored (segments sealed before them were); "
            "they stay buffered for the next flush.",
            dataset=dataset,
        )

    # --- reading -------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._duck is None:
            self._duck = duckdb.connect(":memory:")
            self._duck.execute("SET GLOBAL TimeZone = 'UTC'")
        return self._duck.cursor()

    def query(
        self,
        dataset: str,
        *,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        limit: int | None = None,
    ) -> pa.Table:
        """Rows of ``dataset`` timed in [start_ms, end_ms), with any of ``ips``
        (addresses or prefixes) on either side and of any of ``customers``, in time
        order; addresses as text (see ``readable``)."""
        check_dataset(dataset)
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
            rows = sealing.BufferedStore.live_segments(session, start_ms, end_ms, dataset=dataset)
            names = [row.name for row in rows]
        if not names:
            return readable(dataset, SCHEMAS[dataset].empty_table())
        conditions = ["time >= $start", "time < $end"]
        scope = _scope_condition(ranges, customers)
        if scope:
            conditions.append(f"({scope})")
        columns = ", ".join(f'"{n}"' for n in SCHEMAS[dataset].names)
        sql = (
            f"SELECT {columns} FROM read_parquet($files) WHERE {' AND '.join(conditions)} "  # noqa: S608
            "ORDER BY time, local_hi, local_lo, remote_hi, remote_lo"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        params = {
            "files": [str(self.root / n) for n in names],
            "start": _when(start_ms),
            "end": _when(end_ms),
        }
        try:
            relation = self._connection().sql(sql, params=params)
            assert relation is not None  # a SELECT always gives a relation
            table = relation.to_arrow_table()
        except duckdb.Error as exc:
            raise files.unreadable(self.root, names, exc, "log segment") from exc
        return readable(dataset, table.cast(SCHEMAS[dataset]))

    # --- retention -----------------------------------------------------------------------

    def _contains(self, segment: Segment, scope: HoldScope) -> bool:
        """Does any row of the segment fall in the hold's scope? True when unsure."""
        if scope.everything:
            return True
        # Address or customer, as a hold means it (an address may be the client side).
        conditions = [_scope_condition(scope.ranges, ())] if scope.ranges else []
        if scope.customers:
            conditions.append(_scope_condition((), sorted(scope.customers)))
        probe = " OR ".join(f"({c})" for c in conditions)
        return files.holds_any(
            self._connection(),
            f"SELECT 1 FROM read_parquet($file) WHERE {probe}",  # noqa: S608
            self.root,
            segment,
            scope.hold_id,
        )

    def _expired_leftovers(self, session: Session, cutoff: int) -> list[str]:
        return files.expired_leftovers(session, self.root, [f"{d}/" for d in LOG_DATASETS], cutoff)

    def expire(self, op: Operation, now_ms: int) -> ExpiryReport:
        """Expire the log segments past ``flows.retention_days`` that no legal hold pins
        (audited and chained by ``retention.expire_segments``, as flow segments are)."""
        return retention.expire_segments(
            self.runtime,
            op,
            now_ms,
            backend="logs",
            contains=self._contains,
            stored_state=partial(files.file_state, self.root),
            leftovers=self._expired_leftovers,
            remove=partial(files.remove_files, self.root),
            datasets=LOG_DATASETS,
        )

    def close(self) -> None:
        """Release the query connection. Unlike a flow store's, this does not seal what
        is buffered: an import that failed half-way must not store the rest by
        closing; callers ``flush()`` once a file went through."""
        if self._duck is not None:
            self._duck.close()
            self._duck = None
