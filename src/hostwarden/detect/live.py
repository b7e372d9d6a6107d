"""Detection on the collectors' batches as they arrive: a record sink that stores first,
then detects.

The collector worker builds its sink through the ``hostwarden.ingest_taps`` entry points
(``flows`` may not import ``detect``: packages depend downward only), and this module's
``tap`` wraps the flow store in a ``DetectingSink`` when ``[detect] enabled``.

Order matters: the batch is stored first, because the stored records are the legal
record and a failed write makes the collector retry the same batch; detection runs only
on a batch that was stored, so a retried batch is never judged twice. A failure in
detection or in recording alerts is logged and counted and never reaches the collector,
which would otherwise write the batch again.

Each collector worker process has its own engine. The kernel spreads exporters over the
workers (SO_REUSEPORT hashes the exporter's address and port), so an address seen by
two exporters on two workers is judged on each worker's share; with one worker (the
default) or one exporter per address, nothing is split. docs/detect.md says this.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostwarden.core.config_detect import DetectSettings
from hostwarden.core.logs import get_logger
from hostwarden.detect.engine import Engine
from hostwarden.detect.findings import Finding
from hostwarden.detect.plugins import load_detectors
from hostwarden.flows.ingest import RecordSink
from hostwarden.flows.schema import FlowBatch

if TYPE_CHECKING:
    from hostwarden.core.runtime import Runtime

log = get_logger("hostwarden.detect")

#: Detector state (baselines) is saved this often, and when the sink closes.
SAVE_SECONDS = 300.0


class DetectingSink:
    """Store, then detect, then record the alerts (see the module's note)."""

    def __init__(self, runtime: Runtime, store: RecordSink, engine: Engine) -> None:
        from hostwarden.detect.alerts import AlertSink

        self.runtime = runtime
        self.store = store
        self.engine = engine
        self.alerts = AlertSink(runtime)
        self.failures = 0
        self._saved_at = time.monotonic()
        self._lock = threading.Lock()

    def write(self, batch: FlowBatch) -> None:
        self.store.write(batch)
        with self._lock:
            self._judge(lambda: self.engine.feed(batch))

    def _judge(self, run: Any) -> None:
        try:
            findings: list[Finding] = run()
            if findings:
                self.alerts.take(findings)
        except Exception as exc:
            self.failures += 1
            log.error("detect.failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        if time.monotonic() - self._saved_at >= SAVE_SECONDS:
            self.engine.save_state()
            self._saved_at = time.monotonic()

    def seal_due(self) -> None:
        seal_due = getattr(self.store, "seal_due", None)
        if seal_due is not None:
            seal_due()

    def flush(self) -> None:
        flush = getattr(self.store, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Judge what the open windows hold, save the detectors' state, close the store."""
        with self._lock:
            self._judge(self.engine.flush)  # the flush saves the detectors' state too
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def worker_state_dir(settings: DetectSettings, worker: int) -> Path:
    """Where collector worker ``worker`` keeps its detectors' state (relative to the
    data directory, unless ``state_dir`` is absolute): one directory per worker, since
    each worker's engine sees its own share of the exporters."""
    return settings.state_dir / f"worker-{worker}"


def tap(runtime: Runtime, store: RecordSink, *, worker: int = 0) -> RecordSink:
    """Entry point of ``hostwarden.ingest_taps``: the store, or the store with detection
    in front when ``[detect] enabled``."""
    settings = runtime.settings.detect
    if not settings.enabled:
        return store
    settings = settings.model_copy(update={"state_dir": worker_state_dir(settings, worker)})
    detectors = load_detectors(settings, runtime.settings.home)
    if not detectors:
        return store
    log.info("detect.live", detectors=[d.name for d in detectors])
    return DetectingSink(runtime, store, Engine(settings, detectors))
