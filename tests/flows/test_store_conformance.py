"""Every flow store backend behaves the same: one suite, run on the Parquet files and on
ClickHouse embedded in the test process (chdb), so that CI needs no ClickHouse server.

The ClickHouse store runs twice: through its chdb adapter (``clickhouse-chdb``, what
``clickhouse_url = "chdb:"`` uses) and through its server adapter, the clickhouse-connect
client a ClickHouse server is reached with, here on clickhouse-connect's own chdb
backend (``clickhouse-connect-chdb``), so that the calls made to a server are tested too.

What differs between backends is only how an intruder tampers with stored data: files
on disk for Parquet, SQL on the table for ClickHouse (``Tamper`` below).

chdb runs one embedded ClickHouse per process, on one data directory at a time; every
test has its own data directory, so each closes its stores before the next test opens
another (the ``open_store`` fixture does, whatever happens in the test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core import audit
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Actor, Runtime, new_request_id, system_actor
from hostwarden.errors import ConfigError, ValidationFailed
from hostwarden.flows import holds
from hostwarden.flows.models import FlowChainEntry
from hostwarden.flows.schema import FlowBatch
from hostwarden.flows.store import (
    ExpiryReport,
    FlowStore,
    Segment,
    clickhouse,
    integrity,
    parquet,
)
from hostwarden.flows.store import open_store as open_configured_store
from hostwarden.flows.store.clickhouse import ClickHouseStore
from hostwarden.flows.store.common import SERIES_SCHEMA, TOP_SCHEMA
from hostwarden.flows.store.parquet import QUERY_SCHEMA, ParquetStore
from hostwarden.registry import netaddr
from tests.flows.store_support import (
    CUSTOMER_A,
    CUSTOMER_B,
    DAY_MS,
    MAY_1,
    NOBODY,
    REMOTE_1,
    customer_addresses,
    known_flows,
    make_batch,
    matching,
    v4,
)

BACKENDS = ["parquet", "clickhouse-chdb", "clickhouse-connect-chdb"]
#: Expiry runs "now" = 1 May + 200 days; with 180 days kept, the cutoff is 21 May.
NOW = MAY_1 + 200 * DAY_MS

runner = CliRunner()


def chdb_unavailable() -> str | None:
    """Why embedded ClickHouse cannot run here, or None."""
    try:
        import chdb  # noqa: F401
    except Exception as exc:  # an ImportError, or a binary for another platform
        return f"chdb (embedded ClickHouse) cannot be loaded here: {exc}"
    return None


def require_chdb() -> None:
    """Skip without chdb, except in CI, where the ClickHouse backend must be tested."""
    reason = chdb_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the ClickHouse conformance tests must run)")
    pytest.skip(reason)


def use_backend(runtime: Runtime, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "parquet":
        update = {"store": "parquet"}
    else:
        require_chdb()
        update = {"store": "clickhouse", "clickhouse_url": "chdb:"}
    runtime.settings.flows = runtime.settings.flows.model_copy(update=update)
    if backend == "clickhouse-connect-chdb":
        path = runtime.settings.home / runtime.settings.flows.store_dir / clickhouse.CHDB_DIR

        def through_clickhouse_connect(_runtime: Runtime) -> tuple[clickhouse.Connection, str]:
            connection = clickhouse.ServerConnection(f"chdb://{path}")
            return connection, clickhouse.CHDB_DATABASE

        monkeypatch.setattr(clickhouse, "connect", through_clickhouse_connect)


StoreFactory = Callable[[], FlowStore]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_store(
    runtime: Runtime, backend: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StoreFactory]:
    """Opens stores of the backend under test; all are closed after the test."""
    use_backend(runtime, backend, monkeypatch)
    opened: list[FlowStore] = []

    def factory() -> FlowStore:
        store = open_configured_store(runtime)
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> FlowStore:
    return open_store()


class Tamper:
    """What an intruder with access to the machine does to one sealed segment."""

    def __init__(self, store: FlowStore) -> None:
        self.store = store

    # Parquet: the files.
    def _path(self, segment: Segment) -> Path:
        assert isinstance(self.store, ParquetStore)
        return self.store.root / segment.name

    # ClickHouse: SQL on the table.
    def _sql(self, statement: str, segment: Segment) -> None:
        assert isinstance(self.store, ClickHouseStore)
        self.store.connection.command(
            statement.format(table=self.store.table), {"segment": segment.name}
        )

    def modify(self, segment: Segment) -> None:
        """Change values, keeping the size or row count."""
        if isinstance(self.store, ParquetStore):
            data = bytearray(self._path(segment).read_bytes())
            data[len(data) // 2] ^= 0xFF
            self._path(segment).write_bytes(bytes(data))
        else:
            middle = (segment.first_ms + segment.last_ms) // 2
            self._sql(
                "ALTER TABLE {table} UPDATE bytes = bytes + 1 WHERE segment = {{segment:String}} "
                f"AND start < fromUnixTimestamp64Milli({middle}, 'UTC') "
                "SETTINGS mutations_sync = 2",
                segment,
            )

    def truncate(self, segment: Segment) -> None:
        """Remove part of it."""
        if isinstance(self.store, ParquetStore):
            with self._path(segment).open("r+b") as handle:
                handle.truncate(segment.size - 100)
        else:
            middle = (segment.first_ms + segment.last_ms) // 2
            self._sql(
                "ALTER TABLE {table} DELETE WHERE segment = {{segment:String}} "
                f"AND start < fromUnixTimestamp64Milli({middle}, 'UTC') "
                "SETTINGS mutations_sync = 2",
                segment,
            )

    def grow(self, segment: Segment) -> None:
        """Add to it."""
        if isinstance(self.store, ParquetStore):
            with self._path(segment).open("ab") as handle:
                handle.write(b"appended rows")
        else:
            self._sql(
                "INSERT INTO {table} SELECT * FROM {table} WHERE segment = {{segment:String}} "
                "LIMIT 3",
                segment,
            )

    def delete(self, segment: Segment) -> None:
        """Remove all of it."""
        if isinstance(self.store, ParquetStore):
            self._path(segment).unlink()
        else:
            self._sql(
                "ALTER TABLE {table} DELETE WHERE segment = {{segment:String}} "
                "SETTINGS mutations_sync = 2",
                segment,
            )

    def add_copy(self, segment: Segment) -> str:
        """Store a copy of it under a name no seal entry has; returns that name."""
        name = f"{segment.day}/20260503T120000-deadbeef"
        if isinstance(self.store, ParquetStore):
            name += ".parquet"
            shutil.copy(self._path(segment), self.store.root / name)
        else:
            assert isinstance(self.store, ClickHouseStore)
            columns = ", ".join(f"`{c}`" for c in QUERY_SCHEMA.names[:-2])
            self.store.connection.command(
                f"INSERT INTO {self.store.table} ({columns}, segment) "
                f"SELECT {columns}, {{name:String}} FROM {self.store.table} "
                "WHERE segment = {segment:String}",
                {"name": name, "segment": segment.name},
            )
        return name

    def is_stored(self, segment: Segment) -> bool:
        """Is anything of the segment still stored?"""
        if isinstance(self.store, ParquetStore):
            return self._path(segment).exists()
        assert isinstance(self.store, ClickHouseStore)
        found = self.store.connection.arrow(
            f"SELECT count() AS n FROM {self.store.table} WHERE segment = {{segment:String}}",
            {"segment": segment.name},
        )
        return bool(found.column("n")[0].as_py())

    def remover(self) -> str:
        """The method that deletes expired segments' data after the expiry commits."""
        return "_remove_files" if isinstance(self.store, ParquetStore) else "_remove"


