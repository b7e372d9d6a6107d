"""Database sessions: writers serialise, readers never wait for them."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from hostwarden.core.models import User
from hostwarden.core.runtime import Runtime
from tests.conftest import IS_POSTGRES


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite locking; PostgreSQL readers never block")
def test_a_reader_does_not_wait_for_an_open_write_transaction(runtime: Runtime) -> None:
    writer = runtime.db.engine.connect()
    writer.begin()  # BEGIN IMMEDIATE: holds SQLite's write lock until the end
    try:
        started = time.monotonic()
        with runtime.reading() as session:
            users = session.scalar(select(func.count()).select_from(User))
        assert users == 1
        assert time.monotonic() - started < 2, "the reader queued behind the writer"
    finally:
        writer.rollback()
        writer.close()


def test_writes_inside_a_unit_of_work_commit_and_reads_see_them(runtime: Runtime) -> None:
    from hostwarden.core import auth
    from hostwarden.core.runtime import system_actor

    with runtime.operation(system_actor("test")) as op:
        auth.create_user(op, "reader-check", "long-enough-pw", ["noc"])
    with runtime.reading() as session:
        assert auth.get_user_by_name(session, "reader-check").role_list == ["noc"]


@pytest.mark.parametrize("names", [[], ["nobody"], ["admin", "nobody", "reader-2"]])
def test_one_of_finds_the_rows_whose_value_is_in_the_list(
    runtime: Runtime, names: list[str]
) -> None:
    """On PostgreSQL one_of sends the list as one array parameter; on SQLite as IN."""
    from hostwarden.core import auth
    from hostwarden.core.db import one_of
    from hostwarden.core.runtime import system_actor

    with runtime.operation(system_actor("test")) as op:
        auth.create_user(op, "reader-2", "long-enough-pw", ["noc"])
    with runtime.reading() as session:
        found = set(
            session.scalars(select(User.username).where(one_of(session, User.username, names)))
        )
        assert found == {"admin", "reader-2"} & set(names)


def test_next_ids_are_new_and_an_insert_with_them_takes_them(runtime: Runtime) -> None:
    from sqlalchemy import insert

    from hostwarden.cases.models import AbuseReport
    from hostwarden.core.db import next_ids
    from hostwarden.core.runtime import system_actor
    from hostwarden.core.timeutil import utcnow

    table = AbuseReport.__table__
    row = {
        "sha256": "0" * 64,
        "size": 1,
        "channel": "api",
        "reporter": "",
        "subject": "",
        "message_id": "",
        "parser": "none",
        "status": "unparsed",
        "notes": "[]",
        "received_at": utcnow(),
    }
    with runtime.operation(system_actor("test")) as op:
        assert next_ids(op.session, table, 0) == []  # type: ignore[arg-type]
        first = next_ids(op.session, table, 3)  # type: ignore[arg-type]
        assert len(set(first)) == 3 and first == sorted(first)
        op.session.execute(insert(table), [{**row, "id": i} for i in first])
    with runtime.operation(system_actor("test")) as op:
        after = next_ids(op.session, table, 2)  # type: ignore[arg-type]
        assert min(after) > max(first)
        # A row inserted without an id after them gets a new one too.
        op.session.execute(insert(table), [row])
        newest = op.session.scalar(select(func.max(table.c.id)))
    assert newest is not None and newest > max(first)


def _case_row(case_id: int, customer: int, reference: str, when: Any) -> dict[str, Any]:
    return {
        "id": case_id,
        "reference": reference,
        "customer_id": customer,
        "instance_id": None,
        "category": "spam",
        "subject_key": "ip:192.0.2.1",
        "subject": "192.0.2.1",
        "state": "new",
        "events": 3,
        "duplicates": 0,
        "first_event_at": when[0],
        "last_event_at": when[1],
        "opened_at": when[2],
        "state_changed_at": when[2],
        "activity_at": when[2],
        "updated_at": when[2],
        "deadline_at": None,
        "authority_required": True,
        "authority_reported": None,
    }


def test_insert_rows_stores_exactly_what_a_core_insert_stores(runtime: Runtime) -> None:
    """The same rows through insert_rows and through session.execute(insert(...)) are
    the same in the database, value by value as the driver reads them back: times in
    other zones, equal instants in two zones, microseconds, None and booleans."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import insert, text

    from hostwarden.cases.models import AbuseCase
    from hostwarden.core.db import insert_rows, next_ids
    from hostwarden.core.runtime import system_actor
    from tests.registry.customer_fixtures import new_customer

    table = AbuseCase.__table__
    customer = new_customer(runtime)
    shanghai = timezone(timedelta(hours=8))
    base = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    moments = [
        (base, base + timedelta(seconds=1), base),
        # the same instant in another zone, and a naive-looking wall time in Shanghai
        (base.astimezone(shanghai), base.astimezone(shanghai), base),
        (datetime(2026, 5, 1, 18, 0, tzinfo=shanghai), base, base + timedelta(microseconds=1)),
    ]
    with runtime.operation(system_actor("test")) as op:
        ids = next_ids(op.session, table, 2 * len(moments))  # type: ignore[arg-type]
        core = [_case_row(ids[i], customer, f"T-C-{i}", m) for i, m in enumerate(moments)]
        ours = [
            _case_row(ids[len(moments) + i], customer, f"T-R-{i}", m) for i, m in enumerate(moments)
        ]
        ours[0]["authority_required"] = core[0]["authority_required"] = False
        op.session.execute(insert(table), core)
        insert_rows(op.session, table, ours)  # type: ignore[arg-type]
    with runtime.reading() as session:
        names = [c.name for c in table.c if c.name not in ("id", "reference")]
        # text() without column types: the values as the driver reads them
        raw = session.execute(
            text(
                f"SELECT reference, {', '.join(names)} FROM abuse_cases "
                "WHERE reference LIKE :prefix ORDER BY reference"
            ),
            {"prefix": "T-%"},
        )
        stored = {row[0]: row[1:] for row in raw}
    for i in range(len(moments)):
        assert stored[f"T-R-{i}"] == stored[f"T-C-{i}"], f"row {i} differs"
    assert len(stored) == 2 * len(moments)


