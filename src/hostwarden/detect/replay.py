"""``hostwarden detect replay``: the live detection path over a file or a stored range.

A file goes through the same reader, decoder and attribution as ``flows import`` and
then into an ``Engine`` instead of the store (nothing is stored); a stored range is read
back from the flow store in pieces. Either way the engine and detectors are the ones
the collectors run, so what replay prints is what live detection would have raised.
sshd logs (``--format ssh-auth``) go to the brute-force detector's log path instead.

Stored records come back ordered by start time, not by end time as a live stream
arrives, so a long flow read early can move the engine's watermark past windows that
shorter, later-starting flows still belong to. Replay of a range therefore waits
``RANGE_LATENESS_S`` (longer than exporters' usual 5 to 30 minute active timeout)
before closing a window; records later still are counted as late in the report.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from hostwarden.core.config_detect import DetectSettings
from hostwarden.detect.engine import Engine
from hostwarden.detect.findings import Finding
from hostwarden.detect.live import worker_state_dir
from hostwarden.detect.plugins import load_detectors
from hostwarden.errors import ValidationFailed
from hostwarden.flows import imports
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.schema import NAMES, FlowBatch

if TYPE_CHECKING:
    from hostwarden.core.runtime import Runtime
    from hostwarden.flows.store import FlowStore
    from hostwarden.flows.store.datasets import LogStore

#: Formats replay reads: the flow formats of ``flows import`` and sshd logs.
FLOW_FORMATS = ("pcap", "nfdump-csv", "jsonl")
LOG_FORMATS = ("ssh-auth",)
RANGE_LATENESS_S = 3600
#: Records read from the store per piece.
RANGE_PIECE_MS = 10 * 60 * 1000

Emit = Callable[[Finding], None]


@dataclass
class ReplayReport:
    source: str
    format: str
    records: int = 0
    findings: int = 0
    alerts_recorded: int = 0
    engine: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "records": self.records,
            "findings": self.findings,
            "alerts_recorded": self.alerts_recorded,
            "engine": self.engine,
        }


class _Output:
    """Where findings go: printed (``emit``) and, with ``record``, into the alert store."""

    def __init__(self, runtime: Runtime, emit: Emit, record: bool) -> None:
        self.emit = emit
        self.sink = None
        if record:
            from hostwarden.detect.alerts import AlertSink

            self.sink = AlertSink(runtime)
        self.count = 0
        self.recorded = 0

    def take(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.emit(finding)
        self.count += len(findings)
        if self.sink is not None and findings:
            results = self.sink.take(findings)
            self.recorded += sum(r.action in ("created", "updated") for r in results)


class _EngineSink:
    """An ingest sink that judges instead of storing."""

    def __init__(self, engine: Engine, output: _Output) -> None:
        self.engine = engine
        self.output = output

    def write(self, batch: FlowBatch) -> None:
        self.output.take(self.engine.feed(batch))


@contextmanager
def scratch_state(runtime: Runtime) -> Iterator[DetectSettings]:
    """The detect settings of a replay: its detectors start from a copy of the first
    collector worker's state (baselines) and write to that copy, so replaying old
    traffic never teaches the live baselines anything."""
    settings = runtime.settings.detect
    live = runtime.settings.home / worker_state_dir(settings, 0)
    with tempfile.TemporaryDirectory(prefix="hostwarden-replay-") as scratch:
        if live.is_dir():
            shutil.copytree(live, scratch, dirs_exist_ok=True)
        yield settings.model_copy(update={"state_dir": Path(scratch)})


def new_engine(
    runtime: Runtime, settings: DetectSettings, *, lateness_seconds: int | None = None
) -> Engine:
    detectors = load_detectors(settings, runtime.settings.home)
    if not detectors:
        raise ValidationFailed(
            "every detector is disabled in [detect].",
            hint="Enable at least one detector (e.g. [detect.scan] enabled = true).",
        )
    return Engine(settings, detectors, lateness_seconds=lateness_seconds)


def replay_file(
    runtime: Runtime,
    path: Path,
    fmt: str = "auto",
    *,
    emit: Emit,
    record: bool = False,
    tz: str | None = None,
    exporter: str = "",
    server_ip: str | None = None,
    year: int | None = None,
    progress: imports.Progress | None = None,
) -> ReplayReport:
    if not path.is_file():
        raise ValidationFailed(f"{path} does not exist or is not a file.", hint="Check the path.")
    nat_regex = runtime.settings.flows.nat_regex
    chosen = imports.detect_format(path, nat_regex) if imports.check_format(fmt) == "auto" else fmt
    if chosen not in FLOW_FORMATS + LOG_FORMATS:
        raise ValidationFailed(
            f"{path.name} is a '{chosen}' file, which no detector reads.",
            hint=f"Replay takes flow files ({', '.join(FLOW_FORMATS)}) and sshd logs (ssh-auth).",
        )
    output = _Output(runtime, emit, record)
    report = ReplayReport(str(path), chosen)
    if chosen in LOG_FORMATS:
        table = _read_log(runtime, path, chosen, tz=tz, server_ip=server_ip, year=year)
        from hostwarden.detect.detectors.bruteforce import ssh_findings

        output.take(ssh_findings(table, runtime.settings.detect.bruteforce))
        report.records = len(table)
    else:
        with scratch_state(runtime) as settings:
            engine = new_engine(runtime, settings)
            ingestor = Ingestor(runtime, _EngineSink(engine, output))
            imported = imports.import_file(
                ingestor, path, chosen, tz=tz, exporter=exporter, progress=progress
            )
            output.take(engine.flush())
        report.records = imported.records
        report.engine = engine.stats.as_dict()
    report.findings = output.count
    report.alerts_recorded = output.recorded
    return report


class _Discard:
    """The flow sink of a log replay: a log file has no flow records."""

    def write(self, batch: FlowBatch) -> None:
        pass


class _Collected:
    """Stands in for a ``LogStore``: keeps the attributed tables in memory."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write(self, dataset: str, table: pa.Table) -> None:
        self.tables.append(table)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _read_log(
    runtime: Runtime,
    path: Path,
    fmt: str,
    *,
    tz: str | None,
    server_ip: str | None,
    year: int | None,
) -> pa.Table:
    collected = _Collected()
    # The import's own two-pass reader and attribution, with the tables kept here
    # instead of sealed (the store's interface is all it uses: write, flush, close).
    imports.import_file(
        Ingestor(runtime, _Discard()),
        path,
        fmt,
        tz=tz,
        server_ip=server_ip,
        year=year,
        logs=cast("LogStore", collected),
    )
    if not collected.tables:
        from hostwarden.flows.store.datasets import SCHEMAS, SSH

        return SCHEMAS[SSH].empty_table()
    return pa.concat_tables(collected.tables)


