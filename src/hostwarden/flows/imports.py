"""``hostwarden flows import``: records from files into the store, with a progress bar.

Formats: ``pcap`` (pcap or pcapng holding NetFlow/IPFIX/sFlow export datagrams on any
UDP port; the protocol is recognised from each payload), ``nfdump-csv`` (``nfdump -o
csv``) and ``jsonl`` (one flow per line); and the logs ``nginx``, ``nginx-json``,
``nat-syslog`` and ``ssh-auth`` (``flows.logformats``, stored in the log datasets).
``auto`` looks at the first bytes.

Text files are read twice: a first pass checks every row and writes nothing, so a file
with a bad row in its last line is refused whole instead of leaving half of it stored;
the second pass stores. Export datagrams in a capture are different: a malformed
datagram is counted and skipped, as the live collector does, and the rest is stored.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from hostwarden.errors import ValidationFailed
from hostwarden.flows import textformats
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.schema import FlowBatch

if TYPE_CHECKING:
    from hostwarden.flows.store.datasets import LogStore

#: The log formats (``flows.logformats.LOG_FORMATS``), named here so that checking a
#: format does not load pyarrow.
LOG_FORMATS = ("nginx", "nginx-json", "nat-syslog", "ssh-auth")
FORMATS = ("auto", "pcap", "nfdump-csv", "jsonl", *LOG_FORMATS)
PCAP_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
)
#: Records handed to the ingest path at once when importing a capture.
PCAP_BATCH = 100_000
#: Datagrams decoded in one call (data sets of one template are decoded together). With
#: 30 records a datagram one call fills a PCAP_BATCH, which then goes on without being
#: copied into a larger one (a concatenation cost 0.15 µs a record).
PCAP_DATAGRAMS = 4_000

Progress = Callable[[int], None]  # called with the bytes read so far


@dataclass
class ImportReport:
    path: str
    format: str
    bytes: int = 0
    records: int = 0
    attributed: int = 0
    datagrams: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "bytes": self.bytes,
            "records": self.records,
            "attributed": self.attributed,
            "datagrams": self.datagrams,
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records / self.seconds) if self.seconds else None,
            "notes": self.notes,
        }


class _Counting(io.RawIOBase):
    """A binary reader that reports how far it got (for the progress bar)."""

    def __init__(self, raw: io.BufferedReader, progress: Progress | None) -> None:
        self.raw = raw
        self.count = 0
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.count += n
            if self.progress is not None:
                self.progress(self.count)
        return n or 0


def detect_format(path: Path, nat_regex: str = "") -> str:
    with path.open("rb") as handle:
        head = handle.read(16384)
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if textformats.is_nfdump_csv(head):
        return "nfdump-csv"
    from hostwarden.flows import logformats

    lines = head.decode("utf-8-sig", "replace").splitlines()[:50]
    found = logformats.sniff(lines, re.compile(nat_regex) if nat_regex else None)
    if found is not None:
        return found
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    raise ValidationFailed(
        f"cannot tell what {path.name} holds from its first bytes.",
        hint="Name the format: --format " + "|".join(FORMATS[1:]) + ".",
    )


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValidationFailed(
            f"'{fmt}' is not an import format.", hint=f"Use one of: {', '.join(FORMATS)}."
        )
    return fmt


def _text(path: Path, progress: Progress | None) -> tuple[IO[str], _Counting]:
    counting = _Counting(path.open("rb"), progress)
    reader = io.BufferedReader(counting, buffer_size=1 << 20)
    return io.TextIOWrapper(reader, encoding="utf-8-sig", newline=""), counting


def _text_batches(path: Path, fmt: str, tz: str | None, exporter: str) -> Iterator[FlowBatch]:
    handle, _ = _text(path, None)
    with handle:
        yield from _read_text(handle, fmt, tz, exporter)


def _read_text(handle: IO[str], fmt: str, tz: str | None, exporter: str) -> Iterator[FlowBatch]:
    if fmt == "nfdump-csv":
        yield from textformats.read_nfdump_csv(handle, tz, exporter)
    else:
        yield from textformats.read_jsonl(handle)


def import_file(
    ingestor: Ingestor,
    path: Path,
    fmt: str = "auto",
    *,
    tz: str | None = None,
    exporter: str = "",
    progress: Progress | None = None,
    checking: Callable[[bool], None] | None = None,
    logs: LogStore | None = None,
    server_ip: str | None = None,
    year: int | None = None,
) -> ImportReport:
    """Import one file through ``ingestor`` (attribution, then its store); a log file
    goes to ``logs`` (``server_ip``: the provider-side address of logs that name none;
    ``year``: of classic syslog times)."""
    if not path.is_file():
        raise ValidationFailed(f"{path} does not exist or is not a file.", hint="Check the path.")
    nat_regex = ingestor.runtime.settings.flows.nat_regex
    chosen = detect_format(path, nat_regex) if check_format(fmt) == "auto" else fmt
    report = ImportReport(str(path), chosen, bytes=path.stat().st_size)
    began = time.perf_counter()
    if chosen in LOG_FORMATS:
        _import_log(ingestor, path, report, progress, checking, logs, tz, server_ip, year)
    elif chosen == "pcap":
        _import_pcap(ingestor, path, report, progress)
    else:
        # First pass: every row is checked, nothing is written.
        if checking is not None:
            checking(True)
        for _ in _text_batches(path, chosen, tz, exporter):
            pass
        if checking is not None:
            checking(False)
        handle, _ = _text(path, progress)
        with handle:
            for batch in _read_text(handle, chosen, tz, exporter):
                stored = ingestor.ingest(batch)
                report.records += len(stored)
                report.attributed += int(np.count_nonzero(stored["local_side"]))
    report.seconds = time.perf_counter() - began
    return report


def _import_log(
    ingestor: Ingestor,
    path: Path,
    report: ImportReport,
    progress: Progress | None,
    checking: Callable[[bool], None] | None,
    logs: LogStore | None,
    tz: str | None,
    server_ip: str | None,
    year: int | None,
) -> None:
    from hostwarden.flows import logformats
    from hostwarden.flows.store.datasets import LogStore

    runtime = ingestor.runtime
    nat_regex = runtime.settings.flows.nat_regex
    ctx = logformats.LogContext(
        where=path.name,
        server_ip=server_ip,
        zone=textformats.zone_of(tz, report.format),
        year=year,
        mtime=os.stat(path).st_mtime,
        nat_regex=re.compile(nat_regex) if nat_regex else None,
    )

    def handle_of(report_progress: bool) -> IO[str]:
        counting = _Counting(path.open("rb"), progress if report_progress else None)
        reader = io.BufferedReader(counting, buffer_size=1 << 20)
        # Arrow strings must be UTF-8; a byte that is not stays visible as \xNN.
        return io.TextIOWrapper(reader, encoding="utf-8-sig", errors="backslashreplace")

    # The file's records are sealed once all of it went through, never by a later file's
    # failure (a log store does not seal when closed).
    store = logs if logs is not None else LogStore(runtime)
    try:
        stats, attributed = logformats.import_log(
            runtime, store, handle_of, report.format, ctx, checking=checking
        )
        store.flush()
    finally:
        if logs is None:
            store.close()
    report.records = stats.records
    report.attributed = attributed
    for reason, count in sorted(stats.skipped.items()):
        report.notes.append(f"{count} line(s) skipped: {reason}")
    if progress is not None:
        progress(report.bytes)


def _import_pcap(
    ingestor: Ingestor, path: Path, report: ImportReport, progress: Progress | None
) -> None:
    from hostwarden.flows.decode import Decoder
    from hostwarden.flows.pcap import PcapReader

    decoder = Decoder()
    pending: list[FlowBatch] = []
    pending_records = 0

    def flush() -> None:
        nonlocal pending, pending_records
        if pending:
            stored = ingestor.ingest(FlowBatch.concat(pending))
            report.records += len(stored)
            report.attributed += int(np.count_nonzero(stored["local_side"]))
        pending, pending_records = [], 0

    def decode(chunk: list[tuple[bytes, str, int]]) -> None:
        nonlocal pending_records
        result = decoder.decode_many(chunk)
        for error in result.errors:
            report.errors[error.reason] += 1
        if len(result.batch):
            pending.append(result.batch)
            pending_records += len(result.batch)
            if pending_records >= PCAP_BATCH:
                flush()
                if progress is not None:
                    progress(reader.report.offset)

    reader = PcapReader(path)
    chunk: list[tuple[bytes, str, int]] = []
    for datagram in reader:
        report.datagrams += 1
        chunk.append((datagram.payload, datagram.src_ip, datagram.timestamp_ms))
        if len(chunk) >= PCAP_DATAGRAMS:
            decode(chunk)
            chunk = []
    if chunk:
        decode(chunk)
    # Data still waiting for a template that never came is counted, not stored.
    last = decoder.expire(2**62)
    for error in last.errors:
        report.errors[error.reason] += 1
    if len(last.batch):
        pending.append(last.batch)
    flush()
    if progress is not None:
        progress(report.bytes)
    pcap = reader.report
    for reason, count in sorted(pcap.skipped.items()):
        report.notes.append(f"{count} packet(s) skipped: {reason}")
    if pcap.truncated:
        report.notes.append(
            f"the capture ends early at byte {pcap.truncated_at}: {pcap.detail}; "
            "everything before it was imported"
        )
