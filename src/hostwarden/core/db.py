"""Database engine, sessions and column types shared by every domain package."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Engine,
    MetaData,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from hostwarden.core.timeutil import as_utc
from hostwarden.errors import HostwardenError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite stores text; keep it naive UTC so comparisons between stored values work.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def one_of(
    session: Session,
    column: ColumnElement[Any] | QueryableAttribute[Any],
    values: Sequence[Any],
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(:values)``, one array parameter.
    A list of hundreds of placeholders costs psycopg a parse of the whole statement at each
    execution (it keeps parsed statements only up to 50 parameters), which made the
    intake's lookups by the batch's keys slower than the lookups themselves."""
    if isinstance(column, QueryableAttribute):
        column = column.expression
    if session.get_bind().dialect.name == "postgresql":
        values_type = postgresql.ARRAY(column.type)
        return column == any_(bindparam(None, list(values), type_=values_type))
    return column.in_(values)


def next_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` new ids for rows of ``table`` (an integer ``id`` primary key), taken
    before the rows are inserted, so that what holds an id (a case's reference, the
    events of a report) is written by the same plain insert instead of RETURNING and a
    second UPDATE. PostgreSQL: from the column's sequence. SQLite: after the largest id,
    as SQLite itself numbers rows; a writing session holds the write lock from its first
    statement (BEGIN IMMEDIATE), so no other writer can take the same ids."""
    if count <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": count},
        )
        return sorted(int(value) for (value,) in rows)
    last = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(last + 1, last + 1 + count))


#: Compiled inserts of ``insert_rows``: (dialect, table, columns, conflict columns) →
#: the compiled statement.
_INSERTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...] | None], _Insert] = {}


@dataclass(frozen=True)
class _Insert:
    sql: str
    #: Parameter names in the statement's order; positional: parameters go as tuples.
    names: tuple[str, ...]
    positional: bool
    #: Each parameter's bind processor for the dialect, or None.
    processors: tuple[Callable[[Any], Any] | None, ...]
    #: Columns the rows leave out and their constant defaults.
    defaults: dict[str, Any]


def _compiled_insert(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    skip_conflicts_on: tuple[str, ...] | None,
) -> _Insert:
    key = (dialect.name, table.name, columns, skip_conflicts_on)
    found = _INSERTS.get(key)
    if found is not None:
        return found
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
    # Constant defaults are filled in as SQLAlchemy would; a computed one (a time, a
    # callable) would be called per row, so the rows must give it.
    defaults = {
        c.key: c.default
        for c in table.c
        if c.key not in columns and c.default is not None and c.default.is_scalar
    }
    computed = [
        c.key
        for c in table.c
        if c.key not in columns and c.default is not None and c.key not in defaults
    ]
    if computed:
        raise ValueError(f"rows for {table.name} must give {', '.join(computed)}")
    statement: Any = insert(table)
    if skip_conflicts_on is not None:
        dialect_insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = dialect_insert(table).on_conflict_do_nothing(
            index_elements=list(skip_conflicts_on)
        )
    compiled = statement.compile(dialect=dialect, column_keys=[*columns, *defaults])
    names = tuple(compiled.positiontup or ()) if compiled.positional else (*columns, *defaults)
    if sorted(names) != sorted([*columns, *defaults]):
        raise ValueError(f"unexpected parameters {names} for the columns {columns}")
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    found = _INSERTS[key] = _Insert(
        str(compiled),
        names,
        compiled.positional,
        processors,
        {name: getattr(default, "arg", None) for name, default in defaults.items()},
    )
    return found


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    skip_conflicts_on: Sequence[str] | None = None,
) -> None:
    """``INSERT`` every row (all with the same keys; a column whose default is computed,
    such as a time, must be among them) in one executemany, in the session's transaction; with
    ``skip_conflicts_on``, a row whose key exists already is skipped (ON CONFLICT DO
    NOTHING).

    Stores exactly what ``session.execute(insert(table), rows)`` stores: each value goes
    through its column type's own bind processor for the dialect (``UtcDateTime``'s
    conversion included). Written by hand because SQLAlchemy's executemany builds and
    processes a parameter set per row in Python, which cost the report intake more than
    the driver's inserts did (about 10 % of a report's whole intake); here the statement
    is compiled once per table and column set, and a time that recurs in the rows (the
    batch's own) is converted once per call."""
    if not rows:
        return
    columns = tuple(rows[0])
    compiled = _compiled_insert(
        session.get_bind().dialect,
        table,
        columns,
        tuple(skip_conflicts_on) if skip_conflicts_on is not None else None,
    )
    names, defaults = compiled.names, compiled.defaults
    # Per processed column: its place, its processor and the times it has converted (by
    # value and zone, so that equal instants in other zones are converted on their own).
    converters = [
        (i, proc, dict[tuple[datetime, Any], Any]())
        for i, proc in enumerate(compiled.processors)
        if proc is not None
    ]
    params: list[Any] = []
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"every row for {table.name} must give the columns {columns}")
        if defaults:
            row = {**defaults, **row}
        values = [row[name] for name in names]
        for i, proc, seen in converters:
            value = values[i]
            if isinstance(value, datetime):
                key = (value, value.tzinfo)
                converted = seen.get(key, seen)
                if converted is seen:
                    converted = seen[key] = proc(value)
                values[i] = converted
            else:
                values[i] = proc(value)
        params.append(
            tuple(values) if compiled.positional else dict(zip(names, values, strict=True))
        )
    session.connection().exec_driver_sql(compiled.sql, params)


#: Execution option marking connections of sessions that only read.
READ_ONLY_OPTION = "hostwarden_read_only"


class DatabaseUnavailable(HostwardenError):
    code = "database-unavailable"
    title = "Database unavailable"
    status = 503


#: Pages of write-ahead log (4 KiB each) after which a commit checkpoints (see below).
SQLITE_CHECKPOINT_PAGES = 10_000


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint (copying the write-ahead log into the database, then fsync) every
        # ~40 MB of log instead of SQLite's 4 MB: pages written again and again (index
        # pages, a table's last page) are copied once per checkpoint, not ten times.
        # Measured on the report intake at 20,000 reports: the commit's share fell from
        # 123 to 65 µs a report. The log then takes up to ~40 MB on disk.
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock at the start, so a transaction that reads
        # and then writes (the audit chain head, for one) cannot fail half-way with
        # SQLITE_BUSY_SNAPSHOT when another thread committed in between. Sessions opened
        # for reading only take no lock, so readers never queue behind a writer (WAL).
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
        _sqlite_setup(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


class Database:
    """An engine plus its session factory; one per process (app, CLI call, test)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def read_session(self) -> Session:
        """A session that must only read: on SQLite it takes no write lock."""
        return self._read_sessions()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database: {exc.orig}",
                hint="Check database.url and that the server is running.",
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()
