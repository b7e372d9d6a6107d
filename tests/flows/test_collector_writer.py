"""The collector's writer thread: storing never holds up receiving, a store that fails
loses nothing that fits in memory, a writer that falls behind drops whole batches and
counts them, and stopping (SIGTERM) stores everything decoded."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hostwarden.core.config import FlowListener, Settings
from hostwarden.core.runtime import Runtime
from hostwarden.flows.collector import CollectorWorker
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.schema import FlowBatch
from hostwarden.flows.store import open_store
from tests.flows.test_collect_import import V9, ListSink, datagrams, free_udp_port


def listening(runtime: Runtime, port: int, **flows: object) -> Settings:
    return runtime.settings.model_copy(
        update={
            "flows": runtime.settings.flows.model_copy(
                update={
                    "listeners": [FlowListener(protocol="netflow", host="127.0.0.1", port=port)],
                    "batch_seconds": 0.1,
                    **flows,
                }
            )
        }
    )


def send_capture(port: int) -> int:
    sent = datagrams(V9)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for payload, _, _ in sent:
            sender.sendto(payload, ("127.0.0.1", port))
    return len(sent)


def wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_records_survive_a_store_that_fails_until_it_recovers(runtime: Runtime) -> None:
    class FullDisk(ListSink):
        fail = True
        tries = 0

        def write(self, batch: FlowBatch) -> None:
            self.tries += 1
            if self.fail:
                raise OSError(28, "No space left on device")
            super().write(batch)

    port = free_udp_port()
    sink = FullDisk()
    worker = CollectorWorker(listening(runtime, port), Ingestor(runtime, sink))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        count = send_capture(port)
        wait_until(lambda: worker.stats.datagrams == count and worker.stats.write_failures >= 2)
        assert sink.batches == [], "nothing stored while the disk is full"
        worker.write_stats()
        assert worker.stats.pending_records == worker.stats.records > 0, "all kept, none lost"
        sink.fail = False
        wait_until(lambda: bool(sink.batches))
    finally:
        worker.stop.set()
        thread.join(15)
        worker.close()
    stored = FlowBatch.concat(sink.batches)
    assert len(stored) == worker.stats.records, "every record stored once"
    assert "dropped-after-write-failure" not in worker.stats.errors


def test_a_writer_that_falls_behind_drops_whole_batches_and_counts_them(
    runtime: Runtime,
) -> None:
    class Stuck(ListSink):
        def __init__(self) -> None:
            super().__init__()
            self.entered = threading.Event()
            self.release = threading.Event()

        def write(self, batch: FlowBatch) -> None:
            self.entered.set()
            self.release.wait(30)
            super().write(batch)

    port = free_udp_port()
    sink = Stuck()
    worker = CollectorWorker(
        listening(runtime, port, batch_records=1), Ingestor(runtime, sink), writer_queue_records=1
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        count = send_capture(port)
        wait_until(lambda: worker.stats.datagrams == count)
        wait_until(sink.entered.is_set)
        # The writer is stuck in one write; receiving goes on. The next batch waits in
        # the queue, and the ones after it find the queue full.
        for _ in range(3):
            count += send_capture(port)
            wait_until(lambda expected=count: worker.stats.datagrams == expected)
            time.sleep(0.2)
        wait_until(lambda: worker.stats.errors["dropped-writer-behind"] > 0)
        sink.release.set()
    finally:
        sink.release.set()
        worker.stop.set()
        thread.join(15)
        worker.close()
    stored = len(FlowBatch.concat(sink.batches))
    dropped = worker.stats.errors["dropped-writer-behind"]
    assert stored + dropped == worker.stats.records, "each record stored or counted"
    assert stored > 0 and dropped > 0


def test_sigterm_stores_every_decoded_record(
    runtime: Runtime, env_for_home: dict[str, str]
) -> None:
    """Segments are due only at shutdown (an hour, a million records), so every stored
    record went through the writer's last write and the store's closing seal."""
    port = free_udp_port()
    home = Path(env_for_home["HOSTWARDEN_HOME"])
    (home / "hostwarden.toml").write_text(
        f"[flows]\nworkers = 1\nbatch_seconds = 600\nsegment_seconds = 3600\n"
        f'[[flows.listeners]]\nprotocol = "netflow"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    stats_file = home / "run" / "collector-0.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostwarden", "flows", "collect"],
        env={**os.environ, **env_for_home},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(stats_file.exists, 30)
        count = send_capture(port)

        def received() -> bool:
            return int(json.loads(stats_file.read_text())["datagrams"]) >= count

        wait_until(received)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stats = json.loads(stats_file.read_text())
    store = open_store(runtime)
    try:
        assert stats["records"] > 0
        assert sum(s.rows for s in store.segments()) == stats["records"]
        assert stats["pending_records"] == 0
        assert store.verify().ok
    finally:
        store.close()
