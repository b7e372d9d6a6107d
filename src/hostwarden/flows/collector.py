"""UDP collectors for NetFlow, IPFIX and sFlow exports.

``hostwarden flows collect`` (and ``serve``) start ``settings.flows.workers`` worker
processes. Every worker binds every listener with ``SO_REUSEPORT``, so the kernel spreads
exporters over the workers by address hash and one exporter's datagrams stay with one
worker, which keeps that exporter's templates. A worker's receiving thread reads the
sockets and decodes the datagrams in small batches; every ``batch_records`` records or
``batch_seconds`` seconds it hands the records to the worker's writer thread, which
attributes them and writes them to the store. Sealing a segment takes a second or two;
on the receiving thread that let the socket buffer overflow (bench/RESULTS.md), so it
happens on the writer thread, which mostly runs with the GIL released (sorting, Parquet
encoding, zstd, fsync). The hand-off is bounded: when the writer falls that far behind,
new batches are dropped and counted (``dropped-writer-behind``) rather than making the
receiving thread wait, as the kernel would drop them anyway, uncounted by reason.

Each worker writes its counters once a second to ``<home>/run/collector-<n>.json``; the
service's ``/metrics`` reads those files (``CollectorMetrics``), so the figures are
there whether the collectors run inside ``serve`` or as their own command. Kernel drops
(datagrams the socket buffer had no room for) are read from ``/proc/net/udp[6]`` for
the worker's own sockets.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hostwarden.core.config import FlowListener, Settings
from hostwarden.core.logs import get_logger
from hostwarden.errors import HostwardenError
from hostwarden.flows.decode.base import DecodeResult
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.schema import FlowBatch

if TYPE_CHECKING:
    from hostwarden.core.runtime import Runtime

log = get_logger("hostwarden.flows.collector")

RECEIVE_BUFFER = 32 * 1024 * 1024  # asked for; see _receive_buffer
#: Linux's option number (asm-generic/socket.h); Python's socket module does not name it.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform == "linux" else None)
DRAIN_PER_WAKEUP = 512  # datagrams read from one socket before looking at the others
#: Datagrams are decoded together once this many have gathered, or after this long.
DECODE_DATAGRAMS = 256
#: A wakeup that found fewer datagrams than this waits this long before the next one.
GATHER_BELOW = 256
GATHER_SECONDS = 0.004
DECODE_SECONDS = 0.02
STATS_SECONDS = 1.0
TEMPLATE_SAVE_SECONDS = 10.0
#: Records the writer thread may have waiting (or ten batches, if more): past that, new
#: batches are dropped and counted. About 150 bytes a record in memory; at 200,000
#: records/s, a million records ride out a five-second stall of the store.
WRITER_QUEUE_RECORDS = 1_000_000


def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def template_path(settings: Settings, worker: int) -> Path:
    return settings.home / settings.flows.store_dir / "templates" / f"worker-{worker}.bin"


def _receive_buffer(sock: socket.socket) -> None:
    """Ask for RECEIVE_BUFFER bytes of socket buffer. The kernel caps SO_RCVBUF at
    net.core.rmem_max (often 208 KiB: 150 datagrams, a tenth of a second at 400,000
    records/s); a process allowed to (CAP_NET_ADMIN, root) passes the cap with
    SO_RCVBUFFORCE, so that sealing a segment cannot overflow it. A smaller buffer still
    works: its drops are counted."""
    if _SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
            return
        except OSError:
            pass  # not permitted: as much as rmem_max allows
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def open_listener(listener: FlowListener) -> socket.socket:
    """A non-blocking UDP socket bound with SO_REUSEPORT; ``::`` takes IPv4 too."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        _receive_buffer(sock)
        sock.bind((listener.host, listener.port))
    except OSError as exc:
        sock.close()
        raise HostwardenError(
            f"cannot listen for {listener.protocol} on [{listener.host}]:{listener.port}: "
            f"{exc.strerror or exc}.",
            hint="Another program may hold the port (nfcapd, pmacct?), or ports below 1024 "
            "need root; change [flows] listeners in hostwarden.toml.",
        ) from exc
    sock.setblocking(False)
    return sock


def kernel_drops(inodes: set[int]) -> tuple[int, int]:
    """Datagrams dropped by the kernel and bytes waiting in the receive queues of the
    sockets with these inodes (Linux /proc/net/udp and udp6)."""
    drops = queued = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 13 and int(parts[9]) in inodes:
                queued += int(parts[4].split(":")[1], 16)
                drops += int(parts[12])
    return drops, queued


