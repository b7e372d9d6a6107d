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