def test_insert_rows_skips_rows_whose_key_exists_and_says_what_a_row_lacks(
    runtime: Runtime,
) -> None:
    from sqlalchemy import select

    from hostwarden.cases.models import RawReport
    from hostwarden.core.db import insert_rows
    from hostwarden.core.runtime import system_actor
    from hostwarden.core.timeutil import utcnow

    table = RawReport.__table__
    now = utcnow()
    row = {"sha256": "a" * 64, "size": 3, "data": b"abc", "stored_at": now}
    with runtime.operation(system_actor("test")) as op:
        insert_rows(op.session, table, [row], skip_conflicts_on=["sha256"])  # type: ignore[arg-type]
        insert_rows(  # type: ignore[arg-type]
            op.session,
            table,
            [{**row, "data": b"xyz"}, {**row, "sha256": "b" * 64}],
            skip_conflicts_on=["sha256"],
        )
        with pytest.raises(ValueError, match="must give stored_at"):
            # a computed default (the time) is the caller's to give
            insert_rows(op.session, table, [{"sha256": "c" * 64, "size": 0, "data": b""}])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="has no column colour"):
            insert_rows(op.session, table, [{**row, "colour": "red"}])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="must give the columns"):
            insert_rows(op.session, table, [row, {"sha256": "d" * 64}])  # type: ignore[arg-type]
    with runtime.reading() as session:
        kept = dict(session.execute(select(table.c.sha256, table.c.data)).all())
    assert kept == {"a" * 64: b"abc", "b" * 64: b"abc"}


@pytest.mark.skipif(IS_POSTGRES, reason="SQLite's write-ahead log")
def test_sqlite_connections_use_the_write_ahead_log_and_its_checkpoint_interval(
    runtime: Runtime,
) -> None:
    from hostwarden.core.db import SQLITE_CHECKPOINT_PAGES

    with runtime.reading() as session:
        connection = session.connection()
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == SQLITE_CHECKPOINT_PAGES
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