def _exporter_text(address: str) -> str:
    return address[7:] if address.startswith("::ffff:") else address


@dataclass
class WorkerStats:
    worker: int
    datagrams: int = 0
    bytes: int = 0
    records: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    batches_written: int = 0
    write_failures: int = 0
    pending_records: int = 0
    writer_queue_records: int = 0
    buffered_sets: int = 0
    kernel_drops: int = 0
    kernel_queue_bytes: int = 0
    by_protocol: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "updated": time.time(),
            "datagrams": self.datagrams,
            "bytes": self.bytes,
            "records": self.records,
            "errors": dict(self.errors),
            "batches_written": self.batches_written,
            "write_failures": self.write_failures,
            "pending_records": self.pending_records,
            "writer_queue_records": self.writer_queue_records,
            "buffered_sets": self.buffered_sets,
            "kernel_drops": self.kernel_drops,
            "kernel_queue_bytes": self.kernel_queue_bytes,
            "by_protocol": dict(self.by_protocol),
        }


class CollectorWorker:
    """One worker: a receiving thread (receive, decode, batch) and a writer thread
    (attribute, store, seal)."""

    def __init__(
        self,
        settings: Settings,
        ingestor: Ingestor,
        *,
        worker: int = 0,
        sockets: list[socket.socket] | None = None,
        stop: threading.Event | None = None,
        writer_queue_records: int | None = None,
    ) -> None:
        self.settings = settings
        self.flows = settings.flows
        self.ingestor = ingestor
        self.worker = worker
        self.stop = stop or threading.Event()
        self.sockets = sockets if sockets is not None else self._open()
        self.inodes = {os.fstat(s.fileno()).st_ino for s in self.sockets}
        # Imported here: the service's /metrics imports this module for CollectorMetrics
        # without needing the decoders.
        from hostwarden.flows.decode import Decoder, TemplateCache

        self.templates_file = template_path(settings, worker)
        self.templates = (
            TemplateCache.load(self.templates_file) if self.templates_file.exists() else None
        )
        self.decoder = Decoder(
            self.templates,
            wait_seconds=self.flows.template_wait_seconds,
            wait_bytes=self.flows.template_wait_bytes,
        )
        self.stats = WorkerStats(worker)
        self._received: list[tuple[bytes, str, int]] = []
        self._received_since = 0.0
        # Decoded on the receiving thread, not handed off yet.
        self._pending: list[FlowBatch] = []
        self._pending_records = 0
        self._last_flush = time.monotonic()
        # Handed off, waiting for the writer thread; and what a failed write kept.
        self._queue: list[FlowBatch] = []
        self._queued_records = 0
        self._kept: FlowBatch | None = None
        self._writing = 0  # records in the write under way, for the stats
        self._dropped_unlogged = 0
        self._dropped_logged_at = 0.0
        self._queue_limit = writer_queue_records or max(
            WRITER_QUEUE_RECORDS, 10 * self.flows.batch_records
        )
        self._wakeup = threading.Condition()
        self._writer_done = threading.Event()
        # One write at a time: the writer thread's, or flush() from the caller.
        self._write_lock = threading.Lock()
        self._stats_file = run_dir(settings) / f"collector-{worker}.json"

    def _open(self) -> list[socket.socket]:
        opened: list[socket.socket] = []
        try:
            for listener in self.flows.listeners:
                opened.append(open_listener(listener))
        except Exception:
            for sock in opened:
                sock.close()
            raise
        return opened

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        """Receive until ``stop`` is set, then hand everything to the store: what was
        decoded, what the writer had queued, and (by the caller closing the store) the
        store's buffers."""
        selector = selectors.DefaultSelector()
        for sock in self.sockets:
            selector.register(sock, selectors.EVENT_READ, data=sock)
        self._writer_done.clear()
        writer = threading.Thread(
            target=self._writer_loop, name=f"hostwarden-writer-{self.worker}", daemon=True
        )
        writer.start()
        next_stats = next_save = time.monotonic()
        try:
            while not self.stop.is_set():
                drained = 0
                for key, _ in selector.select(timeout=0.02 if self._received else 0.2):
                    drained += self._drain(key.data)
                if 0 < drained < GATHER_BELOW:
                    # A wakeup for a datagram or two costs about as much CPU as reading
                    # them: let a few milliseconds' worth gather in the socket buffer.
                    time.sleep(GATHER_SECONDS)
                now = time.monotonic()
                if len(self._received) >= DECODE_DATAGRAMS or (
                    self._received and now - self._received_since >= DECODE_SECONDS
                ):
                    self._decode_received()
                if self._pending_records >= self.flows.batch_records or (
                    self._pending_records and now - self._last_flush >= self.flows.batch_seconds
                ):
                    self._hand_off()
                if now >= next_stats:
                    self._take(self.decoder.expire(int(time.time() * 1000)))
                    self.write_stats()
                    next_stats = now + STATS_SECONDS
                if now >= next_save:
                    self.save_templates()
                    next_save = now + TEMPLATE_SAVE_SECONDS
        finally:
            selector.close()
            self._decode_received()
            self._hand_off(bounded=False)
            self._writer_done.set()
            with self._wakeup:
                self._wakeup.notify()
            writer.join()
            self.flush()  # whatever the writer thread could not write: one more try
            self.save_templates()
            self.write_stats()

    def _drain(self, sock: socket.socket) -> int:
        """Read what the socket holds (up to DRAIN_PER_WAKEUP datagrams); how many were
        read. Decoding waits until DECODE_DATAGRAMS datagrams or DECODE_SECONDS have
        gathered: one decode call has a fixed cost of about 0.2 ms, so decoding each
        wakeup's one or two datagrams on a quiet network cost ten times the CPU of
        decoding them in batches."""
        now_ms = int(time.time() * 1000)
        if not self._received:
            self._received_since = time.monotonic()
        received = self._received
        before = len(received)
        for _ in range(DRAIN_PER_WAKEUP):
            try:
                payload, address = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            received.append((payload, _exporter_text(address[0]), now_ms))
        return len(received) - before

    def _decode_received(self) -> None:
        received, self._received = self._received, []
        if received:
            self.receive_many(received)

    def receive(self, payload: bytes, exporter: str, received_ms: int) -> None:
        """Decode one datagram into the pending batch (also used by tests and replays)."""
        self.receive_many([(payload, exporter, received_ms)])

    def receive_many(self, datagrams: list[tuple[bytes, str, int]]) -> None:
        self.stats.datagrams += len(datagrams)
        self.stats.bytes += sum(len(d[0]) for d in datagrams)
        self._take(self.decoder.decode_many(datagrams))

    def _take(self, result: DecodeResult) -> None:
        if len(result.batch):
            self._pending.append(result.batch)
            self._pending_records += len(result.batch)
            self.stats.records += len(result.batch)
            counts = np.bincount(result.batch["source"])
            for code in np.flatnonzero(counts).tolist():
                self.stats.by_protocol[_protocol_label(code)] += int(counts[code])
        self.stats.buffered_sets = result.buffered
        for error in result.errors:
            self.stats.errors[error.reason] += 1
            log.warning(
                "flows.decode_error",
                exporter=error.exporter,
                reason=error.reason,
                detail=error.detail[:300],
            )

    def _hand_off(self, *, bounded: bool = True) -> None:
        """Pass the decoded records to the writer thread without waiting for it. If it
        has more than the queue's limit waiting, the batch is dropped and counted."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        # Joined into one batch by the writer thread: a copy of every record, kept off
        # this thread.
        batch, size = self._pending, self._pending_records
        self._pending, self._pending_records = [], 0
        with self._wakeup:
            # An empty queue takes any batch: the limit bounds a backlog, not a batch.
            full = self._queued_records and self._queued_records + size > self._queue_limit
            if bounded and full:
                self.stats.errors["dropped-writer-behind"] += size
                self._dropped_unlogged += size
                now = time.monotonic()
                if now - self._dropped_logged_at >= STATS_SECONDS:
                    # One line a second at most: an overloaded worker drops many batches.
                    log.warning(
                        "flows.writer_behind",
                        dropped=self._dropped_unlogged,
                        queued=self._queued_records,
                        limit=self._queue_limit,
                    )
                    self._dropped_unlogged, self._dropped_logged_at = 0, now
                return
            self._queue.extend(batch)
            self._queued_records += size
            self._wakeup.notify()

    def _writer_loop(self) -> None:
        """The writer thread: store what is handed off, retry what a failed write kept
        every ``batch_seconds``, and let the store seal segments whose time is up; at
        shutdown, write what is queued and stop."""
        next_due = time.monotonic() + STATS_SECONDS
        last_try = time.monotonic()
        while True:
            with self._wakeup:
                if not self._queue and not self._writer_done.is_set():
                    self._wakeup.wait(STATS_SECONDS)
                queued = bool(self._queue)
                done = self._writer_done.is_set()
            now = time.monotonic()
            if queued or (self._kept is not None and now - last_try >= self.flows.batch_seconds):
                self._write_queued()
                last_try = time.monotonic()
            if now >= next_due:
                self._seal_due()
                next_due = now + STATS_SECONDS
            if done and not queued:
                return

    def flush(self) -> None:
        """Attribute and store every record not stored yet, on the calling thread (the
        writer thread does this while the worker runs)."""
        self._hand_off(bounded=False)
        self._write_queued()

    def _write_queued(self) -> None:
        """One write of everything queued, after what an earlier failed write kept. A
        failed write keeps the records (bounded: beyond ten batches' worth the oldest
        are dropped and counted) so a store that recovers (disk freed) loses nothing
        that fitted in memory."""
        with self._write_lock:
            # The counts move under the queue's lock, so that write_stats never sees the
            # records in no place (taken from the queue but not yet being written).
            with self._wakeup:
                queued, self._queue = self._queue, []
                kept, self._kept = self._kept, None
                self._writing = self._queued_records + (len(kept) if kept is not None else 0)
                self._queued_records = 0
            batch = FlowBatch.concat(([kept] if kept is not None else []) + queued)
            if not len(batch):
                return
            try:
                self.ingestor.ingest(batch)
            except Exception as exc:
                self.stats.write_failures += 1
                log.error(
                    "flows.write_failed",
                    records=len(batch),
                    error=type(exc).__name__,
                    detail=str(exc)[:300],
                )
                limit = 10 * self.flows.batch_records
                if len(batch) > limit:
                    self.stats.errors["dropped-after-write-failure"] += len(batch) - limit
                    batch = batch.take(np.arange(len(batch) - limit, len(batch)))
                with self._wakeup:
                    self._kept, self._writing = batch, 0
                return
            with self._wakeup:
                self._writing = 0
            self.stats.batches_written += 1

    def _seal_due(self) -> None:
        """Let the store seal segments whose time is up (``segment_seconds``) even when
        no more records arrive; a sink without segments has nothing to do."""
        seal_due = getattr(self.ingestor.sink, "seal_due", None)
        if seal_due is None:
            return
        try:
            seal_due()
        except Exception as exc:  # the store keeps the records and retries itself
            self.stats.write_failures += 1
            log.error("flows.seal_failed", error=type(exc).__name__, detail=str(exc)[:300])

    def save_templates(self) -> None:
        try:
            self.decoder.templates.save(self.templates_file)
        except OSError as exc:
            log.warning("flows.template_save_failed", detail=str(exc)[:300])

    def write_stats(self) -> None:
        with self._wakeup:
            kept = self._kept
            queued = self._queued_records + self._writing
        self.stats.writer_queue_records = queued
        self.stats.pending_records = (
            self._pending_records + queued + (len(kept) if kept is not None else 0)
        )
        self.stats.kernel_drops, self.stats.kernel_queue_bytes = kernel_drops(self.inodes)
        path = self._stats_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_text(json.dumps(self.stats.as_dict()), encoding="utf-8")
            partial.replace(path)
        except OSError as exc:
            log.warning("flows.stats_write_failed", detail=str(exc)[:300])

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _protocol_label(code: int) -> str:
    from hostwarden.flows.schema import FlowSource

    try:
        return FlowSource(code).label
    except ValueError:
        return str(code)


# --- processes ------------------------------------------------------------------------


#: Entry point group of sinks that see the collectors' attributed batches after the store
#: (``detect`` is one): each entry is ``(runtime, sink, *, worker) -> sink``, wrapping the
#: one given. An entry point, because ``flows`` may not import the packages built on it.
TAP_GROUP = "hostwarden.ingest_taps"


def tapped(runtime: Runtime, store: Any, worker: int = 0) -> Any:
    """The store wrapped by every installed tap, in entry point name order."""
    from importlib.metadata import entry_points

    sink = store
    for ep in sorted(entry_points(group=TAP_GROUP), key=lambda e: e.name):
        sink = ep.load()(runtime, sink, worker=worker)
    return sink


def _worker_main(home: str, config: str | None, worker: int) -> None:
    """Entry of a worker process: its own runtime, store and sockets."""
    from hostwarden.core.config import load_settings
    from hostwarden.core.logs import configure_logging
    from hostwarden.core.runtime import Runtime
    from hostwarden.flows.store import open_store

    settings = load_settings(Path(home), Path(config) if config else None)
    configure_logging(settings.logging.level, settings.logging.format)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runtime = Runtime.open(settings)
    store = tapped(runtime, open_store(runtime), worker)
    try:
        collector = CollectorWorker(settings, Ingestor(runtime, store), worker=worker, stop=stop)
        # The registry index is built now, not when the first batch is due: that took
        # half a second with 4,000 assignments, while datagrams queued in the kernel.
        from hostwarden.registry import attribution

        attribution.warm(runtime)
        log.info(
            "flows.worker_started",
            worker=worker,
            pid=os.getpid(),
            # As the kernel reports it (Linux: twice the usable buffer).
            receive_buffer=[
                s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for s in collector.sockets
            ],
        )
        try:
            collector.run()
        finally:
            collector.close()
    finally:
        store.close()
        runtime.close()


class CollectorGroup:
    """The worker processes of ``flows collect`` (or of ``serve``)."""

    def __init__(self, settings: Settings, config_file: Path | None = None) -> None:
        self.settings = settings
        self.config_file = config_file
        self.processes: list[multiprocessing.process.BaseProcess] = []

    def start(self) -> None:
        # Fail here, in the parent, with a clear message if a port cannot be bound.
        for listener in self.settings.flows.listeners:
            open_listener(listener).close()
        context = multiprocessing.get_context("spawn")
        for worker in range(self.settings.flows.workers):
            process = context.Process(
                target=_worker_main,
                args=(
                    str(self.settings.home),
                    str(self.config_file) if self.config_file else None,
                    worker,
                ),
                name=f"hostwarden-collector-{worker}",
                daemon=True,
            )
            process.start()
            self.processes.append(process)

    def stop(self, timeout: float = 15.0) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.processes)


# --- metrics --------------------------------------------------------------------------


def read_worker_stats(settings: Settings, max_age: float = 30.0) -> list[dict[str, Any]]:
    """The counters the running workers wrote (files older than ``max_age`` seconds are
    from stopped workers and left out)."""
    found: list[dict[str, Any]] = []
    folder = run_dir(settings)
    for path in sorted(folder.glob("collector-*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if time.time() - float(data.get("updated", 0)) <= max_age:
            found.append(data)
    return found


class CollectorMetrics(Collector):
    """Prometheus figures of the collector workers, read from their stats files."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        workers = read_worker_stats(self.settings)
        simple = (
            ("datagrams", "hostwarden_flow_datagrams", "Export datagrams received."),
            ("bytes", "hostwarden_flow_datagram_bytes", "Bytes of export datagrams received."),
            ("records", "hostwarden_flow_records", "Flow records decoded."),
            ("batches_written", "hostwarden_flow_batches_written", "Batches stored."),
            ("write_failures", "hostwarden_flow_write_failures", "Batches the store refused."),
            ("kernel_drops", "hostwarden_flow_kernel_drops", "Datagrams the kernel dropped."),
        )
        for key, name, doc in simple:
            family = CounterMetricFamily(name, doc, labels=["worker"])
            for w in workers:
                family.add_metric([str(w["worker"])], float(w.get(key, 0)))
            yield family
        errors = CounterMetricFamily(
            "hostwarden_flow_decode_errors", "Decode problems by reason.", labels=["reason"]
        )
        totals: Counter[str] = Counter()
        for w in workers:
            totals.update(w.get("errors", {}))
        for reason, count in sorted(totals.items()):
            errors.add_metric([reason], float(count))
        yield errors
        queue = GaugeMetricFamily(
            "hostwarden_flow_queue",
            "Records waiting to be stored (of which queued for the writer thread), and bytes "
            "waiting in the kernel socket queues.",
            labels=["worker", "where"],
        )
        for w in workers:
            queue.add_metric([str(w["worker"]), "batch"], float(w.get("pending_records", 0)))
            queue.add_metric([str(w["worker"]), "writer"], float(w.get("writer_queue_records", 0)))
            queue.add_metric([str(w["worker"]), "kernel"], float(w.get("kernel_queue_bytes", 0)))
        yield queue
