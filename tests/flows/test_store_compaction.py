"""Day compaction: a finished day's segments become one segment and a companion file
ordered by the remote address, with the same answers, a chain that verifies, and the
old segments untouched whenever something goes wrong."""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Actor, Runtime, new_request_id, system_actor
from hostwarden.core.scheduler import load_jobs
from hostwarden.flows import holds, jobs
from hostwarden.flows.schema import LOCAL_DST, FlowBatch
from hostwarden.flows.store import StoreWriteFailed, integrity
from hostwarden.flows.store import files as files_store
from hostwarden.flows.store.parquet import CompactionReport, ParquetStore
from tests.flows.store_support import DAY_MS, MAY_1, customer_addresses, make_batch

DAY = "2026-05-01"
#: 3 May 03:00 UTC: 1 May ended 27 hours ago, past the 26-hour grace.
NOW = MAY_1 + 2 * DAY_MS + 3 * 3_600_000


@pytest.fixture
def store(runtime: Runtime) -> Iterator[ParquetStore]:
    s = ParquetStore(runtime)
    yield s
    s.close()


@pytest.fixture
def day(store: ParquetStore) -> FlowBatch:
    """1 May in three segments, as a collector seals a day (the same addresses in each)."""
    parts = [make_batch(3_000, day_start_ms=MAY_1, seed=seed) for seed in (1, 2, 3)]
    for part in parts:
        store.write(part)
        store.flush()
    return FlowBatch.concat(parts)


def compact(runtime: Runtime, store: ParquetStore, day: str = DAY) -> CompactionReport:
    with runtime.operation(system_actor("test")) as op:
        return store.compact(op, day)


def text(low: int) -> str:
    return str(ipaddress.IPv4Address(low & 0xFFFF_FFFF))


def answers(store: ParquetStore, batch: FlowBatch) -> dict[str, Any]:
    """The same questions, before and after: a customer (local) address, a remote one,
    prefixes on each side, a customer, a port, and top talkers and time series."""
    on_dst = batch["local_side"] == LOCAL_DST
    remote = text(int(np.where(on_dst, batch["src_lo"], batch["dst_lo"])[7]))
    local = text(int(customer_addresses()[5]))
    end = MAY_1 + DAY_MS
    wanted: dict[str, dict[str, Any]] = {
        "local": {"ips": [local]},
        "remote": {"ips": [remote]},
        "local prefix": {"ips": ["203.0.113.0/29"]},
        "remote prefix": {"ips": [remote.rsplit(".", 2)[0] + ".0.0/16"]},
        "both": {"ips": [local, remote, "203.0.113.0/30"]},
        "customer": {"customers": [3]},
        "port": {"ports": [53], "ips": [remote.rsplit(".", 1)[0] + ".0/24", local]},
    }
    found: dict[str, Any] = {}
    for label, filters in wanted.items():
        table = store.query(start_ms=MAY_1, end_ms=end, **filters)
        found[label] = sorted(tuple(sorted(row.items())) for row in table.to_pylist())
        top = store.top_talkers(start_ms=MAY_1, end_ms=end, **filters)
        found[f"{label} top"] = top.to_pylist()
        series = store.time_series(start_ms=MAY_1, end_ms=end, step_ms=3_600_000, **filters)
        found[f"{label} series"] = series.to_pylist()
    assert found["remote"] and found["local"] and found["remote prefix"]
    return found


def day_files(store: ParquetStore) -> list[str]:
    return sorted(p.name for p in (store.root / DAY).iterdir())