def seal(store: FlowStore, batch: FlowBatch) -> Segment:
    store.write(batch)
    (segment,) = store.flush()
    return segment


def day_of(ms: int) -> dict[str, int]:
    return {"start_ms": ms, "end_ms": ms + DAY_MS}


# --- writing and reading -------------------------------------------------------------------


def test_records_are_sealed_into_one_segment_per_utc_day(
    runtime: Runtime, store: FlowStore
) -> None:
    # 23:00 on 1 May to 01:00 on 2 May: two days.
    batch = make_batch(5_000, day_start_ms=MAY_1 + 23 * 3600_000, span_ms=2 * 3600_000)
    store.write(batch)
    sealed = store.flush()
    assert [s.day for s in sealed] == ["2026-05-01", "2026-05-02"]
    assert [s.name.split("/")[0] for s in sealed] == ["2026-05-01", "2026-05-02"]
    assert sum(s.rows for s in sealed) == 5_000
    assert all(s.live and len(s.sha256) == 64 and s.size > 0 for s in sealed)
    assert store.segments() == sealed
    assert store.segments(since_ms=sealed[0].last_ms + 1) == sealed[1:]
    first = sealed[0]
    assert first.first_ms == int(batch["start"].min())
    assert (first.min_customer, first.max_customer) == (1, 16)
    assert first.min_local == f"{v4('203.0.113.0'):032x}"
    assert store.flush() == []


