"""Retention and legal holds: whole segments older than the policy expire, as an audited
and chained event that verify accepts, unless a legal hold that may cover them pins them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import select

from hostwarden.core import audit
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Actor, Runtime, new_request_id, system_actor
from hostwarden.core.scheduler import load_jobs
from hostwarden.errors import Conflict, NotFound, ValidationFailed
from hostwarden.flows import holds, jobs
from hostwarden.flows.models import FlowChainEntry
from hostwarden.flows.store import ExpiryReport, Segment
from hostwarden.flows.store.parquet import ParquetStore
from tests.flows.store_support import DAY_MS, MAY_1, customer_addresses, make_batch
from tests.registry.customer_fixtures import new_customer

#: Expiry runs "now" = 1 May + 200 days; with 180 days kept, the cutoff is 21 May.
NOW = MAY_1 + 200 * DAY_MS
CUTOFF = NOW - 180 * DAY_MS


def legal() -> Actor:
    return Actor("li-legal", ("legal",), new_request_id())


@pytest.fixture
def store(runtime: Runtime) -> Iterator[ParquetStore]:
    s = ParquetStore(runtime)
    yield s
    s.close()


def seal(store: ParquetStore, day_ms: int, prefix: str, seed: int = 1) -> Segment:
    store.write(make_batch(2_000, day_start_ms=day_ms, local=customer_addresses(prefix), seed=seed))
    (segment,) = store.flush()
    return segment


@pytest.fixture
def three(store: ParquetStore) -> tuple[Segment, Segment, Segment]:
    """Two segments past retention (1 and 6 May, different customer ranges) and a recent one."""
    old_a = seal(store, MAY_1, "203.0.113.0")
    old_b = seal(store, MAY_1 + 5 * DAY_MS, "198.51.100.0", seed=2)
    recent = seal(store, NOW - 10 * DAY_MS, "203.0.113.0", seed=3)
    return old_a, old_b, recent


def expire(runtime: Runtime, store: ParquetStore, now_ms: int = NOW) -> ExpiryReport:
    with runtime.operation(system_actor("test")) as op:
        return store.expire(op, now_ms)


def place(runtime: Runtime, **scope: object) -> int:
    scope.setdefault("reason", "public security bureau request")
    with runtime.operation(legal()) as op:
        return holds.place_hold(op, **scope).id  # type: ignore[arg-type]


def test_segments_past_retention_expire_as_an_audited_chained_event(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, recent = three
    report = expire(runtime, store)
    assert report.expired == [old_a.name, old_b.name]
    assert report.rows_expired == 4_000 and report.pinned == {}
    assert report.cutoff_ms == CUTOFF and report.retention_days == 180
    assert not (store.root / old_a.name).exists()
    assert not (store.root / "2026-05-01").exists()  # the emptied day directory went too
    assert (store.root / recent.name).exists()
    with runtime.reading() as session:
        entries = session.scalars(select(FlowChainEntry).order_by(FlowChainEntry.seq)).all()
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "flow_segments.expire")
        ).all()
    assert [(e.kind, e.segment) for e in entries[3:]] == [
        ("expire", old_a.name),
        ("expire", old_b.name),
    ]
    assert f'"sha256":"{old_a.sha256}"' in entries[3].body
    assert len(audited) == 1 and audited[0].actor == "system:test"
    assert old_a.name in audited[0].after and "180-day retention" in audited[0].reason
    # Verify accepts the expired segments' missing files; the audit trail is intact too.
    verified = store.verify()
    assert verified.ok, verified.problems
    assert verified.segments_checked == 1
    assert audit.verify(runtime).ok
    states = {s.name: s.live for s in store.segments()}
    assert states == {old_a.name: False, old_b.name: False, recent.name: True}
    assert store.query(start_ms=MAY_1, end_ms=NOW).num_rows == 2_000
    # Nothing left to expire.
    assert expire(runtime, store).expired == []


def test_a_segment_with_one_record_inside_retention_is_kept(
    runtime: Runtime, store: ParquetStore
) -> None:
    batch = make_batch(1_000, day_start_ms=CUTOFF - DAY_MS)
    np.minimum(batch["end"], CUTOFF - 1, out=batch.columns["end"])
    batch.columns["end"][-1] = CUTOFF  # the last flow ends just at the cutoff
    store.write(batch)
    (edge,) = store.flush()
    assert edge.day == "2026-05-20" and edge.last_ms == CUTOFF
    assert expire(runtime, store).expired == []
    assert expire(runtime, store, NOW + 1).expired == [edge.name]


def test_an_unscoped_hold_pins_what_it_overlaps_until_it_is_released(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    hold_id = place(runtime, start="2026-05-01", end="2026-05-01", case_ref="LE-2026-17")
    report = expire(runtime, store)
    assert report.pinned == {old_a.name: [hold_id]}
    assert report.expired == [old_b.name]
    assert (store.root / old_a.name).exists()
    assert store.verify().ok
    with runtime.operation(legal()) as op:
        holds.release_hold(op, hold_id, reason="case closed")
    assert expire(runtime, store).expired == [old_a.name]
    assert store.verify().ok


def test_a_hold_on_a_customer_address_pins_only_segments_whose_customers_may_hold_it(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    hold_id = place(runtime, start="2026-04-01T00:00:00+08:00", ips=["203.0.113.5"])
    report = expire(runtime, store)
    assert report.pinned == {old_a.name: [hold_id]}
    assert report.expired == [old_b.name]


def test_a_hold_on_a_remote_address_pins_the_segment_it_appears_in(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    # An outside address that talked to a customer in segment B only: outside every
    # customer range, so only a look into the segment finds it.
    table = store.query(start_ms=MAY_1 + 5 * DAY_MS, end_ms=MAY_1 + 6 * DAY_MS, limit=5)
    inbound = [
        s
        for s, side in zip(table["src"].to_pylist(), table["local_side"].to_pylist(), strict=True)
        if side == 2
    ]
    remote = inbound[0]
    assert store.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, ips=[remote]).num_rows == 0
    hold_id = place(runtime, start="2026-04-01", ips=[remote])
    report = expire(runtime, store)
    assert report.pinned == {old_b.name: [hold_id]}
    assert report.expired == [old_a.name]


def test_a_hold_by_customer_pins_segments_with_that_customer(
    runtime: Runtime, store: ParquetStore
) -> None:
    first, second = new_customer(runtime, "Wang Fang"), new_customer(runtime, "Li Lei")
    for day, customer in ((0, first), (1, second)):
        batch = make_batch(1_000, day_start_ms=MAY_1 + day * DAY_MS, customer_of_local=False)
        batch.columns["customer_id"][batch["local_side"] != 0] = customer
        store.write(batch)
    with_first, with_second = store.flush()
    hold_id = place(runtime, start="2026-04-01", end="2026-06-01", customers=[second])
    report = expire(runtime, store)
    assert report.pinned == {with_second.name: [hold_id]}
    assert report.expired == [with_first.name]


def test_a_segment_that_cannot_be_checked_against_a_hold_is_kept(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    (store.root / old_b.name).write_bytes(b"not parquet any more")
    hold_id = place(runtime, start="2026-04-01", ips=["192.0.2.99"])  # in neither
    report = expire(runtime, store)
    assert report.pinned == {old_b.name: [hold_id]}
    assert report.expired == [old_a.name]


def test_a_hold_outside_the_segments_time_pins_nothing(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    place(runtime, start="2026-06-01T00:00:00Z", end="2026-06-02T00:00:00Z")
    assert len(expire(runtime, store).expired) == 2


def test_an_expiry_that_rolls_back_removes_no_file(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, _, _ = three
    with pytest.raises(RuntimeError), runtime.operation(system_actor("test")) as op:
        assert store.expire(op, NOW).expired
        raise RuntimeError("the unit of work fails after the expiry")
    assert (store.root / old_a.name).exists()
    assert all(s.live for s in store.segments())
    assert store.verify().ok


def test_the_file_of_an_expired_segment_left_by_a_crash_goes_at_the_next_run(
    runtime: Runtime,
    store: ParquetStore,
    three: tuple[Segment, Segment, Segment],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_a, _, _ = three
    monkeypatch.setattr(ParquetStore, "_remove_files", lambda self, names: None)
    expire(runtime, store)
    report = store.verify()
    assert report.ok
    assert any(old_a.name in note and "still there" in note for note in report.notes)
    monkeypatch.undo()
    assert expire(runtime, store).expired == []
    assert not (store.root / old_a.name).exists()
    assert store.verify().notes == []


def test_retention_runs_daily_through_the_jobs_entry_point(
    runtime: Runtime, three: tuple[Segment, Segment, Segment]
) -> None:
    found = {job.name: job for job in load_jobs(runtime.settings)}
    job = found["flows.expire"]
    assert job.seconds == 24 * 3600
    assert "180 days" in job.description
    report = jobs.expire_segments(runtime, NOW)
    assert len(report.expired) == 2
    with runtime.reading() as session:
        actors = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "flow_segments.expire")
        ).all()
    assert actors == ["system:retention"]


def test_placing_and_releasing_holds_is_validated_and_audited(runtime: Runtime) -> None:
    with runtime.operation(legal()) as op, pytest.raises(ValidationFailed, match="needs a reason"):
        holds.place_hold(op, start="2026-05-01", reason="  ")
    with runtime.operation(legal()) as op, pytest.raises(ValidationFailed, match="no time zone"):
        holds.place_hold(op, start="2026-05-01T10:00:00", reason="x")
    with runtime.operation(legal()) as op, pytest.raises(ValidationFailed, match="not after"):
        holds.place_hold(op, start="2026-05-02", end="2026-05-01", reason="x")
    with runtime.operation(legal()) as op, pytest.raises(ValidationFailed, match="host bits"):
        holds.place_hold(op, start="2026-05-01", ips=["203.0.113.5/24"], reason="x")
    with (
        runtime.operation(legal()) as op,
        pytest.raises(NotFound, match="no customer with id 4242"),
    ):
        holds.place_hold(op, start="2026-05-01", customers=[4242], reason="x")
    hold_id = place(
        runtime, start="2026-05-01", end="2026-05-03", ips=["203.0.113.5", "2001:db8::/48"]
    )
    with runtime.reading() as session:
        hold = holds.get_hold(session, hold_id)
        assert hold.prefix_list == ["203.0.113.5/32", "2001:db8::/48"]
        assert hold.end_at is not None and hold.end_at.isoformat() == "2026-05-04T00:00:00+00:00"
        assert hold.created_by == "li-legal"
    with runtime.operation(legal()) as op, pytest.raises(ValidationFailed, match="needs a reason"):
        holds.release_hold(op, hold_id, reason="")
    with runtime.operation(legal()) as op:
        holds.release_hold(op, hold_id, reason="case closed")
    with runtime.operation(legal()) as op, pytest.raises(Conflict, match="already released"):
        holds.release_hold(op, hold_id, reason="again")
    with runtime.reading() as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.object_type == "legal_hold")
        ).all()
        assert actions == ["legal_hold.place", "legal_hold.release"]
        assert holds.list_holds(session, active_only=True) == []
        assert [h.id for h in holds.list_holds(session)] == [hold_id]


def test_expiring_a_segment_already_tampered_with_keeps_the_evidence(
    runtime: Runtime, store: ParquetStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    (store.root / old_a.name).unlink()
    with (store.root / old_b.name).open("r+b") as handle:
        handle.truncate(100)
    report = expire(runtime, store)
    assert report.damaged == {old_a.name: "missing", old_b.name: "resized"}
    with runtime.reading() as session:
        bodies = session.scalars(
            select(FlowChainEntry.body).where(FlowChainEntry.kind == "expire")
        ).all()
    assert any('"file":"missing"' in b for b in bodies)
    verified = store.verify()
    assert verified.ok
    assert any(old_a.name in n and "already missing when it expired" in n for n in verified.notes)
