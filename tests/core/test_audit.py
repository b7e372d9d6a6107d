"""The audit trail is a signed hash chain: any change made behind hostwarden's back shows.

Every tampering test edits the database directly with SQL, as an intruder with database
access would, and then asks ``audit.verify`` what happened and to which entry first.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from hostwarden.core import audit
from hostwarden.core.audit import GENESIS, HEAD_FILE, checkpoint_message, entry_hash
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Actor, Runtime, system_actor
from hostwarden.core.signing import ChainSigner
from hostwarden.core.timeutil import isoformat, utcnow

# `hostwarden init` writes entry #1 (the first admin); the fixture below adds the rest.
CHAIN_LENGTH = 8


@dataclass(frozen=True)
class Row:
    seq: int
    prev_hash: str
    entry_hash: str


def sql(runtime: Runtime, statement: str, **params: Any) -> None:
    with runtime.db.engine.begin() as conn:
        conn.execute(text(statement), params)


def rows(runtime: Runtime) -> list[Row]:
    with runtime.db.engine.connect() as conn:
        result = conn.execute(
            text("SELECT seq, prev_hash, entry_hash FROM audit_entries ORDER BY seq")
        )
        return [Row(*r) for r in result]


def record(runtime: Runtime, count: int, *, component: str = "test") -> None:
    """``count`` units of work, one audit entry (and one signed checkpoint) each."""
    for i in range(count):
        with runtime.operation(system_actor(component)) as op:
            op.audit("test.step", "thing", i, after={"step": i}, reason=f"step {i}")


def head_file(runtime: Runtime) -> Path:
    return runtime.settings.home / HEAD_FILE


def first_problem(runtime: Runtime) -> audit.Problem:
    report = audit.verify(runtime)
    assert not report.ok, "verify found nothing wrong"
    first = report.first
    assert first is not None
    return first


def forged_entry(seq: int, prev_hash: str, **fields: str) -> dict[str, Any]:
    """A row as an intruder would write it: a correct hash over made-up content."""
    values: dict[str, Any] = {
        "seq": seq,
        "ts": isoformat(utcnow()),
        "actor": "mallory",
        "role": "admin",
        "action": "user.update",
        "object_type": "user",
        "object_id": "1",
        "before": "null",
        "after": '{"roles":["admin"]}',
        "reason": "nothing to see",
        "request_id": "forged",
        "prev_hash": prev_hash,
    }
    values.update(fields)
    transient = AuditEntry(**values, entry_hash="")
    values["entry_hash"] = entry_hash(prev_hash, transient)
    return values


def insert_row(runtime: Runtime, values: dict[str, Any]) -> None:
    columns = ", ".join(f'"{c}"' for c in values)
    placeholders = ", ".join(f":{c}" for c in values)
    sql(runtime, f"INSERT INTO audit_entries ({columns}) VALUES ({placeholders})", **values)


@pytest.fixture
def chain(runtime: Runtime) -> list[Row]:
    record(runtime, CHAIN_LENGTH - 1)
    stored = rows(runtime)
    assert [r.seq for r in stored] == list(range(1, CHAIN_LENGTH + 1))
    return stored


# --- an intact chain -----------------------------------------------------------------


def test_an_untouched_chain_verifies_with_its_entries_checkpoints_and_head(
    runtime: Runtime, chain: list[Row]
) -> None:
    report = audit.verify(runtime)

    assert report.ok, report.problems
    assert report.first is None
    assert report.entries == CHAIN_LENGTH
    assert report.checkpoints == CHAIN_LENGTH  # one signed checkpoint per unit of work
    assert report.head_seq == CHAIN_LENGTH
    assert report.head_hash == chain[-1].entry_hash
    assert report.as_dict()["ok"] is True
    assert report.as_dict()["first_problem"] is None


def test_entries_link_to_their_predecessor_starting_from_genesis(chain: list[Row]) -> None:
    assert chain[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(chain):
        assert after.prev_hash == before.entry_hash


def test_the_head_file_holds_the_newest_signed_head(runtime: Runtime, chain: list[Row]) -> None:
    head = json.loads(head_file(runtime).read_text(encoding="utf-8"))

    assert head["seq"] == CHAIN_LENGTH
    assert head["head_hash"] == chain[-1].entry_hash
    message = checkpoint_message(head["chain"], head["seq"], head["head_hash"], head["signed_at"])
    assert runtime.signer.verify(head["signature"], message)


def test_a_unit_of_work_with_several_entries_is_sealed_by_one_checkpoint(
    runtime: Runtime,
) -> None:
    with runtime.operation(system_actor("test")) as op:
        for i in range(3):
            op.audit("test.step", "thing", i)

    report = audit.verify(runtime)
    assert report.ok, report.problems
    assert report.entries == 4
    assert report.checkpoints == 2


def test_a_failed_unit_of_work_leaves_neither_entries_nor_checkpoints(
    runtime: Runtime,
) -> None:
    before = audit.verify(runtime)
    with pytest.raises(RuntimeError), runtime.operation(system_actor("test")) as op:
        op.audit("test.step", "thing", 1)
        raise RuntimeError("boom")

    after = audit.verify(runtime)
    assert after.ok, after.problems
    assert (after.entries, after.checkpoints) == (before.entries, before.checkpoints)


# --- tampering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [("reason", "approved by the director"), ("actor", "someone-else"), ("after", "{}")],
)
def test_altering_a_field_of_an_entry_is_named_in_verify(
    runtime: Runtime, chain: list[Row], column: str, value: str
) -> None:
    sql(runtime, f'UPDATE audit_entries SET "{column}" = :v WHERE seq = 4', v=value)

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (4, "altered")
    assert "#4" in first.message


def test_altering_an_entry_and_rehashing_the_rest_is_caught_by_the_signed_checkpoints(
    runtime: Runtime, chain: list[Row]
) -> None:
    # The intruder recomputes every hash from #3 on, so the links alone look intact.
    with runtime.db.engine.connect() as conn:
        stored = conn.execute(
            text(
                'SELECT seq, ts, actor, role, action, object_type, object_id, "before", '
                '"after", reason, request_id FROM audit_entries ORDER BY seq'
            )
        ).mappings()
        entries = [dict(r) for r in stored]
    entries[2]["reason"] = "rewritten"
    prev = chain[1].entry_hash
    for values in entries[2:]:
        new_hash = entry_hash(prev, AuditEntry(**values, prev_hash=prev, entry_hash=""))
        sql(
            runtime,
            "UPDATE audit_entries SET reason = :reason, prev_hash = :prev, entry_hash = :h "
            "WHERE seq = :seq",
            reason=values["reason"],
            prev=prev,
            h=new_hash,
            seq=values["seq"],
        )
        prev = new_hash

    report = audit.verify(runtime)
    first = report.first
    assert first is not None
    assert (first.seq, first.kind) == (3, "altered")
    assert (CHAIN_LENGTH, "altered") in {(p.seq, p.kind) for p in report.problems}
    # Genuinely signed entries are not also reported as added outside hostwarden.
    assert "inserted" not in {p.kind for p in report.problems}


def test_deleting_an_entry_is_named_in_verify(runtime: Runtime, chain: list[Row]) -> None:
    sql(runtime, "DELETE FROM audit_entries WHERE seq = 5")

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (5, "deleted")
    assert "#5" in first.message


def test_deleting_the_last_entries_with_their_checkpoints_is_revealed_by_the_head_file(
    runtime: Runtime, chain: list[Row]
) -> None:
    sql(runtime, "DELETE FROM audit_entries WHERE seq > 6")
    sql(runtime, "DELETE FROM audit_checkpoints WHERE seq > 6")

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (7, "deleted")
    assert str(head_file(runtime)) in first.message


def test_deleting_the_last_entries_but_not_their_checkpoints_is_named_in_verify(
    runtime: Runtime, chain: list[Row]
) -> None:
    head_file(runtime).unlink()  # the database alone must show it too
    sql(runtime, "DELETE FROM audit_entries WHERE seq > 6")

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (7, "deleted")


def test_inserting_an_entry_in_the_middle_is_named_in_verify(
    runtime: Runtime, chain: list[Row]
) -> None:
    # Make room at #4 (two steps, so no unique constraint sees a duplicate seq on the way).
    sql(runtime, "UPDATE audit_entries SET seq = -seq WHERE seq >= 4")
    sql(runtime, "UPDATE audit_entries SET seq = 1 - seq WHERE seq < 0")
    insert_row(runtime, forged_entry(4, chain[2].entry_hash))

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (4, "inserted")
    assert "#4" in first.message


def test_appending_an_entry_without_a_signed_checkpoint_is_named_in_verify(
    runtime: Runtime, chain: list[Row]
) -> None:
    insert_row(runtime, forged_entry(CHAIN_LENGTH + 1, chain[-1].entry_hash))

    report = audit.verify(runtime)
    assert report.entries == CHAIN_LENGTH + 1
    first = report.first
    assert first is not None
    assert (first.seq, first.kind) == (CHAIN_LENGTH + 1, "inserted")


def test_swapping_two_adjacent_entries_is_named_as_reordered(
    runtime: Runtime, chain: list[Row]
) -> None:
    # Swap the contents of #3 and #4 and keep the numbers (via a temporary seq value).
    sql(runtime, "UPDATE audit_entries SET seq = -1 WHERE seq = 3")
    sql(runtime, "UPDATE audit_entries SET seq = 3 WHERE seq = 4")
    sql(runtime, "UPDATE audit_entries SET seq = 4 WHERE seq = -1")

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (3, "reordered")
    assert "#3" in first.message


def test_a_changed_checkpoint_signature_is_named_as_forged(
    runtime: Runtime, chain: list[Row]
) -> None:
    sql(
        runtime,
        "UPDATE audit_checkpoints SET signature = :s WHERE seq = 5",
        s="ab" * 64,
    )

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (5, "forged")


def test_a_changed_checkpoint_head_hash_is_named_as_forged(
    runtime: Runtime, chain: list[Row]
) -> None:
    sql(runtime, "UPDATE audit_checkpoints SET head_hash = :h WHERE seq = 5", h="f" * 64)

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (5, "forged")


@pytest.mark.parametrize("claim_our_key_id", [False, True])
def test_a_checkpoint_signed_by_another_key_is_named_as_forged(
    runtime: Runtime, chain: list[Row], claim_our_key_id: bool
) -> None:
    other = ChainSigner(Ed25519PrivateKey.generate())
    signed_at = isoformat(utcnow())
    head = chain[5].entry_hash
    signature = other.sign(checkpoint_message("audit", 6, head, signed_at))
    key_id = runtime.signer.key_id if claim_our_key_id else other.key_id
    sql(
        runtime,
        "UPDATE audit_checkpoints SET signed_at = :at, key_id = :k, signature = :s WHERE seq = 6",
        at=signed_at,
        k=key_id,
        s=signature,
    )

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (6, "forged")


def test_an_appended_entry_with_a_checkpoint_signed_by_another_key_is_caught(
    runtime: Runtime, chain: list[Row]
) -> None:
    values = forged_entry(CHAIN_LENGTH + 1, chain[-1].entry_hash)
    insert_row(runtime, values)
    other = ChainSigner(Ed25519PrivateKey.generate())
    signed_at = isoformat(utcnow())
    message = checkpoint_message("audit", CHAIN_LENGTH + 1, values["entry_hash"], signed_at)
    sql(
        runtime,
        "INSERT INTO audit_checkpoints (chain, seq, head_hash, signed_at, key_id, signature) "
        "VALUES ('audit', :seq, :h, :at, :k, :s)",
        seq=CHAIN_LENGTH + 1,
        h=values["entry_hash"],
        at=signed_at,
        k=other.key_id,
        s=other.sign(message),
    )

    report = audit.verify(runtime)
    kinds = {(p.seq, p.kind) for p in report.problems}
    assert (CHAIN_LENGTH + 1, "forged") in kinds
    assert (CHAIN_LENGTH + 1, "inserted") in kinds


def test_a_tampered_head_file_is_named_as_forged(runtime: Runtime, chain: list[Row]) -> None:
    path = head_file(runtime)
    head = json.loads(path.read_text(encoding="utf-8"))
    head["head_hash"] = chain[2].entry_hash
    path.write_text(json.dumps(head), encoding="utf-8")

    first = first_problem(runtime)
    assert (first.seq, first.kind) == (CHAIN_LENGTH, "forged")


def test_an_unreadable_head_file_is_reported(runtime: Runtime, chain: list[Row]) -> None:
    head_file(runtime).write_text("{not json", encoding="utf-8")

    first = first_problem(runtime)
    assert first.kind == "forged"


# --- what is stored ------------------------------------------------------------------


def test_audit_entries_store_personal_data_masked(runtime: Runtime) -> None:
    with runtime.operation(system_actor("test")) as op:
        op.audit(
            "customer.update",
            "customer",
            7,
            before={"phone": "+86 139 8765 4321"},
            after={
                "id_number": "11010519491231002X",
                "phone": "13812345678",
                "contacts": [{"email": "zhang.wei@example.cn"}],
            },
            reason="customer 11010519491231002X called from 13812345678",
        )

    with runtime.db.engine.connect() as conn:
        stored = conn.execute(
            text(
                'SELECT "before", "after", reason FROM audit_entries '
                "WHERE action = 'customer.update'"
            )
        ).one()
    raw = " ".join(stored)
    for secret in ("11010519491231002X", "13812345678", "8765 4321", "zhang.wei@"):
        assert secret not in raw
    after = json.loads(stored[1])
    assert after["id_number"] == "110105********002X"
    assert after["phone"] == "138****5678"
    assert after["contacts"][0]["email"] == "z***@example.cn"
    assert "110105********002X" in stored[2]
    assert audit.verify(runtime).ok


def test_entries_record_actor_roles_and_request_id(runtime: Runtime) -> None:
    actor = Actor("alice", ("abuse", "noc"), request_id="req-42", user_id=1)
    with runtime.operation(actor) as op:
        op.audit("test.step", "thing", "x1", before={"a": 1}, after={"a": 2}, reason="why")

    with runtime.reading() as session:
        entries, total = audit.list_entries(session, action="test.step")
        assert total == 1
        entry = audit.entry_dict(entries[0])
    assert entry["actor"] == "alice"
    assert entry["role"] == "abuse,noc"
    assert entry["request_id"] == "req-42"
    assert (entry["object_type"], entry["object_id"]) == ("thing", "x1")
    assert (entry["before"], entry["after"], entry["reason"]) == ({"a": 1}, {"a": 2}, "why")


def test_export_yields_entries_in_chain_order_with_hashes_within_the_window(
    runtime: Runtime,
) -> None:
    record(runtime, 2, component="early")
    since = utcnow()
    record(runtime, 3, component="inside")
    until = utcnow()
    record(runtime, 2, component="late")

    with runtime.reading() as session:
        exported = list(audit.iter_export(session, since, until))
        everything = list(audit.iter_export(session, None, None))

    assert [e["actor"] for e in exported] == ["system:inside"] * 3
    assert [e["seq"] for e in exported] == [4, 5, 6]
    assert exported[0]["prev_hash"] == everything[2]["entry_hash"]
    for before, after in itertools.pairwise(exported):
        assert after["prev_hash"] == before["entry_hash"]
    assert [e["seq"] for e in everything] == list(range(1, 9))
    assert all(isoformat(since) <= e["ts"] < isoformat(until) for e in exported)


def test_export_with_only_a_start_runs_to_the_end(runtime: Runtime) -> None:
    record(runtime, 2)
    since = utcnow()
    record(runtime, 2)

    with runtime.reading() as session:
        exported = list(audit.iter_export(session, since, None))
        empty = list(audit.iter_export(session, since + timedelta(days=1), None))

    assert [e["seq"] for e in exported] == [4, 5]
    assert empty == []


# --- concurrency ---------------------------------------------------------------------


def test_concurrent_appends_leave_a_valid_chain_without_gaps(runtime: Runtime) -> None:
    threads_count, per_thread = 4, 10
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with runtime.operation(system_actor(f"worker{n}")) as op:
                    op.audit("test.concurrent", "thing", f"{n}-{i}", after={"i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    total = 1 + threads_count * per_thread
    assert [r.seq for r in rows(runtime)] == list(range(1, total + 1))
    report = audit.verify(runtime)
    assert report.ok, report.problems
    assert report.entries == total
    assert report.checkpoints == total
    head = json.loads(head_file(runtime).read_text(encoding="utf-8"))
    assert head["seq"] == total, "the head file fell behind the newest checkpoint"


def test_entries_rolled_back_to_a_savepoint_leave_the_chain_signed_once(
    runtime: Runtime,
) -> None:
    with runtime.operation(system_actor("test")) as op:
        op.audit("test.kept", "thing", 1)
    with runtime.operation(system_actor("test")) as op:
        savepoint = op.session.begin_nested()
        op.audit("test.dropped", "thing", 2)
        savepoint.rollback()
    report = audit.verify(runtime)
    assert report.ok, report.problems
    assert report.head_seq == report.entries