def test_a_day_is_sealed_once_it_holds_segment_records(
    runtime: Runtime, open_store: StoreFactory
) -> None:
    runtime.settings.flows = runtime.settings.flows.model_copy(update={"segment_records": 1_000})
    store = open_store()
    for seed in range(5):
        store.write(make_batch(400, seed=seed))
    # 400, 800, 1200 → sealed; 400, 800 buffered.
    assert [s.rows for s in store.segments()] == [1_200]
    store.close()
    assert [s.rows for s in store.segments()] == [1_200, 800]


def test_query_answers_exactly_the_records_asked_for(store: FlowStore) -> None:
    batch = make_batch(20_000)
    store.write(batch)
    store.write(make_batch(1_000, day_start_ms=MAY_1 + DAY_MS, seed=2))
    store.flush()
    day = day_of(MAY_1)
    customer_ip = "203.0.113.5"
    got = store.query(**day, ips=[customer_ip])
    assert got.schema == QUERY_SCHEMA
    assert got.num_rows == matching(batch, [v4(customer_ip)]) > 0
    assert all(
        customer_ip in (s, d)
        for s, d in zip(got["src"].to_pylist(), got["dst"].to_pylist(), strict=True)
    )
    starts = got.column("start").cast(pa.int64()).to_numpy()
    assert (np.diff(starts) >= 0).all()
    # A remote address, seen once, on either side.
    remote = int(batch["dst_lo"][batch["local_side"] == 1][123])
    remote_text = str(netaddr.hilo_to_address(0, remote))
    assert store.query(**day, ips=[remote_text]).num_rows == matching(batch, [remote])
    # A prefix, and several addresses: every matching record once.
    lows = [v4(f"203.0.113.{i}") for i in range(4)]
    assert store.query(**day, ips=["203.0.113.0/30"]).num_rows == matching(batch, lows)
    both = store.query(**day, ips=[customer_ip, remote_text])
    assert both.num_rows == matching(batch, [v4(customer_ip), remote])
    # Customers; customers and an address narrow each other.
    assert store.query(**day, customers=[6]).num_rows == int((batch["customer_id"] == 6).sum())
    assert store.query(**day, customers=[6, 7]).num_rows == int(
        np.isin(batch["customer_id"], [6, 7]).sum()
    )
    assert store.query(**day, ips=[customer_ip], customers=[7]).num_rows == 0
    # The time range is half-open on start, and only takes what it covers.
    hour = store.query(start_ms=MAY_1 + 3600_000, end_ms=MAY_1 + 7200_000)
    in_hour = (batch["start"] >= MAY_1 + 3600_000) & (batch["start"] < MAY_1 + 7200_000)
    assert hour.num_rows == int(in_hour.sum())
    assert store.query(start_ms=MAY_1, end_ms=MAY_1 + 2 * DAY_MS).num_rows == 21_000
    assert store.query(**day, limit=10).num_rows == 10
    assert store.query(start_ms=MAY_1 - DAY_MS, end_ms=MAY_1).num_rows == 0
    assert store.query(start_ms=MAY_1 - DAY_MS, end_ms=MAY_1).schema == QUERY_SCHEMA
    with pytest.raises(ValidationFailed, match="not after its start"):
        store.query(start_ms=MAY_1, end_ms=MAY_1)


def test_ipv6_addresses_are_stored_and_found(store: FlowStore) -> None:
    hi, lo = netaddr.texts_to_hilo(["2001:db8::7", "2001:db8:1::9"])
    batch = FlowBatch(
        {
            "start": np.array([MAY_1 + 1, MAY_1 + 2]),
            "src_hi": hi,
            "src_lo": lo,
            "dst_hi": hi[::-1].copy(),
            "dst_lo": lo[::-1].copy(),
            "local_side": np.array([1, 1]),
        }
    )
    seal(store, batch)
    got = store.query(**day_of(MAY_1), ips=["2001:db8::/48"])
    assert got.column("src").to_pylist() == ["2001:db8::7", "2001:db8:1::9"]
    assert store.query(**day_of(MAY_1), ips=["2001:db8:1::9"]).num_rows == 2
    assert store.query(**day_of(MAY_1), ips=["2001:db8:2::/48"]).num_rows == 0


def test_a_second_store_on_the_same_data_reads_what_the_first_sealed(
    open_store: StoreFactory,
) -> None:
    first = open_store()
    batch = make_batch(3_000)
    sealed = seal(first, batch)
    # While the first is open (chdb: a second session on the same directory) …
    second = open_store()
    assert second.segments() == [sealed]
    assert second.query(**day_of(MAY_1)).num_rows == 3_000
    assert second.verify().ok
    # … and after it closed, from scratch.
    first.close()
    second.close()
    third = open_store()
    assert third.query(**day_of(MAY_1), ips=["203.0.113.5"]).num_rows == matching(
        batch, [v4("203.0.113.5")]
    )
    seal(third, make_batch(100, seed=4))
    report = third.verify()
    assert report.ok and report.segments_checked == 2


