"""`hostwarden logs verify`: every sealed segment is re-hashed against the signed segment
chain, and whatever was done to the files or the chain behind hostwarden's back is named.

Each test tampers with real files on disk, or with the database through SQL, as an
intruder with access to the machine would.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.runtime import Runtime
from hostwarden.flows.store import Segment
from hostwarden.flows.store.integrity import HEAD_FILE
from hostwarden.flows.store.parquet import ParquetStore
from tests.flows.store_support import DAY_MS, MAY_1, make_batch

runner = CliRunner()


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def sql(runtime: Runtime, statement: str, **params: Any) -> None:
    with runtime.db.engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.fixture
def store(runtime: Runtime) -> Iterator[ParquetStore]:
    s = ParquetStore(runtime)
    yield s
    s.close()


@pytest.fixture
def sealed(store: ParquetStore) -> list[Segment]:
    """Five segments over three days (1 May twice, 2 May twice, 3 May)."""
    segments = []
    for seed, day in enumerate((0, 0, 1, 1, 2)):
        store.write(make_batch(3_000, day_start_ms=MAY_1 + day * DAY_MS, seed=seed))
        segments.extend(store.flush())
    return segments


def test_an_untouched_store_verifies_clean(
    store: ParquetStore, sealed: list[Segment], env_for_home: dict[str, str]
) -> None:
    seen: list[tuple[int, int]] = []
    report = store.verify(progress=lambda done, total: seen.append((done, total)))
    assert report.ok, report.problems
    assert report.segments_checked == 5
    assert report.chain_entries == 5 and report.checkpoints == 5
    total = sum(s.size for s in sealed)
    assert report.bytes_hashed == total
    assert seen[-1] == (total, total)
    code, out, _ = hw("logs", "verify")
    assert code == 0
    assert "Flow store intact" in out and "5 segments re-hashed" in out
    code, out, _ = hw("logs", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_verify_names_each_segment_modified_truncated_deleted_or_added(
    store: ParquetStore, sealed: list[Segment], env_for_home: dict[str, str]
) -> None:
    modified, truncated, deleted, intact, copied = sealed
    path = store.root / modified.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit pattern, same size
    path.write_bytes(bytes(data))
    with (store.root / truncated.name).open("r+b") as handle:
        handle.truncate(truncated.size - 100)
    (store.root / deleted.name).unlink()
    added = "2026-05-03/20260503T120000-deadbeef.parquet"
    shutil.copy(store.root / copied.name, store.root / added)

    report = store.verify()
    assert not report.ok
    assert report.by_kind("modified") == [modified.name]
    assert report.by_kind("truncated") == [truncated.name]
    assert report.by_kind("deleted") == [deleted.name]
    assert report.by_kind("added") == [added]
    assert {p.kind for p in report.problems} == {"modified", "truncated", "deleted", "added"}

    code, _, err = hw("logs", "verify")
    assert code == 1
    for name in (modified.name, truncated.name, deleted.name, added):
        assert name in err
    assert "modified" in err and "truncated" in err and "deleted" in err and "added" in err
    assert intact.name not in err
    code, out, _ = hw("logs", "verify", "--json")
    assert code == 1
    kinds = {(p["kind"], p["segment"]) for p in json.loads(out)["problems"]}
    assert ("truncated", truncated.name) in kinds


def test_a_segment_that_grew_is_modified(store: ParquetStore, sealed: list[Segment]) -> None:
    with (store.root / sealed[2].name).open("ab") as handle:
        handle.write(b"appended rows")
    assert store.verify().by_kind("modified") == [sealed[2].name]


def test_since_limits_which_days_are_rehashed(
    store: ParquetStore, sealed: list[Segment], env_for_home: dict[str, str]
) -> None:
    (store.root / sealed[0].name).unlink()  # 1 May
    report = store.verify(since_ms=MAY_1 + DAY_MS)
    assert report.ok and report.segments_checked == 3
    code, out, _ = hw("logs", "verify", "--since", "2026-05-02")
    assert code == 0 and "3 segments re-hashed" in out
    code, _, err = hw("logs", "verify", "--since", "2026-05-01")
    assert code == 1 and sealed[0].name in err


def test_an_altered_chain_entry_is_found(
    runtime: Runtime, store: ParquetStore, sealed: list[Segment]
) -> None:
    # Hide a modification by writing the new hash into the chain: the entry no longer
    # matches its own hash.
    sql(
        runtime,
        "UPDATE flow_chain SET body = replace(body, :old, :new) WHERE seq = 2",
        old=sealed[1].sha256,
        new="0" * 64,
    )
    problems = {(p.kind, p.segment) for p in store.verify().problems}
    # The entry no longer matches its hash; and what it now claims matches neither the
    # segment table nor the file.
    assert problems == {
        ("altered", sealed[1].name),
        ("index", sealed[1].name),
        ("modified", sealed[1].name),
    }


def test_a_rehashed_rewritten_chain_breaks_links_and_signatures(
    runtime: Runtime, store: ParquetStore, sealed: list[Segment]
) -> None:
    # A careful intruder recomputes the entry's hash too: the next entry's link and the
    # signed checkpoint both give it away.
    from hostwarden.flows.store.integrity import entry_hash

    with runtime.db.engine.begin() as conn:
        prev, body = conn.execute(
            text("SELECT prev_hash, body FROM flow_chain WHERE seq = 2")
        ).one()
        body = body.replace(sealed[1].sha256, "0" * 64)
        conn.execute(
            text("UPDATE flow_chain SET body = :b, entry_hash = :h WHERE seq = 2"),
            {"b": body, "h": entry_hash(prev, body)},
        )
    kinds = {(p.kind, p.seq) for p in store.verify().problems}
    assert ("broken-link", 3) in kinds
    assert ("rewritten", 2) in kinds


def test_deleted_chain_entries_are_found(
    runtime: Runtime, store: ParquetStore, sealed: list[Segment]
) -> None:
    sql(runtime, "DELETE FROM flow_chain WHERE seq = 3")
    problems = store.verify().problems
    assert ("broken-link", 4) in {(p.kind, p.seq) for p in problems}
    # The segment it sealed now shows as a file nobody chained.
    assert sealed[2].name in {p.segment for p in problems if p.kind == "added"}


def test_removing_the_chain_tail_with_its_checkpoints_shows_through_the_head_file(
    runtime: Runtime, store: ParquetStore, sealed: list[Segment]
) -> None:
    last = sealed[-1]
    sql(runtime, "DELETE FROM flow_chain WHERE seq = 5")
    sql(runtime, "DELETE FROM audit_checkpoints WHERE chain = 'flows' AND seq = 5")
    sql(runtime, "DELETE FROM flow_segments WHERE name = :n", n=last.name)
    (store.root / last.name).unlink()
    problems = store.verify().problems
    assert any(
        p.kind == "broken-link" and HEAD_FILE in p.message and "#5..#5 were deleted" in p.message
        for p in problems
    ), problems


def test_a_forged_checkpoint_is_found(
    runtime: Runtime, store: ParquetStore, sealed: list[Segment]
) -> None:
    sql(
        runtime,
        "UPDATE audit_checkpoints SET signature = :s WHERE chain = 'flows' AND seq = 3",
        s="ab" * 64,
    )
    report = store.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("forged", 3)]
    head = runtime.settings.home / HEAD_FILE
    forged = json.loads(head.read_text()) | {"head_hash": "f" * 64}
    head.write_text(json.dumps(forged))
    assert len([p for p in store.verify().problems if p.kind == "forged"]) == 2


def test_entries_added_outside_hostwarden_are_unsigned(
    runtime: Runtime, store: ParquetStore, sealed: list[Segment]
) -> None:
    from hostwarden.flows.store import integrity

    with runtime.db.session() as session:
        integrity.append(session, "seal", "2026-05-09/forged.parquet", {"size": 1})
    kinds = {p.kind for p in store.verify().problems}
    assert "unsigned" in kinds


def test_hiding_a_deletion_as_an_expiry_in_the_segment_table_is_found(
    runtime: Runtime, store: ParquetStore, sealed: list[Segment]
) -> None:
    victim = sealed[1]
    sql(
        runtime,
        "UPDATE flow_segments SET expired_at = CURRENT_TIMESTAMP, expire_seq = 99 WHERE name = :n",
        n=victim.name,
    )
    (store.root / victim.name).unlink()
    report = store.verify()
    assert report.by_kind("index") == [victim.name]
    assert report.by_kind("deleted") == [victim.name]


def test_leftover_temporary_files_are_noted_not_failed(
    store: ParquetStore, sealed: list[Segment]
) -> None:
    leftover = store.root / "2026-05-01" / ".20260501T000000-00000000.parquet.tmp"
    leftover.write_bytes(b"half a segment")
    report = store.verify()
    assert report.ok
    assert any("leftover temporary file" in note for note in report.notes)


def test_writers_sealing_at_once_keep_one_unbroken_chain(runtime: Runtime) -> None:
    """Collector workers each have their own store; their seals must not fork the chain."""
    import threading

    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        store = ParquetStore(runtime)
        try:
            for i in range(4):
                store.write(make_batch(500, seed=seed * 10 + i))
                store.flush()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = ParquetStore(runtime).verify()
    assert report.ok, report.problems
    assert report.chain_entries == 12 and report.segments_checked == 12