def test_a_compacted_day_gives_the_same_answers_from_one_segment_and_its_companion(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    before = answers(store, day)
    assert len(day_files(store)) == 3
    report = compact(runtime, store)
    assert report.skipped is None and len(report.replaced) == 3 and report.rows == len(day)
    assert answers(store, day) == before
    live = [s for s in store.segments() if s.live]
    assert [s.name for s in live] == [report.segment]
    assert day_files(store) == sorted(
        [live[0].name.split("/")[1], integrity.companion_name(live[0].name).split("/")[1]]
    )
    # The companion holds the same rows, ordered by the remote side.
    companion = pq.read_table(store.root / integrity.companion_name(live[0].name))
    assert companion.num_rows == len(day)
    verified = store.verify()
    assert verified.ok, verified.problems
    assert verified.notes == []


def test_remote_side_branches_read_the_companion_and_local_side_ones_the_segment(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    compact(runtime, store)
    (segment,) = [s for s in store.segments() if s.live]
    planned = store.plan_query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, ips=["198.51.100.7"])
    assert planned is not None
    sql, params, _ = planned
    assert params["files"] == [str(store.root / segment.name)]
    assert params["remote"] == [str(store.root / integrity.companion_name(segment.name))]
    assert sql.count("read_parquet($remote)") == 2 and sql.count("read_parquet($files)") == 2


@pytest.mark.parametrize("damage", ["modified", "truncated", "deleted"])
def test_verify_names_a_companion_file_that_was_tampered_with(
    runtime: Runtime, store: ParquetStore, day: FlowBatch, damage: str
) -> None:
    report = compact(runtime, store)
    assert report.segment is not None
    path = store.root / integrity.companion_name(report.segment)
    data = path.read_bytes()
    if damage == "modified":
        path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncated":
        path.write_bytes(data[:-10])
    else:
        path.unlink()
    verified = store.verify()
    assert [p.kind for p in verified.problems] == [damage]
    assert path.name in verified.problems[0].message
    assert "companion" in verified.problems[0].message
    if damage == "deleted":
        # A missing companion costs speed, not answers: queries read the segment.
        assert answers(store, day)


def test_a_day_a_legal_hold_pins_is_not_compacted(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    before = day_files(store)
    actor = Actor("li-legal", ("legal",), new_request_id())
    with runtime.operation(actor) as op:
        holds.place_hold(
            op,
            reason="public security bureau request",
            start="2026-05-01T10:00:00Z",
            end="2026-05-01T11:00:00Z",
            ips=["203.0.113.5"],
        )
    report = compact(runtime, store)
    assert report.skipped is not None and "legal hold" in report.skipped
    assert report.segment is None
    assert day_files(store) == before
    assert len([s for s in store.segments() if s.live]) == 3
    assert store.verify().ok


def test_a_crash_between_commit_and_deletion_leaves_files_verify_notes_and_the_next_run_removes(
    runtime: Runtime, store: ParquetStore, day: FlowBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [s.name for s in store.segments()]
    # The crash, simulated: the deletion after the commit never happens.
    monkeypatch.setattr(ParquetStore, "_remove_files", lambda self, names: None)
    compact(runtime, store)
    assert len(day_files(store)) == 5
    verified = store.verify()
    assert verified.ok, verified.problems
    assert sorted(n for n in old if any(n in note for note in verified.notes)) == sorted(old)
    monkeypatch.undo()
    assert compact(runtime, store).skipped == "nothing to compact"
    assert len(day_files(store)) == 2
    verified = store.verify()
    assert verified.ok and verified.notes == []


def test_the_daily_job_compacts_due_days_audited_and_a_second_run_changes_nothing(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    # 2 May is not due yet (it ended only 3 hours ago): its segment stays as sealed.
    store.write(make_batch(500, day_start_ms=MAY_1 + DAY_MS, seed=9))
    store.flush()
    spec = {j.name: j for j in load_jobs(runtime.settings)}["flows.compact"]
    assert spec.seconds == 24 * 3600
    (report,) = jobs.compact_days(runtime, NOW)
    assert report.day == DAY and len(report.replaced) == 3
    with runtime.reading() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "flow_segments.compact")
        ).all()
    assert [e.actor for e in entries] == ["system:compaction"]
    chain = [s.seal_seq for s in store.segments()]
    files = sorted(str(p) for p in store.root.rglob("*"))
    assert jobs.compact_days(runtime, NOW) == []
    assert [s.seal_seq for s in store.segments()] == chain
    assert sorted(str(p) for p in store.root.rglob("*")) == files
    assert store.verify().ok


def test_compaction_can_be_switched_off(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    runtime.settings.flows.compact = False
    assert "flows.compact" not in {j.name for j in load_jobs(runtime.settings)}
    assert jobs.compact_days(runtime, NOW) == []
    assert len(day_files(store)) == 3


def test_a_full_disk_while_compacting_leaves_the_old_segments_live_and_untouched(
    runtime: Runtime, store: ParquetStore, day: FlowBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {n: (store.root / DAY / n).read_bytes() for n in day_files(store)}
    chain = len(store.verify().problems), store.verify().chain_entries
    real_write = files_store.write_all
    calls = []

    def full_on_the_companion(fd: int, data: memoryview) -> None:
        # The segment gets written; the disk fills up halfway through the companion.
        calls.append(len(data))
        if len(calls) == 1:
            real_write(fd, data)
            return
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_store, "write_all", full_on_the_companion)
    with pytest.raises(StoreWriteFailed, match="disk is full"):
        compact(runtime, store)
    monkeypatch.undo()
    assert {n: (store.root / DAY / n).read_bytes() for n in day_files(store)} == before
    assert all(s.live for s in store.segments())
    verified = store.verify()
    assert verified.ok and verified.notes == []
    assert (len(verified.problems), verified.chain_entries) == chain


def test_a_compaction_that_rolls_back_leaves_no_new_file(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    before = day_files(store)
    with pytest.raises(RuntimeError), runtime.operation(system_actor("test")) as op:
        assert store.compact(op, DAY).segment is not None
        raise RuntimeError("the unit of work fails after the compaction")
    assert day_files(store) == before
    assert all(s.live for s in store.segments())
    assert store.verify().ok


def test_a_segment_altered_on_disk_is_not_sealed_anew_by_a_compaction(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    first = store.segments()[0]
    path = store.root / first.name
    data = path.read_bytes()
    path.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    report = compact(runtime, store)
    assert report.skipped is not None and "no longer matches its seal" in report.skipped
    assert len(day_files(store)) == 3
    assert [p.kind for p in store.verify().problems] == ["modified"]


def test_expiry_deletes_a_companion_with_its_segment(
    runtime: Runtime, store: ParquetStore, day: FlowBatch
) -> None:
    compact(runtime, store)
    with runtime.operation(system_actor("test")) as op:
        expired = store.expire(op, MAY_1 + 200 * DAY_MS)
    assert len(expired.expired) == 1
    assert not (store.root / DAY).exists()
    verified = store.verify()
    assert verified.ok and verified.notes == []


def test_a_companion_whose_segment_names_none_is_reported_as_added(
    store: ParquetStore, day: FlowBatch
) -> None:
    segment = store.segments()[0]
    stray = store.root / integrity.companion_name(segment.name)
    pq.write_table(pa.table({"x": [1]}), stray)
    verified = store.verify()
    assert [p.kind for p in verified.problems] == ["added"]
