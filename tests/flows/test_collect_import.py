"""Collectors and imports end to end: real exporter captures in, attributed records stored,
the store verifiable; a worker process receiving over loopback UDP; bad input counted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.config import FlowListener
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.flows.collector import CollectorMetrics, CollectorWorker, read_worker_stats
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.pcap import PcapReader
from hostwarden.flows.schema import FlowBatch
from hostwarden.flows.store import open_store
from hostwarden.registry import inventory
from tests.registry.inventory_support import make_customers, make_ranges

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows"
V9 = FIXTURES / "pmacct-nfprobe-v9.pcap"
SFLOW = FIXTURES / "pmacct-sflow.pcap"
runner = CliRunner()


class ListSink:
    def __init__(self) -> None:
        self.batches: list[FlowBatch] = []

    def write(self, batch: FlowBatch) -> None:
        self.batches.append(batch)


@pytest.fixture
def server_customer(runtime: Runtime) -> int:
    """The traffic generator's server 203.0.113.5 belongs to a customer since 2023."""
    (acme,) = make_customers(runtime, "Acme Hosting Customer")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(system_actor("test")) as op:
        inventory.assign(op, "203.0.113.5", acme, valid_from="2023-01-01T00:00:00Z")
    return acme


def datagrams(path: Path) -> list[tuple[bytes, str, int]]:
    return [(d.payload, d.src_ip, d.timestamp_ms) for d in PcapReader(path)]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_capture_is_imported_attributed_stored_and_verifiable(
    runtime: Runtime, env_for_home: dict[str, str], server_customer: int
) -> None:
    result = runner.invoke(app, ["flows", "import", str(V9), str(SFLOW), "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [r["format"] for r in reports] == ["pcap", "pcap"]
    assert all(r["records"] > 0 and not r["errors"] for r in reports)
    assert all(r["attributed"] > 0 for r in reports), "203.0.113.5's flows name its customer"
    store = open_store(runtime)
    try:
        day = reports[0]
        found = store.query(start_ms=0, end_ms=2**62, ips=["203.0.113.5"], limit=None).to_pydict()
        assert len(found["start"]) >= day["attributed"]
        assert set(found["customer_id"]) == {server_customer}
        assert store.verify().ok
    finally:
        store.close()
    verify = runner.invoke(app, ["logs", "verify"])
    assert verify.exit_code == 0, verify.output


def test_a_truncated_capture_imports_what_came_before_and_says_where_it_ends(
    runtime: Runtime, env_for_home: dict[str, str], tmp_path: Path
) -> None:
    cut = tmp_path / "cut.pcap"
    data = SFLOW.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = runner.invoke(app, ["flows", "import", str(cut), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["records"] > 0
    assert any("ends early at byte" in n for n in report["notes"])


def test_bad_import_requests_say_what_to_do(
    runtime: Runtime, env_for_home: dict[str, str], tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not flows\n")
    for args, words in (
        (["flows", "import", str(notes)], "cannot tell"),
        (["flows", "import", str(V9), "--format", "netflow11"], "not an import format"),
        (["flows", "import", str(FIXTURES / "nfdump-v9.csv")], "--tz"),
        (
            ["flows", "query", "--from", "2026-05-01T08:00", "--to", "2026-05-02T00:00Z"],
            "no time zone",
        ),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert words in result.output, (args, result.output)


def test_a_worker_receives_over_udp_decodes_batches_and_reports(
    runtime: Runtime, server_customer: int
) -> None:
    port = free_udp_port()
    settings = runtime.settings.model_copy(
        update={
            "flows": runtime.settings.flows.model_copy(
                update={
                    "listeners": [FlowListener(protocol="netflow", host="127.0.0.1", port=port)],
                    "batch_seconds": 0.2,
                }
            )
        }
    )
    sink = ListSink()
    worker = CollectorWorker(settings, Ingestor(runtime, sink))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    sent = datagrams(V9)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for payload, _, _ in sent:
            sender.sendto(payload, ("127.0.0.1", port))
        sender.sendto(b"\x00\x09garbage", ("127.0.0.1", port))
    deadline = time.monotonic() + 10
    while worker.stats.datagrams < len(sent) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop.set()
    thread.join(10)
    worker.close()
    stored = FlowBatch.concat(sink.batches)
    assert worker.stats.datagrams == len(sent) + 1
    assert len(stored) == worker.stats.records > 0
    assert sum(worker.stats.errors.values()) >= 1, "the garbage datagram is counted"
    assert np.any(stored["customer_id"] == server_customer)
    # Templates survive a restart: a new worker decodes data without waiting for them.
    assert (settings.home / settings.flows.store_dir / "templates" / "worker-0.bin").exists()
    stats = read_worker_stats(settings)
    assert stats and stats[0]["datagrams"] == len(sent) + 1
    names = {m.name for m in CollectorMetrics(settings).collect()}
    assert {"hostwarden_flow_datagrams", "hostwarden_flow_decode_errors"} <= names


def test_a_write_failure_keeps_the_records_for_the_next_flush(runtime: Runtime) -> None:
    class Flaky(ListSink):
        fail = True

        def write(self, batch: FlowBatch) -> None:
            if self.fail:
                raise OSError(28, "No space left on device")
            super().write(batch)

    sink = Flaky()
    worker = CollectorWorker(runtime.settings, Ingestor(runtime, sink), sockets=[])
    for payload, exporter, at in datagrams(V9):
        worker.receive(payload, exporter, at)
    decoded = worker.stats.records
    worker.flush()
    assert worker.stats.write_failures == 1 and sink.batches == []
    sink.fail = False
    worker.flush()
    assert len(FlowBatch.concat(sink.batches)) == decoded


def test_flows_collect_runs_worker_processes_and_stops_cleanly(
    runtime: Runtime, env_for_home: dict[str, str]
) -> None:
    port = free_udp_port()
    toml = Path(env_for_home["HOSTWARDEN_HOME"]) / "hostwarden.toml"
    toml.write_text(
        f"[flows]\nworkers = 2\nbatch_seconds = 0.2\n[[flows.listeners]]\n"
        f'protocol = "netflow"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostwarden", "flows", "collect"],
        env={**os.environ, **env_for_home},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        settings = runtime.settings
        deadline = time.monotonic() + 30
        while len(read_worker_stats(settings)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(read_worker_stats(settings)) == 2, "both workers report"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for payload, _, _ in datagrams(V9):
                sender.sendto(payload, ("127.0.0.1", port))
        while time.monotonic() < deadline:
            received = sum(w["datagrams"] for w in read_worker_stats(settings))
            if received >= len(datagrams(V9)):
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    store = open_store(runtime)
    try:
        assert sum(s.rows for s in store.segments()) > 0, "records were sealed on shutdown"
        assert store.verify().ok
    finally:
        store.close()


def test_a_port_that_cannot_be_bound_is_a_clear_error(
    runtime: Runtime, env_for_home: dict[str, str]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: nobody else may share it
        port = holder.getsockname()[1]
        toml = Path(env_for_home["HOSTWARDEN_HOME"]) / "hostwarden.toml"
        toml.write_text(
            f'[[flows.listeners]]\nprotocol = "sflow"\nhost = "127.0.0.1"\nport = {port}\n'
        )
        result = runner.invoke(app, ["flows", "collect"])
    assert result.exit_code == 1
    assert "cannot listen for sflow" in result.output
    assert "[flows] listeners" in result.output


def test_a_listener_gets_its_whole_receive_buffer_where_the_process_may_force_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hostwarden.flows import collector

    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    if rmem_max >= collector.RECEIVE_BUFFER:
        pytest.skip("net.core.rmem_max already allows the whole buffer here")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = FlowListener(protocol="netflow", host="127.0.0.1", port=port)
    # Linux reports twice the buffer it grants (its bookkeeping included).
    with collector.open_listener(listener) as sock:
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if os.geteuid() == 0:  # CAP_NET_ADMIN: past rmem_max with SO_RCVBUFFORCE
        assert granted == 2 * collector.RECEIVE_BUFFER
    else:
        assert granted <= 2 * rmem_max
    # Without the option (other systems, or refused), SO_RCVBUF's capped buffer stands.
    monkeypatch.setattr(collector, "_SO_RCVBUFFORCE", None)
    with collector.open_listener(listener) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * rmem_max
