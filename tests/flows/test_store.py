"""The Parquet flow store: day-partitioned sealed segments, a layout that lets a one-address
query skip almost everything, exact answers, and clear errors on bad disks and files."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from hostwarden.core.audit import checkpoint_message, read_head_file
from hostwarden.core.config import load_settings
from hostwarden.core.models import AuditCheckpoint
from hostwarden.core.runtime import Runtime
from hostwarden.errors import ConfigError, ValidationFailed
from hostwarden.flows.models import FlowChainEntry, FlowSegment
from hostwarden.flows.schema import LOCAL_DST, NAMES, FlowBatch
from hostwarden.flows.store import SegmentUnreadable, StoreWriteFailed, sealing
from hostwarden.flows.store import files as files_store
from hostwarden.flows.store import parquet as parquet_store
from hostwarden.flows.store.integrity import CHAIN, HEAD_FILE
from hostwarden.flows.store.parquet import QUERY_SCHEMA, ParquetStore
from tests.flows.store_support import (
    DAY_MS,
    MAY_1,
    customer_addresses,
    make_batch,
    matching,
    v4,
)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def chain_rows(runtime: Runtime) -> int:
    with runtime.reading() as session:
        return session.scalar(select(func.count()).select_from(FlowChainEntry)) or 0


@pytest.fixture
def store(runtime: Runtime) -> Iterator[ParquetStore]:
    s = ParquetStore(runtime)
    yield s
    s.close()


def test_records_are_sealed_into_one_zstd_parquet_segment_per_utc_day(
    runtime: Runtime, store: ParquetStore
) -> None:
    # 23:00 on 1 May to 01:00 on 2 May: two days.
    batch = make_batch(5_000, day_start_ms=MAY_1 + 23 * 3600_000, span_ms=2 * 3600_000)
    store.write(batch)
    assert store.buffered_rows == 5_000
    sealed = store.flush()
    assert store.buffered_rows == 0
    assert [s.day for s in sealed] == ["2026-05-01", "2026-05-02"]
    assert sum(s.rows for s in sealed) == 5_000
    files = files_under(store.root)
    assert files == sorted(s.name for s in sealed)
    assert all(re.fullmatch(r"2026-05-0[12]/\d{8}T\d{6}-[0-9a-f]{8}\.parquet", f) for f in files)
    for segment in sealed:
        path = store.root / segment.name
        meta = pq.read_metadata(path)
        assert meta.row_group(0).column(0).compression == "ZSTD"
        table = pq.read_table(path)
        assert table.column_names == list(NAMES)
        day_start = MAY_1 + (0 if segment.day == "2026-05-01" else DAY_MS)
        starts = table.column("start").cast("int64").to_numpy()
        assert ((starts >= day_start) & (starts < day_start + DAY_MS)).all()
        assert segment.size == path.stat().st_size
    with runtime.reading() as session:
        indexed = session.scalars(select(FlowSegment).order_by(FlowSegment.day)).all()
        assert [(r.name, r.rows, r.sha256) for r in indexed] == [
            (s.name, s.rows, s.sha256) for s in sealed
        ]


def test_rows_are_ordered_by_the_provider_side_address_then_time(store: ParquetStore) -> None:
    store.write(make_batch(20_000))
    (segment,) = store.flush()
    table = FlowBatch.from_arrow(pq.read_table(store.root / segment.name))
    on_dst = table["local_side"] == LOCAL_DST
    local = np.where(on_dst, table["dst_lo"], table["src_lo"])
    # First the records whose provider side is src (or unknown), then those where it is dst.
    assert not on_dst[: int((~on_dst).sum())].any()
    for group in (~on_dst, on_dst):
        keys = np.stack([local[group], table["start"][group]], axis=1)
        order = np.lexsort((keys[:, 1], keys[:, 0]))
        assert (order == np.arange(len(order))).all()
    assert segment.min_local == f"{v4('203.0.113.0'):032x}"
    assert segment.max_local == f"{v4('203.0.113.15'):032x}"
    assert (segment.min_customer, segment.max_customer) == (1, 16)


def test_a_day_is_sealed_once_it_holds_segment_records(runtime: Runtime) -> None:
    runtime.settings.flows = runtime.settings.flows.model_copy(update={"segment_records": 1_000})
    store = ParquetStore(runtime)
    for seed in range(5):
        store.write(make_batch(400, seed=seed))
    # 400, 800, 1200 → sealed; 400, 800 buffered.
    assert [s.rows for s in store.segments()] == [1_200]
    assert store.buffered_rows == 800
    store.close()
    assert [s.rows for s in store.segments()] == [1_200, 800]


def test_a_day_is_sealed_once_its_buffer_is_segment_seconds_old(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(sealing.time, "monotonic", lambda: clock[0])
    store = ParquetStore(runtime)
    store.write(make_batch(100))
    clock[0] += runtime.settings.flows.segment_seconds - 1
    assert store.seal_due() == []
    clock[0] += 1
    assert [s.rows for s in store.seal_due()] == [100]
    store.close()


def test_query_answers_exactly_the_records_of_an_address_on_either_side(
    store: ParquetStore,
) -> None:
    batch = make_batch(50_000)
    store.write(batch)
    store.flush()
    day = {"start_ms": MAY_1, "end_ms": MAY_1 + DAY_MS}
    customer_ip = "203.0.113.5"
    got = store.query(**day, ips=[customer_ip])
    assert got.schema == QUERY_SCHEMA
    assert got.num_rows == matching(batch, [v4(customer_ip)]) > 0
    assert set(got.column("src").to_pylist()) | set(got.column("dst").to_pylist()) >= {customer_ip}
    assert all(
        customer_ip in (s, d)
        for s, d in zip(got["src"].to_pylist(), got["dst"].to_pylist(), strict=True)
    )
    # A remote address, seen once, is found as well (Bloom filters, not sorting, find it).
    remote = int(batch["dst_lo"][batch["local_side"] == 1][123])
    remote_text = f"{remote >> 24 & 255}.{remote >> 16 & 255}.{remote >> 8 & 255}.{remote & 255}"
    assert store.query(**day, ips=[remote_text]).num_rows == matching(batch, [remote])
    # A prefix and several addresses: every matching record once, in start order.
    prefix = store.query(**day, ips=["203.0.113.0/30"])
    lows = [v4(f"203.0.113.{i}") for i in range(4)]
    assert prefix.num_rows == matching(batch, lows)
    starts = prefix.column("start").cast("int64").to_numpy()
    assert (np.diff(starts) >= 0).all()
    both = store.query(**day, ips=[customer_ip, remote_text])
    assert both.num_rows == matching(batch, [v4(customer_ip), remote])
    # Customers; customers and an address together narrow each other.
    by_customer = store.query(**day, customers=[6])
    assert by_customer.num_rows == int((batch["customer_id"] == 6).sum())
    assert store.query(**day, ips=[customer_ip], customers=[7]).num_rows == 0
    # The time range is half-open on start; limit cuts the ordered answer.
    hour = store.query(start_ms=MAY_1 + 3600_000, end_ms=MAY_1 + 7200_000)
    in_hour = (batch["start"] >= MAY_1 + 3600_000) & (batch["start"] < MAY_1 + 7200_000)
    assert hour.num_rows == int(in_hour.sum())
    assert store.query(**day, limit=10).num_rows == 10
    assert store.query(start_ms=MAY_1 - DAY_MS, end_ms=MAY_1).num_rows == 0


def test_query_refuses_an_empty_time_range(store: ParquetStore) -> None:
    with pytest.raises(ValidationFailed, match="not after its start"):
        store.query(start_ms=MAY_1, end_ms=MAY_1)


def test_ipv6_addresses_are_stored_and_found(store: ParquetStore) -> None:
    from hostwarden.registry import netaddr

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
    store.write(batch)
    store.flush()
    got = store.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, ips=["2001:db8::/48"])
    assert got.num_rows == 2
    assert got.column("src").to_pylist() == ["2001:db8::7", "2001:db8:1::9"]
    assert store.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, ips=["2001:db8:1::9"]).num_rows == 2
    assert store.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS, ips=["2001:db8:2::/48"]).num_rows == 0


def row_groups_scanned(path: Path, where: str) -> tuple[int, int]:
    plan = (
        duckdb.connect()
        .sql(f"EXPLAIN ANALYZE SELECT * FROM read_parquet('{path}') WHERE {where}")
        .fetchall()[0][1]
    )
    found = re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan)
    assert found, plan
    return int(found.group(1)), int(found.group(2))


def test_a_one_address_query_reads_only_the_row_groups_that_can_hold_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Smaller row groups than the product's, so that a dozen of them stay quick to write.
    monkeypatch.setattr(parquet_store, "ROW_GROUP_ROWS", 8_192)
    runtime.settings.flows = runtime.settings.flows.model_copy(
        update={"segment_records": 1_000_000}
    )
    store = ParquetStore(runtime)
    rows = 12 * 8_192
    batch = make_batch(rows, local=customer_addresses(count=2_000))
    store.write(batch)
    (segment,) = store.flush()
    path = store.root / segment.name
    customer = v4("203.0.113.77")
    # The customer address as source: min/max prune the groups sorted by source, Bloom
    # filters the groups where source is the remote side.
    scanned, total = row_groups_scanned(path, f"src_hi = 0 AND src_lo = {customer}")
    assert total == 12
    assert scanned <= 2
    scanned, _ = row_groups_scanned(path, f"dst_hi = 0 AND dst_lo = {customer}")
    assert scanned <= 2
    remote = int(batch["dst_lo"][batch["local_side"] == 1][42])
    scanned, _ = row_groups_scanned(path, f"dst_hi = 0 AND dst_lo = {remote}")
    assert scanned <= 2
    store.close()


def test_each_seal_is_chained_and_its_head_signed(runtime: Runtime, store: ParquetStore) -> None:
    store.write(make_batch(1_000))
    store.flush()
    store.write(make_batch(1_000, seed=2))
    (second,) = store.flush()
    with runtime.reading() as session:
        entries = session.scalars(select(FlowChainEntry).order_by(FlowChainEntry.seq)).all()
        checkpoints = session.scalars(
            select(AuditCheckpoint).where(AuditCheckpoint.chain == CHAIN)
        ).all()
    assert [(e.seq, e.kind) for e in entries] == [(1, "seal"), (2, "seal")]
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[1].segment == second.name
    assert f'"sha256":"{second.sha256}"' in entries[1].body
    assert [c.seq for c in checkpoints] == [1, 2]
    head = checkpoints[-1]
    message = checkpoint_message(CHAIN, head.seq, head.head_hash, head.signed_at)
    assert runtime.signer.verify(head.signature, message)
    published = read_head_file(runtime.settings.home / HEAD_FILE)
    assert published is not None and published["seq"] == 2


def test_a_corrupt_segment_found_at_query_time_is_named(store: ParquetStore) -> None:
    store.write(make_batch(2_000))
    store.write(make_batch(2_000, day_start_ms=MAY_1 + DAY_MS))
    first, second = store.flush()
    path = store.root / second.name
    data = bytearray(path.read_bytes())
    data[-6:] = b"XXXXXX"  # footer length and magic bytes
    path.write_bytes(bytes(data))
    with pytest.raises(SegmentUnreadable) as caught:
        store.query(start_ms=MAY_1, end_ms=MAY_1 + 2 * DAY_MS)
    assert f"flow segment {second.name} is corrupt" in str(caught.value)
    assert "hostwarden logs verify" in str(caught.value)
    # The other day still answers.
    assert store.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS).num_rows == first.rows


def test_a_deleted_segment_found_at_query_time_is_named(store: ParquetStore) -> None:
    store.write(make_batch(2_000))
    (segment,) = store.flush()
    (store.root / segment.name).unlink()
    with pytest.raises(SegmentUnreadable, match=f"flow segment {segment.name} is missing"):
        store.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS)


def test_disk_full_leaves_no_segment_chains_nothing_and_keeps_the_records(
    runtime: Runtime, store: ParquetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk, simulated: the segment writer gets half the bytes out, then ENOSPC
    # (the test machine cannot mount a small tmpfs).
    real_write = files_store.write_all

    def write_until_full(fd: int, data: memoryview) -> None:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_store, "write_all", write_until_full)
    batch = make_batch(3_000)
    store.write(batch)
    with pytest.raises(StoreWriteFailed) as caught:
        store.flush()
    message = str(caught.value)
    assert "No space left on device" in message and "disk is full" in message
    assert "stay buffered" in message
    assert files_under(store.root) == []  # no sealed segment, no temporary file
    assert chain_rows(runtime) == 0
    assert store.buffered_rows == 3_000
    # Space again: the next flush writes every record once.
    monkeypatch.setattr(files_store, "write_all", real_write)
    (segment,) = store.flush()
    assert segment.rows == 3_000
    assert store.query(start_ms=MAY_1, end_ms=MAY_1 + DAY_MS).num_rows == 3_000
    assert store.verify().ok


def test_a_segment_the_database_could_not_chain_is_removed_and_retried(
    runtime: Runtime, store: ParquetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hostwarden.flows.store import integrity

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(integrity, "append", refuse)
    store.write(make_batch(500))
    with pytest.raises(RuntimeError, match="database went away"):
        store.flush()
    assert files_under(store.root) == []
    assert store.buffered_rows == 500
    monkeypatch.undo()
    assert [s.rows for s in store.flush()] == [500]
    assert store.verify().ok


def test_settings_refuse_a_retention_below_180_days_under_the_cn_profile(
    env_for_home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().flows.retention_days == 180
    monkeypatch.setenv("HOSTWARDEN_FLOWS__RETENTION_DAYS", "90")
    with pytest.raises(ConfigError, match="below the 180 days the cn profile requires"):
        load_settings()
    monkeypatch.setenv("HOSTWARDEN_FLOWS__PROFILE", "eu")
    assert load_settings().flows.retention_days == 90


def test_a_write_whose_seal_fails_keeps_the_records_and_refuses_only_when_full(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collector keeps what write() refuses: so write() either takes a batch (and keeps
    it through failed seals) or raises without taking it, never both."""
    runtime.settings.flows = runtime.settings.flows.model_copy(update={"segment_records": 1_000})
    store = ParquetStore(runtime)

    def disk_full(fd: int, data: memoryview) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_store, "write_all", disk_full)
    store.write(make_batch(1_200))  # due at once; the seal fails, the write does not
    assert store.buffered_rows == 1_200
    store.write(make_batch(700, seed=2))
    assert store.buffered_rows == 1_900
    with pytest.raises(StoreWriteFailed, match="took none of these 200 records"):
        store.write(make_batch(200, seed=3))
    assert store.buffered_rows == 1_900
    monkeypatch.undo()
    assert [s.rows for s in store.flush()] == [1_900]
    store.write(make_batch(200, seed=3))
    store.close()
    assert sum(s.rows for s in store.segments()) == 2_100
