"""The scale-out flow store: sealed segments as tagged rows of one ClickHouse MergeTree table.

``flows.clickhouse_url`` picks the engine: ``http(s)://user:password@host:8123/database``
talks to a ClickHouse server through clickhouse-connect; ``chdb:`` (the data directory's
``<store_dir>/chdb``) or ``chdb:///absolute/path`` runs ClickHouse in this process
through chdb. Both sit behind ``Connection``, a thin adapter with the five operations the
store needs (command, insert Arrow, query Arrow, stream raw bytes, close), so the store
code is one for both.

Layout. One table, ``flows``: the schema's columns plus ``segment`` (LowCardinality
String), partitioned by UTC day of ``start``, ordered by (segment, which side is the
provider's, the provider-side address, start). A segment is one insert: one day's buffer,
tagged with its name (``YYYY-MM-DD/<sealed>-<token>``) and inserted as a single block,
which ClickHouse writes as one part, all or nothing. Segment first in the sort key keeps
each segment's rows contiguous through merges, so re-reading one for verification reads
only its own granules, and inside it rows are in the Parquet backend's order (address,
then time), so a one-address query reads a granule or two per segment. Bloom-filter
skip indexes on ``src_lo`` and ``dst_lo`` find the remote side of a flow; ClickHouse
(26.9, in chdb 4.4) combines skip indexes across an OR, so one query with
``src = ip OR dst = ip`` does.

Integrity. A segment's canonical bytes are its rows read back from ClickHouse, schema
columns in schema order, sorted by the table's key and then by every other column (a
total order: rows equal in every column are interchangeable), in ClickHouse's RowBinary
format: fixed-width little-endian values, row after row, ``ROW_BYTES`` per row. That
form depends on no client library or writer version (Arrow IPC and Parquet carry
library-chosen framing and metadata), is the same on every read, and an auditor can
reproduce its SHA-256 with stock tools::

    clickhouse-client --query "SELECT <columns> FROM flows WHERE segment = '<name>'
        ORDER BY <CANONICAL_ORDER> FORMAT RowBinary" | sha256sum

Sealing inserts, re-reads that form, hashes it, and chains the hash through the same
chain and checkpoints as the Parquet backend (``sealing.record_seal``); a segment's
``size`` is the length of that form. Verification re-reads every live segment the same
way: fewer rows than sealed is *truncated*, more rows or other values *modified*, no rows
*deleted*, rows tagged with a name no seal entry has *added*.

chdb runs one embedded ClickHouse per process, on one data directory at a time, and a
data directory can be open in one process only. Several stores in one process on the
same directory share it; opening another directory while one is open, or the same one
from a second process (a collector with several workers, ``logs verify`` while ``serve``
runs), is refused with a message saying so. Use a server for more than one process.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import re
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import utcnow
from hostwarden.errors import ConfigError, HostwardenError, ValidationFailed
from hostwarden.flows.models import FLOWS_DATASET, FlowSegment
from hostwarden.flows.schema import COLUMNS, LOCAL_DST, NAMES, Column, FlowBatch
from hostwarden.flows.store import (
    DAY_MS,
    ExpiryReport,
    ProgressFn,
    Segment,
    StoreProblem,
    StoreVerifyReport,
    StoreWriteFailed,
    common,
    integrity,
    retention,
    sealing,
)
from hostwarden.flows.store.common import QUERY_SCHEMA, range_condition, with_address_texts
from hostwarden.flows.store.datasets import LOG_DATASETS
from hostwarden.flows.store.retention import HoldScope

if TYPE_CHECKING:
    from hostwarden.core.runtime import Operation, Runtime

log = get_logger("hostwarden.flows.store")

TABLE = "flows"
#: The database of an embedded (chdb) store.
CHDB_DATABASE = "hostwarden"
CHDB_DIR = "chdb"

_TIMESTAMP = pa.timestamp("ms", tz="UTC")
_INT_TYPES = {
    "uint8": "UInt8",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
    "int64": "Int64",
}


def _column_type(column: Column) -> str:
    if column.arrow == _TIMESTAMP:
        return "DateTime64(3, 'UTC')"
    return _INT_TYPES[column.dtype.name]


#: ClickHouse type of every schema column, and the bytes of one row in RowBinary.
COLUMN_TYPES: dict[str, str] = {c.name: _column_type(c) for c in COLUMNS}
ROW_BYTES = sum(c.dtype.itemsize for c in COLUMNS)

_LOCAL_HI = f"if(local_side = {LOCAL_DST}, dst_hi, src_hi)"
_LOCAL_LO = f"if(local_side = {LOCAL_DST}, dst_lo, src_lo)"
#: The table's sort key (after ``segment``): the Parquet backend's row order.
SORT_KEY = (f"local_side = {LOCAL_DST}", _LOCAL_HI, _LOCAL_LO, "start")
#: The canonical row order of a segment: the sort key, then every other column.
CANONICAL_ORDER = SORT_KEY + tuple(n for n in NAMES if n != "start")
_QUERY_ORDER = "start, src_hi, src_lo, dst_hi, dst_lo, src_port, dst_port, proto"
BLOOM_FPP = 0.05
ZSTD_LEVEL = 3

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClickHouseFailed(HostwardenError):
    code = "clickhouse-failed"
    title = "The ClickHouse flow store failed"
    status = 503


def create_table_sql(database: str) -> str:
    def codec(name: str) -> str:
        # Times are delta-encoded: sorted by address then time, they climb in long runs.
        delta = "Delta, " if name in ("start", "end") else ""
        return f"CODEC({delta}ZSTD({ZSTD_LEVEL}))"

    columns = [f"`{n}` {COLUMN_TYPES[n]} {codec(n)}" for n in NAMES]
    columns.append("`segment` LowCardinality(String)")
    columns += [
        f"INDEX {n}_bloom {n} TYPE bloom_filter({BLOOM_FPP}) GRANULARITY 1"
        for n in ("src_lo", "dst_lo")
    ]
    body = ",\n  ".join(columns)
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` (\n  {body}\n)\n"
        "ENGINE = MergeTree\n"
        "PARTITION BY toYYYYMMDD(start)\n"
        f"ORDER BY (segment, {', '.join(SORT_KEY)})"
    )


# --- the client adapter -------------------------------------------------------------------


class Connection(Protocol):
    """What the store asks of ClickHouse, whichever engine answers. Parameters use
    ClickHouse's ``{name:Type}`` placeholders; settings are ClickHouse settings."""

    #: Where, for messages (no password).
    where: str

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, int]) -> None: ...

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table: ...

    def raw(
        self, sql: str, fmt: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[bytes]: ...

    def batches(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[pa.RecordBatch]: ...

    def close(self) -> None: ...


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _failed(where: str, sql: str, exc: BaseException) -> ClickHouseFailed:
    statement = " ".join(sql.split())[:80]
    return ClickHouseFailed(
        f"ClickHouse ({where}) failed on `{statement}…`: {_first_line(exc)}",
        hint="Check that ClickHouse is reachable and the user may read and write the "
        "database; `hostwarden logs verify` tells whether stored segments are intact.",
    )


class ServerConnection:
    """A ClickHouse server over HTTP(S), through clickhouse-connect."""

    def __init__(self, url: str) -> None:
        try:
            import clickhouse_connect
        except ImportError as exc:  # pragma: no cover - a dependency of hostwarden
            raise ConfigError(
                "clickhouse-connect is not installed.",
                hint="pip install clickhouse-connect (a dependency of hostwarden).",
            ) from exc
        self.where = _redacted(url)
        try:
            # Parameters in the request body: a query over months names thousands of
            # segments, too many for a URL.
            self.client = clickhouse_connect.get_client(dsn=url, form_encode_query_params=True)
        except Exception as exc:
            raise ConfigError(
                f"cannot connect to ClickHouse at {self.where}: {_first_line(exc)}",
                hint="Check [flows] clickhouse_url (http://user:password@host:8123/database) "
                "and that the server is running.",
            ) from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self.client.command(sql, parameters=dict(params or {}))
        except Exception as exc:
            raise _failed(self.where, sql, exc) from exc

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, int]) -> None:
        try:
            self.client.insert_arrow(table, data, settings=dict(settings))
        except Exception as exc:
            raise _failed(self.where, f"INSERT INTO {table}", exc) from exc

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        try:
            return self.client.query_arrow(sql, parameters=dict(params or {}))
        except Exception as exc:
            raise _failed(self.where, sql, exc) from exc

    def raw(self, sql: str, fmt: str, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        try:
            # wait_end_of_query: an error while reading becomes an HTTP error, not text
            # in the middle of the bytes being hashed.
            response: Any = self.client.raw_stream(
                sql, parameters=dict(params or {}), settings={"wait_end_of_query": 1}, fmt=fmt
            )
            try:
                while chunk := response.read(1 << 20):
                    yield chunk
            finally:
                response.close()
        except Exception as exc:
            raise _failed(self.where, sql, exc) from exc

    def batches(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[pa.RecordBatch]:
        try:
            with self.client.query_arrow_stream(sql, parameters=dict(params or {})) as stream:
                yield from stream
        except Exception as exc:
            raise _failed(self.where, sql, exc) from exc

    def close(self) -> None:
        self.client.close()


def _chdb_value(value: Any) -> str:
    """A parameter value in the text form ClickHouse parses for ``{name:Type}`` (chdb
    passes values through as text; clickhouse-connect formats them itself)."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(_chdb_quoted(v) for v in value) + "]"
    return str(value)


def _chdb_quoted(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


#: The chdb data directory open in this process, and how many connections use it.
_chdb_lock = threading.Lock()
_chdb_open: dict[str, int] = {}


class ChdbConnection:
    """ClickHouse embedded in this process, through chdb (see the module's note on one
    data directory per process)."""

    def __init__(self, path: Path) -> None:
        try:
            # chdb's functions carry no annotations; through Any, mypy takes them as given.
            chdb_session: Any = importlib.import_module("chdb.session")
        except ImportError as exc:
            raise ConfigError(
                f"chdb (embedded ClickHouse) cannot be loaded: {_first_line(exc)}",
                hint="pip install chdb, or point [flows] clickhouse_url at a ClickHouse "
                "server (http://user:password@host:8123/database).",
            ) from exc
        self.path = path.resolve()
        self.where = f"chdb {self.path}"
        key = str(self.path)
        with _chdb_lock:
            other = next((p for p in _chdb_open if p != key), None)
            if other is not None:
                raise ConfigError(
                    f"embedded ClickHouse (chdb) already has {other} open in this process; "
                    f"it cannot open {key} as well.",
                    hint="chdb runs one data directory per process: close the other flow "
                    "store first, or use a ClickHouse server.",
                )
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self.session = chdb_session.Session(key)
            except Exception as exc:
                raise ConfigError(
                    f"embedded ClickHouse (chdb) could not open {key}: {_first_line(exc)}",
                    hint="A chdb data directory can be open in one process only: is a "
                    "collector, `serve` or another hostwarden command using it? For several "
                    "processes, point [flows] clickhouse_url at a ClickHouse server.",
                ) from exc
            _chdb_open[key] = _chdb_open.get(key, 0) + 1
        self._closed = False

    def _query(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> Any:
        values = {k: _chdb_value(v) for k, v in (params or {}).items()}
        try:
            return self.session.query(sql, fmt, params=values or None)
        except Exception as exc:
            raise _failed(self.where, sql, exc) from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._query(sql, "CSV", params)

    def insert(self, table: str, data: pa.Table, settings: Mapping[str, int]) -> None:
        columns = ", ".join(f"`{n}`" for n in data.column_names)
        options = ", ".join(f"{k} = {int(v)}" for k, v in settings.items())
        # chdb's Python() table function reads the Arrow table named here, from this
        # frame, without copying it.
        arrow_table = data  # noqa: F841
        self._query(
            f"INSERT INTO {table} ({columns}) SETTINGS {options} "  # noqa: S608
            f"SELECT {columns} FROM Python(arrow_table)",
            "CSV",
            None,
        )

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        table: pa.Table = self._query(sql, "ArrowTable", params)
        return table

    def raw(self, sql: str, fmt: str, params: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        values = {k: _chdb_value(v) for k, v in (params or {}).items()}
        try:
            with self.session.send_query(sql, fmt, params=values or None) as stream:
                for chunk in stream:
                    yield chunk.bytes()
        except Exception as exc:
            raise _failed(self.where, sql, exc) from exc

    def batches(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[pa.RecordBatch]:
        values = {k: _chdb_value(v) for k, v in (params or {}).items()}
        try:
            with self.session.send_query(sql, "ArrowStream", params=values or None) as stream:
                for chunk in stream:
                    # Each chunk chdb streams is a whole Arrow stream (schema, batches, end).
                    yield from pa.ipc.open_stream(chunk.bytes())
        except Exception as exc:
            raise _failed(self.where, sql, exc) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        key = str(self.path)
        with _chdb_lock:
            try:
                self.session.close()
            finally:
                _chdb_open[key] -= 1
                if _chdb_open[key] == 0:
                    del _chdb_open[key]


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def connect(runtime: Runtime) -> tuple[Connection, str]:
    """The connection ``flows.clickhouse_url`` names, and the database to use."""
    settings = runtime.settings
    url = settings.flows.clickhouse_url.strip()
    scheme = url.split(":", 1)[0].lower()
    if scheme == "chdb":
        rest = url[len("chdb:") :]
        if rest in ("", "//"):
            path = settings.home / settings.flows.store_dir / CHDB_DIR
        elif rest.startswith("///"):
            path = Path(unquote(rest[2:]))
        else:
            raise ConfigError(
                f"[flows] clickhouse_url '{url}' is not a chdb location I understand.",
                hint="Use chdb: for <home>/<store_dir>/chdb, or chdb:///absolute/path.",
            )
        return ChdbConnection(path), CHDB_DATABASE
    if scheme in ("http", "https"):
        database = unquote(urlsplit(url).path.strip("/")) or "default"
        if not _IDENTIFIER.match(database):
            raise ConfigError(
                f"ClickHouse database name '{database}' in [flows] clickhouse_url is not a "
                "plain identifier.",
                hint="Use letters, digits and underscores, e.g. http://host:8123/hostwarden.",
            )
        return ServerConnection(url), database
    shown = _redacted(url) if url else "(empty)"
    raise ConfigError(
        f'[flows] store = "clickhouse" needs clickhouse_url; {shown} is not one.',
        hint="Set [flows] clickhouse_url to http(s)://user:password@host:8123/database for "
        "a ClickHouse server, or chdb: for embedded ClickHouse in the data directory.",
    )


# --- query building -----------------------------------------------------------------------
#
# Every value put into SQL text below is an int computed here (never text from a caller);
# times and segment names travel as typed parameters.


def _address_condition(ranges: Sequence[tuple[int, int]]) -> str:
    return " OR ".join(
        f"({range_condition(column, first, last)})"
        for first, last in ranges
        for column in ("src", "dst")
    )


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _partition_of(day: str) -> str:
    """The partition id (``toYYYYMMDD``) of a segment's day, checked, as it goes into
    SQL text (ClickHouse takes no parameters in a PARTITION clause)."""
    if not _DAY.match(day):
        raise ValidationFailed(
            f"'{day}' is not a segment day (YYYY-MM-DD).",
            hint="Segment names start with their UTC day; check the flow_segments table.",
        )
    return day.replace("-", "")


class ClickHouseStore(common.Aggregations, sealing.BufferedStore):
    """The scale-out ``FlowStore``: segments in a ClickHouse table (server or chdb)."""

    BUCKET_SQL = "intDiv(toUnixTimestamp64Milli(start) - {start}, {step})"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        connection, database = connect(runtime)
        self.connection = connection
        self.database = database
        self.table = f"`{database}`.`{TABLE}`"
        self._closed = False
        try:
            self._create_table()
        except BaseException:
            connection.close()
            raise

    def _create_table(self) -> None:
        found = self.connection.arrow(
            "SELECT count() AS n FROM system.databases WHERE name = {db:String}",
            {"db": self.database},
        )
        if found.column("n")[0].as_py() == 0:
            self.connection.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        self.connection.command(create_table_sql(self.database))
        columns = self.connection.arrow(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {table:String} ORDER BY position",
            {"db": self.database, "table": TABLE},
        )
        have = dict(zip(columns["name"].to_pylist(), columns["type"].to_pylist(), strict=True))
        want = {**COLUMN_TYPES, "segment": "LowCardinality(String)"}
        if have != want:
            differ = sorted(n for n in set(have) | set(want) if have.get(n) != want.get(n))
            raise ConfigError(
                f"the ClickHouse table {self.database}.{TABLE} ({self.connection.where}) "
                f"does not have the flow store's columns: {', '.join(differ)} differ.",
                hint="Point [flows] clickhouse_url at another database, or rename that "
                "table out of the way.",
            )

    # --- sealing -----------------------------------------------------------------------

    def _canonical_sql(self) -> str:
        columns = ", ".join(f"`{n}`" for n in NAMES)
        return (
            f"SELECT {columns} FROM {self.table} WHERE segment = {{segment:String}} "  # noqa: S608
            f"ORDER BY {', '.join(CANONICAL_ORDER)}"
        )

    def _digest(
        self,
        name: str,
        progress: ProgressFn | None = None,
        done: int = 0,
        total: int = 0,
    ) -> tuple[int, str]:
        """Length and SHA-256 of the segment's canonical bytes (see the module's note)."""
        digest = hashlib.sha256()
        size = 0
        for chunk in self.connection.raw(self._canonical_sql(), "RowBinary", {"segment": name}):
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(done + size, total)
        return size, digest.hexdigest()

    def _seal(self, day: int, batch: FlowBatch) -> Segment:
        fields = sealing.index_fields(batch)
        day_name = sealing.day_text(day)
        sealed_at = utcnow()
        name = f"{day_name}/{sealed_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        rows = len(batch)
        table = batch.to_arrow().append_column(
            "segment",
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([name])),
        )
        # One block, so one part: the insert lands whole or not at all.
        settings = {
            "max_insert_block_size": max(rows, 1_048_576),
            "min_insert_block_size_rows": rows,
            "min_insert_block_size_bytes": rows * ROW_BYTES * 4,
            "async_insert": 0,
        }
        try:
            self.connection.insert(self.table, table, settings)
            size, digest = self._digest(name)
            if size != rows * ROW_BYTES:
                raise ClickHouseFailed(
                    f"ClickHouse ({self.connection.where}) holds {size // ROW_BYTES} rows of "
                    f"segment {name} right after inserting {rows}.",
                    hint="Check for a deduplicating or asynchronous insert setting on the "
                    "server's user profile.",
                )
            segment, checkpoint = sealing.record_seal(
                self.runtime,
                name=name,
                day=day_name,
                sha256=digest,
                size=size,
                fields=fields,
                sealed_at=sealed_at,
            )
        except BaseException as exc:
            # Not chained, so not sealed: rows left under this name would show as added.
            try:
                self._delete({day_name: [name]}, whole_days=False)
            except Exception:
                log.exception(
                    "rows of an unsealed segment could not be removed; verify reports them "
                    "as added",
                    segment=name,
                )
            if isinstance(exc, ClickHouseFailed):
                raise StoreWriteFailed(
                    f"flow segment {name} ({rows} records) could not be stored: {exc.message}",
                    hint="The records stay buffered in this process and are written at the "
                    "next flush. " + (exc.hint or ""),
                ) from exc
            raise
        sealing.publish_head(self.runtime, checkpoint)
        log.info("flow segment sealed", segment=name, rows=rows, bytes=size)
        return segment

    def _delete(self, by_day: Mapping[str, Sequence[str]], *, whole_days: bool) -> None:
        """Remove the rows of these segments (a mutation, waited for). With
        ``whole_days`` (expiry, of days long past), a day's partition that holds nothing
        else is dropped instead, which costs nothing."""
        for day, names in sorted(by_day.items()):
            partition = _partition_of(day)
            if whole_days:
                stored = self.connection.arrow(
                    f"SELECT DISTINCT segment FROM {self.table} "  # noqa: S608
                    "WHERE _partition_id = {partition:String}",
                    {"partition": partition},
                )
                if set(stored.column("segment").to_pylist()) <= set(names):
                    self.connection.command(
                        f"ALTER TABLE {self.table} DROP PARTITION ID '{partition}'"
                    )
                    continue
            self.connection.command(
                f"ALTER TABLE {self.table} DELETE IN PARTITION ID '{partition}' "
                "WHERE segment IN {names:Array(String)} SETTINGS mutations_sync = 2",
                {"names": list(names)},
            )

    # --- reading -----------------------------------------------------------------------

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
        planned = self._records_sql(start_ms, end_ms, ips, customers, ports, protos, limit)
        if planned is None:
            return QUERY_SCHEMA.empty_table()
        table = self.connection.arrow(*planned)
        if table.num_rows == 0:
            return QUERY_SCHEMA.empty_table()
        return with_address_texts(table)

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
        planned = self._records_sql(start_ms, end_ms, ips, customers, ports, protos, limit)
        if planned is None:
            return iter(())
        stream = self.connection.batches(*planned)
        # The first piece is read here: a failing query raises to the caller before
        # anything was sent.
        first = next(stream, None)
        if first is None:
            return iter(())
        return self._pieces(first, stream)

    @staticmethod
    def _pieces(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.Table]:
        for batch in itertools.chain([first], rest):
            if batch.num_rows:
                yield with_address_texts(pa.Table.from_batches([batch]))

    def _records_sql(
        self,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str],
        customers: Sequence[int],
        ports: Sequence[int],
        protos: Sequence[int],
        limit: int | None,
    ) -> tuple[str, dict[str, Any]] | None:
        common.check_range(start_ms, end_ms)
        common.check_limit(limit)
        wanted = common.filters(ips=ips, customers=customers, ports=ports, protos=protos)
        scanned = self._scan(start_ms, end_ms, wanted, NAMES)
        if scanned is None:
            return None
        sql, params = scanned
        sql += f" ORDER BY {_QUERY_ORDER}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return sql, params

    def _aggregate_source(
        self, start_ms: int, end_ms: int, wanted: common.Filters, columns: Sequence[str]
    ) -> common.AggregateSource | None:
        scanned = self._scan(start_ms, end_ms, wanted, columns)
        if scanned is None:
            return None
        source, params = scanned
        return source, lambda sql: self.connection.arrow(sql, params)

    def _scan(
        self, start_ms: int, end_ms: int, wanted: common.Filters, columns: Sequence[str]
    ) -> tuple[str, dict[str, Any]] | None:
        """The SQL of the matching rows' ``columns`` and its parameters; None when no
        segment covers the range."""
        common.check_range(start_ms, end_ms)
        with self.runtime.reading() as session:
            names = [row.name for row in self.live_segments(session, start_ms, end_ms)]
        if not names:
            return None
        # Only chained, live segments: rows an intruder added, or rows of expired
        # segments not yet removed, are never answered.
        conditions = [
            "segment IN {segments:Array(String)}",
            "start >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')",
            "start < fromUnixTimestamp64Milli({end:Int64}, 'UTC')",
            *wanted.conditions(),
        ]
        if wanted.ranges:
            conditions.append(f"({_address_condition(wanted.ranges)})")
        selected = ", ".join(f"`{n}`" for n in columns)
        sql = f"SELECT {selected} FROM {self.table} WHERE {' AND '.join(conditions)}"  # noqa: S608
        return sql, {"segments": names, "start": start_ms, "end": end_ms}

    # --- integrity and retention -----------------------------------------------------

    def _stored(self) -> dict[str, int]:
        """Rows per segment name, as ClickHouse holds them now."""
        found = self.connection.arrow(
            f"SELECT segment, count() AS n FROM {self.table} GROUP BY segment"  # noqa: S608
        )
        return dict(zip(found["segment"].to_pylist(), found["n"].to_pylist(), strict=True))

    def verify(
        self, *, since_ms: int | None = None, progress: ProgressFn | None = None
    ) -> StoreVerifyReport:
        since_day = None if since_ms is None else sealing.day_text(since_ms // DAY_MS)

        report = StoreVerifyReport()
        # Stored rows first, chain second: a segment sealed in between is then in the
        # chain we read, not reported as added.
        stored = self._stored()
        settings = self.runtime.settings
        log_files, temporary = integrity.list_files(
            settings.home / settings.flows.store_dir, LOG_DATASETS
        )
        state = integrity.verify_chain(self.runtime, report)

        def wanted(name: str) -> bool:
            # The log datasets' segments are Parquet files, checked below.
            if state.datasets.get(name, FLOWS_DATASET) != FLOWS_DATASET:
                return False
            return since_day is None or name.split("/", 1)[0] >= since_day

        live = {
            name: body
            for name, body in sorted(state.sealed.items())
            if name not in state.expired and wanted(name)
        }
        total = sum(stored[n] * ROW_BYTES for n in live if n in stored)
        gone: list[str] = []
        for name, body in live.items():
            if name not in stored:
                gone.append(name)
                continue
            seq = state.sealed_seq[name]
            size, digest = self._digest(name, progress, report.bytes_hashed, total)
            report.bytes_hashed += size
            if size == 0:
                gone.append(name)  # removed while we looked: an expiry, or not
                continue
            report.segments_checked += 1
            expected = int(body.get("size", -1))
            rows, sealed_rows = size // ROW_BYTES, expected // ROW_BYTES
            problem = None
            if size < expected:
                problem = StoreProblem(
                    "truncated",
                    f"segment {name} was truncated: {rows} rows stored, sealed with {sealed_rows}.",
                    name,
                    seq,
                )
            elif size > expected:
                problem = StoreProblem(
                    "modified",
                    f"segment {name} was modified: it grew from {sealed_rows} to {rows} rows.",
                    name,
                    seq,
                )
            elif digest != body.get("sha256"):
                problem = StoreProblem(
                    "modified",
                    f"segment {name} was modified: as many rows as sealed, but their SHA-256 "
                    "is no longer the one sealed.",
                    name,
                    seq,
                )
            if problem is not None:
                report.problems.append(problem)
        for name in integrity.still_live(self.runtime, gone):
            report.problems.append(
                StoreProblem(
                    "deleted",
                    f"segment {name} was deleted: its rows are gone from {self.database}."
                    f"{TABLE} but it was never expired.",
                    name,
                    state.sealed_seq[name],
                )
            )
        unknown = sorted(n for n in stored if n not in state.sealed and wanted(n))
        for name in integrity.still_unchained(self.runtime, unknown):
            report.problems.append(
                StoreProblem(
                    "added",
                    f"segment {name} was added: {stored[name]} rows in {self.database}.{TABLE} "
                    "carry its name but no chain entry seals it.",
                    name,
                )
            )
        for name in sorted(n for n in stored if n in state.expired and wanted(n)):
            report.notes.append(
                f"segment {name} is expired but its rows are still there; the next expiry "
                "run removes them."
            )
        for name, stored_state in sorted(state.expired_damaged.items()):
            if wanted(name):
                report.notes.append(
                    f"segment {name} was already {stored_state} when it expired (chain entry "
                    f"#{state.expired[name]})."
                )
        integrity.check_files(
            self.runtime,
            report,
            state,
            log_files,
            temporary,
            since_day=since_day,
            progress=progress,
            datasets=LOG_DATASETS,
        )
        return report

    def _contains(self, segment: Segment, scope: HoldScope) -> bool:
        """Does any record of the segment fall in the hold's scope? True when unsure."""
        if scope.everything:
            return True
        conditions = []
        if scope.ranges:
            conditions.append(f"({_address_condition(scope.ranges)})")
        if scope.customers:
            conditions.append(f"({common.customer_condition(scope.customers)})")
        try:
            found = self.connection.arrow(
                f"SELECT count() AS n FROM (SELECT 1 FROM {self.table} "  # noqa: S608
                f"WHERE segment = {{segment:String}} AND ({' OR '.join(conditions)}) LIMIT 1)",
                {"segment": segment.name},
            )
        except ClickHouseFailed as exc:
            log.warning(
                "segment not readable while checking a legal hold; kept",
                segment=segment.name,
                hold=scope.hold_id,
                error=str(exc),
            )
            return True
        return bool(found.column("n")[0].as_py())

    def _stored_state(self, row: FlowSegment) -> str:
        """present, missing or resized (against the rows it was sealed with)."""
        found = self.connection.arrow(
            f"SELECT count() AS n FROM {self.table} WHERE segment = {{segment:String}}",  # noqa: S608
            {"segment": row.name},
        )
        rows = int(found.column("n")[0].as_py())
        if rows == 0:
            return "missing"
        return "present" if rows == row.rows else "resized"

    def _expired_leftovers(self, session: Session, cutoff: int) -> list[str]:
        """Segments expired earlier whose rows are still there (a crash between the
        expiry's commit and the deletion), in partitions old enough to expire."""
        found = self.connection.arrow(
            f"SELECT DISTINCT segment FROM {self.table} "  # noqa: S608
            "WHERE _partition_id <= {partition:String}",
            {"partition": sealing.day_text(cutoff // DAY_MS).replace("-", "")},
        )
        names = found.column("segment").to_pylist()
        if not names:
            return []
        expired = session.scalars(
            select(FlowSegment.name).where(
                FlowSegment.name.in_(names), FlowSegment.expired_at.is_not(None)
            )
        )
        return list(expired)

    def _remove(self, names: Sequence[str]) -> None:
        by_day: dict[str, list[str]] = {}
        for name in names:
            by_day.setdefault(name.split("/", 1)[0], []).append(name)
        try:
            self._delete(by_day, whole_days=True)
        except (ClickHouseFailed, ValidationFailed):
            log.exception("expired flow segments not removed; retried next run", segments=names)

    def expire(self, op: Operation, now_ms: int) -> ExpiryReport:
        return retention.expire_segments(
            self.runtime,
            op,
            now_ms,
            backend="clickhouse",
            contains=self._contains,
            stored_state=self._stored_state,
            leftovers=self._expired_leftovers,
            remove=self._remove,
        )

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self.connection.close()