def replay_range(
    runtime: Runtime,
    start_ms: int,
    end_ms: int,
    *,
    emit: Emit,
    record: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Judge the stored records of ``[start_ms, end_ms)`` (already attributed at ingest)."""
    from hostwarden.flows.store import open_store
    from hostwarden.flows.store.common import check_range

    check_range(start_ms, end_ms)
    output = _Output(runtime, emit, record)
    report = ReplayReport(f"store {start_ms}..{end_ms}", "store")
    store = open_store(runtime)
    with scratch_state(runtime) as settings:
        engine = new_engine(runtime, settings, lateness_seconds=RANGE_LATENESS_S)
        _judge_stored(store, engine, output, report, start_ms, end_ms, progress)
    report.findings = output.count
    report.alerts_recorded = output.recorded
    report.engine = engine.stats.as_dict()
    return report


def _judge_stored(
    store: FlowStore,
    engine: Engine,
    output: _Output,
    report: ReplayReport,
    start_ms: int,
    end_ms: int,
    progress: Callable[[int], None] | None,
) -> None:
    try:
        for piece_start in range(start_ms, end_ms, RANGE_PIECE_MS):
            piece_end = min(piece_start + RANGE_PIECE_MS, end_ms)
            for table in store.query_batches(start_ms=piece_start, end_ms=piece_end):
                batch = FlowBatch.from_arrow(table.select(list(NAMES)))
                report.records += len(batch)
                output.take(engine.feed(batch))
            if progress is not None:
                progress(piece_end - piece_start)
        output.take(engine.flush())
    finally:
        store.close()
