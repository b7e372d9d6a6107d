"""Database sessions: writers serialise, readers never wait for them."""

from __future__ import annotations

import time

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
