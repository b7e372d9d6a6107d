"""Live detection: the collectors' sink stores first, then detects and records alerts;
a detection failure never reaches the collector, a store failure stops detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.detect.detectors.scan import ScanDetector
from hostwarden.detect.engine import Engine
from hostwarden.detect.live import DetectingSink, tap, worker_state_dir
from hostwarden.detect.models import DetectAlert
from hostwarden.flows.collector import tapped
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.schema import FlowBatch
from hostwarden.flows.store import open_store
from hostwarden.registry import inventory
from tests.detect.support import T0, Trace
from tests.registry.inventory_support import make_customers, make_ranges

SCANNER = "100.64.9.9"


def scan_trace() -> Trace:
    return Trace().flows(
        local=SCANNER,
        remote=[f"198.51.100.{i + 1}" for i in range(40)],
        n=40,
        remote_port=23,
        tcp_flags=0x02,
        packets=1,
        start_ms=T0,
        spread_ms=30_000,
        customer_id=-1,
        instance_id=-1,
    )


class ListStore:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[FlowBatch] = []
        self.fail = fail
        self.closed = False

    def write(self, batch: FlowBatch) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.batches.append(batch)

    def close(self) -> None:
        self.closed = True


def alerts(runtime: Runtime) -> list[DetectAlert]:
    with runtime.reading() as session:
        return list(session.scalars(select(DetectAlert)))


def test_records_are_stored_then_judged_and_the_alert_recorded(runtime: Runtime) -> None:
    store = ListStore()
    engine = Engine(runtime.settings.detect, [ScanDetector(runtime.settings.detect.scan)])
    sink = DetectingSink(runtime, store, engine)
    sink.write(scan_trace().batch())
    assert len(store.batches) == 1
    assert alerts(runtime) == []  # the window is still open
    sink.close()
    (alert,) = alerts(runtime)
    assert (alert.ip, alert.category, alert.kind) == (SCANNER, "scan", "horizontal")
    assert store.closed


def test_a_store_failure_reaches_the_collector_and_nothing_is_judged(runtime: Runtime) -> None:
    engine = Engine(runtime.settings.detect, [ScanDetector(runtime.settings.detect.scan)])
    sink = DetectingSink(runtime, ListStore(fail=True), engine)
    with pytest.raises(OSError, match="No space left"):
        sink.write(scan_trace().batch())
    assert engine.stats.records == 0


def test_a_detection_failure_is_counted_and_never_raised(runtime: Runtime) -> None:
    class Broken(ScanDetector):
        def evaluate(self, frame: object) -> list[object]:  # type: ignore[override]
            raise RuntimeError("detector bug")

    store = ListStore()
    engine = Engine(runtime.settings.detect, [Broken(runtime.settings.detect.scan)], strict=True)
    sink = DetectingSink(runtime, store, engine)
    sink.write(scan_trace().batch())
    sink.close()
    assert len(store.batches) == 1
    assert sink.failures == 1
    assert alerts(runtime) == []


def test_the_collector_sink_is_tapped_through_the_entry_point(runtime: Runtime) -> None:
    (customer,) = make_customers(runtime, "Telnet Scanner Ltd")
    make_ranges(runtime, "100.64.9.0/24")
    with runtime.operation(system_actor("test")) as op:
        inventory.assign(op, SCANNER, customer, valid_from="2026-01-01T00:00:00Z")
    store = open_store(runtime)
    sink = tapped(runtime, store, 3)
    try:
        assert isinstance(sink, DetectingSink) and sink.store is store
        assert {d.name for d in sink.engine.detectors} >= {"scan", "volumetric", "bruteforce"}
        Ingestor(runtime, sink).ingest(scan_trace().batch())
    finally:
        sink.close()
    # The records were stored, attributed at ingest.
    reopened = open_store(runtime)
    try:
        assert reopened.query(start_ms=T0 - 60_000, end_ms=T0 + 60_000).num_rows == 40
    finally:
        reopened.close()
    scans = [a for a in alerts(runtime) if a.category == "scan"]
    assert [(a.ip, a.customer_id) for a in scans] == [(SCANNER, customer)]
    expected = runtime.settings.home / worker_state_dir(runtime.settings.detect, 3)
    assert expected == runtime.settings.home / "detect" / "worker-3"


def test_detection_can_be_switched_off(runtime: Runtime, tmp_path: Path) -> None:
    store = ListStore()
    off = runtime.settings.model_copy(
        update={"detect": runtime.settings.detect.model_copy(update={"enabled": False})}
    )
    runtime.settings = off
    assert tap(runtime, store) is store