def test_a_segment_the_database_could_not_chain_leaves_nothing_stored(
    runtime: Runtime, store: FlowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(integrity, "append", refuse)
    store.write(make_batch(500))
    with pytest.raises(RuntimeError, match="database went away"):
        store.flush()
    monkeypatch.undo()
    report = store.verify()
    assert report.ok, report.problems  # nothing "added": the stored data went again
    assert store.query(**day_of(MAY_1)).num_rows == 0
    assert [s.rows for s in store.flush()] == [500]
    assert store.query(**day_of(MAY_1)).num_rows == 500
    assert store.verify().ok


# --- integrity -------------------------------------------------------------------------------


@pytest.fixture
def sealed(store: FlowStore) -> list[Segment]:
    """Six segments over three days (1 May twice, 2 May three times, 3 May)."""
    return [
        seal(store, make_batch(3_000, day_start_ms=MAY_1 + day * DAY_MS, seed=seed))
        for seed, day in enumerate((0, 0, 1, 1, 1, 2))
    ]


def test_an_untouched_store_verifies_clean(store: FlowStore, sealed: list[Segment]) -> None:
    seen: list[tuple[int, int]] = []
    report = store.verify(progress=lambda done, total: seen.append((done, total)))
    assert report.ok, report.problems
    assert report.segments_checked == 6
    assert report.chain_entries == 6 and report.checkpoints == 6
    total = sum(s.size for s in sealed)
    assert report.bytes_hashed == total
    assert seen[-1] == (total, total)
    # Re-reading gives the same bytes every time.
    assert store.verify().as_dict() == report.as_dict()


def test_verify_names_each_segment_modified_truncated_deleted_or_added(
    store: FlowStore, sealed: list[Segment]
) -> None:
    modified, truncated, grown, deleted, intact, copied = sealed
    tamper = Tamper(store)
    tamper.modify(modified)
    tamper.truncate(truncated)
    tamper.grow(grown)
    tamper.delete(deleted)
    added = tamper.add_copy(copied)
    report = store.verify()
    assert report.by_kind("modified") == sorted([modified.name, grown.name])
    assert report.by_kind("truncated") == [truncated.name]
    assert report.by_kind("deleted") == [deleted.name]
    assert report.by_kind("added") == [added]
    assert {p.kind for p in report.problems} == {"modified", "truncated", "deleted", "added"}
    assert intact.name not in {p.segment for p in report.problems}
    # Queries never answer rows no seal entry covers.
    assert store.query(**day_of(MAY_1 + 2 * DAY_MS)).num_rows == copied.rows


def test_since_limits_which_days_are_rechecked(store: FlowStore, sealed: list[Segment]) -> None:
    Tamper(store).delete(sealed[0])  # 1 May
    report = store.verify(since_ms=MAY_1 + DAY_MS)
    assert report.ok and report.segments_checked == 4
    assert store.verify(since_ms=MAY_1).by_kind("deleted") == [sealed[0].name]


def test_logs_verify_in_the_shell_checks_the_configured_backend(
    runtime: Runtime,
    store: FlowStore,
    sealed: list[Segment],
    backend: str,
    env_for_home: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "parquet":
        monkeypatch.setenv("HOSTWARDEN_FLOWS__STORE", "clickhouse")
        monkeypatch.setenv("HOSTWARDEN_FLOWS__CLICKHOUSE_URL", "chdb:")
    result = runner.invoke(app, ["logs", "verify"])
    assert result.exit_code == 0, result.output
    assert "Flow store intact" in result.stdout and "6 segments re-hashed" in result.stdout
    Tamper(store).truncate(sealed[2])
    result = runner.invoke(app, ["logs", "verify", "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert [(p["kind"], p["segment"]) for p in problems] == [("truncated", sealed[2].name)]
    # Both runs are on record, and the last one is what the console shows.
    home = Path(env_for_home["HOSTWARDEN_HOME"])
    last = json.loads((home / "run" / "last-verify.json").read_text())
    assert last["ok"] is False and last["problem_counts"] == {"truncated": 1}
    assert last["via"] == "command line"
    with runtime.reading() as session:
        runs, _ = audit.list_entries(session, action="logs.verify")
    assert sorted(json.loads(r.after)["ok"] for r in runs) == [False, True]


# --- retention and legal holds -------------------------------------------------------------


def legal() -> Actor:
    return Actor("li-legal", ("legal",), new_request_id())


def expire(runtime: Runtime, store: FlowStore, now_ms: int = NOW) -> ExpiryReport:
    with runtime.operation(system_actor("test")) as op:
        return store.expire(op, now_ms)


def place(runtime: Runtime, **scope: object) -> int:
    scope.setdefault("reason", "public security bureau request")
    with runtime.operation(legal()) as op:
        return holds.place_hold(op, **scope).id  # type: ignore[arg-type]


@pytest.fixture
def three(store: FlowStore) -> tuple[Segment, Segment, Segment]:
    """Two segments past retention (1 and 6 May, different customer ranges) and a recent one."""

    def batch(day_ms: int, prefix: str, seed: int) -> FlowBatch:
        return make_batch(2_000, day_start_ms=day_ms, local=customer_addresses(prefix), seed=seed)

    old_a = seal(store, batch(MAY_1, "203.0.113.0", 1))
    old_b = seal(store, batch(MAY_1 + 5 * DAY_MS, "198.51.100.0", 2))
    recent = seal(store, batch(NOW - 10 * DAY_MS, "203.0.113.0", 3))
    return old_a, old_b, recent


def test_segments_past_retention_expire_as_an_audited_chained_event(
    runtime: Runtime, store: FlowStore, three: tuple[Segment, Segment, Segment], backend: str
) -> None:
    old_a, old_b, recent = three
    tamper = Tamper(store)
    report = expire(runtime, store)
    assert report.expired == [old_a.name, old_b.name]
    assert report.rows_expired == 4_000 and report.pinned == {} and report.damaged == {}
    assert not tamper.is_stored(old_a) and not tamper.is_stored(old_b)
    assert tamper.is_stored(recent)
    with runtime.reading() as session:
        kinds = session.scalars(select(FlowChainEntry.kind).order_by(FlowChainEntry.seq)).all()
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "flow_segments.expire")
        ).all()
    assert kinds == ["seal", "seal", "seal", "expire", "expire"]
    assert len(audited) == 1 and audited[0].object_id == backend.split("-")[0]
    verified = store.verify()
    assert verified.ok, verified.problems
    assert verified.segments_checked == 1 and verified.notes == []
    assert {s.name: s.live for s in store.segments()} == {
        old_a.name: False,
        old_b.name: False,
        recent.name: True,
    }
    assert store.query(start_ms=MAY_1, end_ms=NOW).num_rows == 2_000
    assert expire(runtime, store).expired == []


def test_a_legal_hold_pins_segments_until_it_is_released(
    runtime: Runtime, store: FlowStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    hold_id = place(runtime, start="2026-05-01", end="2026-05-01", case_ref="LE-2026-17")
    report = expire(runtime, store)
    assert report.pinned == {old_a.name: [hold_id]}
    assert report.expired == [old_b.name]
    assert Tamper(store).is_stored(old_a)
    assert store.verify().ok
    assert store.query(**day_of(MAY_1)).num_rows == 2_000
    with runtime.operation(legal()) as op:
        holds.release_hold(op, hold_id, reason="case closed")
    assert expire(runtime, store).expired == [old_a.name]
    assert not Tamper(store).is_stored(old_a)
    assert store.verify().ok


def test_a_hold_on_a_remote_address_pins_the_segment_it_appears_in(
    runtime: Runtime, store: FlowStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    # An outside address that talked to a customer in segment B only: outside every
    # customer range, so only a look into the segment finds it.
    table = store.query(**day_of(MAY_1 + 5 * DAY_MS), limit=20)
    sides = zip(table["src"].to_pylist(), table["local_side"].to_pylist(), strict=True)
    remote = next(src for src, side in sides if side == 2)
    assert store.query(**day_of(MAY_1), ips=[remote]).num_rows == 0
    hold_id = place(runtime, start="2026-04-01", ips=[remote])
    report = expire(runtime, store)
    assert report.pinned == {old_b.name: [hold_id]}
    assert report.expired == [old_a.name]


def test_an_expiry_that_rolls_back_removes_nothing(
    runtime: Runtime, store: FlowStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, _, _ = three
    with pytest.raises(RuntimeError), runtime.operation(system_actor("test")) as op:
        assert store.expire(op, NOW).expired
        raise RuntimeError("the unit of work fails after the expiry")
    assert Tamper(store).is_stored(old_a)
    assert all(s.live for s in store.segments())
    assert store.verify().ok


def test_data_an_expiry_left_behind_goes_at_the_next_run(
    runtime: Runtime,
    store: FlowStore,
    three: tuple[Segment, Segment, Segment],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_a, _, _ = three
    tamper = Tamper(store)
    monkeypatch.setattr(type(store), tamper.remover(), lambda self, names: None)
    expire(runtime, store)  # "crashes" after the commit, before removing anything
    report = store.verify()
    assert report.ok
    assert any(old_a.name in note and "still there" in note for note in report.notes)
    monkeypatch.undo()
    assert expire(runtime, store).expired == []
    assert not tamper.is_stored(old_a)
    assert store.verify().notes == []


def test_a_segment_damaged_before_it_expired_is_recorded(
    runtime: Runtime, store: FlowStore, three: tuple[Segment, Segment, Segment]
) -> None:
    old_a, old_b, _ = three
    tamper = Tamper(store)
    tamper.delete(old_a)
    tamper.truncate(old_b)
    report = expire(runtime, store)
    assert report.damaged == {old_a.name: "missing", old_b.name: "resized"}
    notes = store.verify().notes
    assert any(old_a.name in n and "already missing" in n for n in notes), notes
    assert any(old_b.name in n and "already resized" in n for n in notes), notes


# --- the same answers from both backends -----------------------------------------------------


def test_both_backends_answer_the_same_query_with_the_same_table(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_chdb()
    batch = make_batch(10_000, local=customer_addresses(count=50))
    answers = []
    for backend in BACKENDS[:2]:
        use_backend(runtime, backend, monkeypatch)
        store = open_configured_store(runtime)
        try:
            seal(store, batch)
            answers.append(
                (
                    store.query(**day_of(MAY_1), ips=["203.0.113.7", "203.0.113.40/29"]),
                    store.query(**day_of(MAY_1), customers=[3], limit=100),
                )
            )
        finally:
            store.close()
    (parquet_ip, parquet_customer), (clickhouse_ip, clickhouse_customer) = answers
    assert parquet_ip.num_rows > 0 and parquet_customer.num_rows == 100
    # Ties in the answer's order (same start, same addresses and ports) may come either way.
    key = [(n, "ascending") for n in QUERY_SCHEMA.names[:-2]]
    assert clickhouse_ip.sort_by(key).equals(parquet_ip.sort_by(key))
    assert clickhouse_customer.column("start").equals(parquet_customer.column("start"))


# --- configuration (ClickHouse) ----------------------------------------------------------


def test_open_store_picks_the_backend_flows_store_names(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_backend(runtime, "parquet", monkeypatch)
    store = open_configured_store(runtime)
    assert isinstance(store, ParquetStore)
    store.close()
    use_backend(runtime, "clickhouse-chdb", monkeypatch)
    store = open_configured_store(runtime)
    try:
        assert isinstance(store, ClickHouseStore)
        assert isinstance(store.connection, clickhouse.ChdbConnection)
        assert store.connection.where.endswith(str(Path("flows") / "chdb"))
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "needs clickhouse_url; (empty)"),
        ("tcp://default:s3cret@db:9000/flows", "tcp://default:***@db:9000/flows is not one"),
        ("chdb:relative/dir", "not a chdb location"),
        ("http://db:8123/flows-prod", "not a plain identifier"),
    ],
)
def test_a_bad_clickhouse_url_is_refused_with_what_to_write(
    runtime: Runtime, url: str, message: str
) -> None:
    runtime.settings.flows = runtime.settings.flows.model_copy(
        update={"store": "clickhouse", "clickhouse_url": url}
    )
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        open_configured_store(runtime)
    assert "s3cret" not in str(caught.value)


def test_chdb_opens_one_data_directory_per_process(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_backend(runtime, "clickhouse-chdb", monkeypatch)
    store = open_configured_store(runtime)
    try:
        runtime.settings.flows = runtime.settings.flows.model_copy(
            update={"clickhouse_url": f"chdb://{tmp_path / 'elsewhere'}"}
        )
        with pytest.raises(ConfigError, match="one data directory per process"):
            open_configured_store(runtime)
    finally:
        store.close()
    # Once the first is closed, another directory opens.
    other = open_configured_store(runtime)
    other.close()


# --- filters and aggregations (records added up by hand: store_support.known_flows) --------

MINUTE = 60_000
FIVE_MINUTES = {"start_ms": MAY_1, "end_ms": MAY_1 + 5 * MINUTE}


@pytest.fixture
def known(store: FlowStore) -> FlowStore:
    seal(store, known_flows())
    return store


def rows_of(table: pa.Table) -> list[tuple[object, ...]]:
    return [tuple(r.values()) for r in table.to_pylist()]


def test_ports_match_either_side_and_protocols_narrow_further(known: FlowStore) -> None:
    def starts(**filters: object) -> list[int]:
        got = known.query(**FIVE_MINUTES, **filters)  # type: ignore[arg-type]
        assert got.schema == QUERY_SCHEMA
        return [(int(t.timestamp() * 1000) - MAY_1) // 1000 for t in got["start"].to_pylist()]

    assert starts(ports=[443]) == [0, 10]
    assert starts(ports=[53, 80]) == [70, 130, 250]
    assert starts(protos=[17]) == [70, 130]
    assert starts(protos=[1, 17]) == [70, 130, 200]
    assert starts(ports=[80], protos=[6]) == [250]
    assert starts(ports=[443], protos=[17]) == []
    assert starts(ips=[REMOTE_1], ports=[443]) == [0, 10]
    assert starts(ips=[REMOTE_1], ports=[80, 443], customers=[1]) == [0, 10]
    assert starts(ips=["198.51.100.0/30"], protos=[6]) == [0, 10, 250]


def test_top_talkers_add_up_per_provider_side_address(known: FlowStore) -> None:
    got = known.top_talkers(**FIVE_MINUTES)
    assert got.schema == TOP_SCHEMA
    assert rows_of(got) == [
        (NOBODY, -1, 1, 3, 30_000),
        (CUSTOMER_A, 1, 3, 35, 3_500),
        (CUSTOMER_B, 2, 2, 3, 400),
    ]
    # A tie (3 packets each) is broken by address, the same on every backend.
    by_packets = known.top_talkers(**FIVE_MINUTES, by="packets")
    assert by_packets["key"].to_pylist() == [CUSTOMER_A, NOBODY, CUSTOMER_B]
    by_flows = known.top_talkers(**FIVE_MINUTES, by="flows", limit=2)
    assert rows_of(by_flows) == [(CUSTOMER_A, 1, 3, 35, 3_500), (CUSTOMER_B, 2, 2, 3, 400)]
    # Filters apply before adding up: remote 1 talked with A twice and with 192.0.2.9.
    assert rows_of(known.top_talkers(**FIVE_MINUTES, ips=[REMOTE_1])) == [
        (NOBODY, -1, 1, 3, 30_000),
        (CUSTOMER_A, 1, 2, 30, 3_000),
    ]
    assert rows_of(known.top_talkers(**FIVE_MINUTES, protos=[17], ports=[53])) == [
        (CUSTOMER_B, 2, 2, 3, 400)
    ]


def test_top_talkers_by_customer_put_unattributed_records_under_a_dash(
    known: FlowStore,
) -> None:
    assert rows_of(known.top_talkers(**FIVE_MINUTES, group="customer")) == [
        ("-", -1, 1, 3, 30_000),
        ("1", 1, 3, 35, 3_500),
        ("2", 2, 2, 3, 400),
    ]
    assert rows_of(known.top_talkers(**FIVE_MINUTES, group="customer", customers=[2])) == [
        ("2", 2, 2, 3, 400)
    ]
    assert rows_of(known.top_talkers(**FIVE_MINUTES, group="customer", by="flows", limit=1)) == [
        ("1", 1, 3, 35, 3_500)
    ]


def test_a_time_series_has_every_step_of_the_range_zero_filled(known: FlowStore) -> None:
    got = known.time_series(**FIVE_MINUTES, step_ms=MINUTE)
    assert got.schema == SERIES_SCHEMA
    assert rows_of(got) == [
        (MAY_1, 2, 30, 3_000),
        (MAY_1 + MINUTE, 1, 1, 100),
        (MAY_1 + 2 * MINUTE, 1, 2, 300),
        (MAY_1 + 3 * MINUTE, 1, 5, 500),
        (MAY_1 + 4 * MINUTE, 1, 3, 30_000),
    ]
    # Two-minute steps from the start given; the last step is cut short by the end.
    assert rows_of(known.time_series(**FIVE_MINUTES, step_ms=2 * MINUTE)) == [
        (MAY_1, 3, 31, 3_100),
        (MAY_1 + 2 * MINUTE, 2, 7, 800),
        (MAY_1 + 4 * MINUTE, 1, 3, 30_000),
    ]
    # Steps start at the range's start, not on the clock; quiet steps are zeros.
    shifted = known.time_series(
        start_ms=MAY_1 + 30_000, end_ms=MAY_1 + 10 * MINUTE, step_ms=MINUTE, customers=[2]
    )
    assert shifted.num_rows == 10
    assert rows_of(shifted)[:3] == [
        (MAY_1 + 30_000, 1, 1, 100),
        (MAY_1 + 90_000, 1, 2, 300),
        (MAY_1 + 150_000, 0, 0, 0),
    ]
    assert sum(shifted["flows"].to_pylist()) == 2


def test_aggregations_of_an_empty_range_are_empty_or_zero(known: FlowStore) -> None:
    before = {"start_ms": MAY_1 - DAY_MS, "end_ms": MAY_1}
    assert known.top_talkers(**before).num_rows == 0
    assert known.top_talkers(**before).schema == TOP_SCHEMA
    assert known.top_talkers(**FIVE_MINUTES, customers=[99]).num_rows == 0
    series = known.time_series(**before, step_ms=3600_000)
    assert series.schema == SERIES_SCHEMA
    assert series.num_rows == 24
    assert series["bucket_ms"].to_pylist()[:2] == [MAY_1 - DAY_MS, MAY_1 - DAY_MS + 3600_000]
    assert set(series["bytes"].to_pylist()) == {0}
    quiet = known.time_series(**FIVE_MINUTES, step_ms=MINUTE, ports=[9])
    assert quiet.num_rows == 5 and sum(quiet["flows"].to_pylist()) == 0
    assert list(known.query_batches(**before)) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.top_talkers(**FIVE_MINUTES, by="octets"), "cannot rank by 'octets'"),
        (lambda s: s.top_talkers(**FIVE_MINUTES, group="asn"), "cannot group by 'asn'"),
        (lambda s: s.top_talkers(**FIVE_MINUTES, limit=0), "limit 0 is not positive"),
        (lambda s: s.time_series(**FIVE_MINUTES, step_ms=500), "shorter than the shortest, 1 s"),
        (
            lambda s: s.time_series(**day_of(MAY_1), step_ms=1000),
            "86,400 buckets, more than the 10,000",
        ),
        (lambda s: s.time_series(**FIVE_MINUTES, step_ms=MINUTE, protos=[256]), "256 is outside"),
        (lambda s: s.query(**FIVE_MINUTES, ports=[70_000]), "port 70000 is outside 0–65535"),
        (lambda s: s.query(**FIVE_MINUTES, ports=[-1]), "port -1 is outside"),
        (lambda s: s.query(**FIVE_MINUTES, protos=[300]), "IP protocol 300 is outside 0–255"),
        (lambda s: s.top_talkers(start_ms=MAY_1, end_ms=MAY_1), "not after its start"),
        (lambda s: s.query_batches(**FIVE_MINUTES, ports=[65_536]), "65536 is outside"),
    ],
)
def test_bad_query_input_is_refused_naming_what_was_wrong(
    known: FlowStore, call: Callable[[FlowStore], object], message: str
) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(message)):
        call(known)


def test_too_many_buckets_names_a_step_that_fits(known: FlowStore) -> None:
    with pytest.raises(ValidationFailed) as caught:
        known.time_series(**day_of(MAY_1), step_ms=1000)
    # 86,400,000 ms / 10,000 buckets = 8.64 s: the next step a person would pick is 10s.
    assert "10s or more" in (caught.value.hint or "")


def test_streamed_pieces_add_up_to_the_whole_answer(
    store: FlowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet, "STREAM_ROWS", 1_000)
    batch = make_batch(20_000)
    seal(store, batch)
    whole = store.query(**day_of(MAY_1), protos=[6], ports=[443])
    pieces = list(store.query_batches(**day_of(MAY_1), protos=[6], ports=[443]))
    assert whole.num_rows == int(((batch["src_port"] == 443) | (batch["dst_port"] == 443)).sum())
    assert all(p.schema == QUERY_SCHEMA for p in pieces)
    assert pa.concat_tables(pieces).equals(whole)
    if isinstance(store, ParquetStore):
        assert len(pieces) == -(-whole.num_rows // 1_000)
    limited = list(store.query_batches(**day_of(MAY_1), ips=["203.0.113.5"], limit=7))
    assert sum(p.num_rows for p in limited) == 7


def test_both_backends_add_up_the_same_top_talkers_and_series(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_chdb()
    batch = make_batch(10_000, local=customer_addresses(count=50))
    answers = []
    for backend in BACKENDS[:2]:
        use_backend(runtime, backend, monkeypatch)
        store = open_configured_store(runtime)
        try:
            seal(store, batch)
            answers.append(
                [
                    store.top_talkers(**day_of(MAY_1), limit=30),
                    store.top_talkers(**day_of(MAY_1), group="customer", by="flows"),
                    store.top_talkers(**day_of(MAY_1), ports=[22, 53], by="packets"),
                    store.time_series(**day_of(MAY_1), step_ms=3600_000, ips=["203.0.113.0/28"]),
                    store.time_series(start_ms=MAY_1 + 1, end_ms=MAY_1 + DAY_MS, step_ms=9_000),
                ]
            )
        finally:
            store.close()
    parquet_answers, clickhouse_answers = answers
    for ours, theirs in zip(parquet_answers, clickhouse_answers, strict=True):
        assert ours.num_rows > 0
        assert theirs.equals(ours)
    # The whole day's bytes, however cut, are the batch's.
    assert sum(parquet_answers[4]["bytes"].to_pylist()) == int(
        batch["bytes"][batch["start"] > MAY_1].sum()
    )
