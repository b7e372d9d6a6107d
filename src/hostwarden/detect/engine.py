"""The detection engine: tumbling windows over attributed batches, detectors on close.

Windows are aligned to the epoch (a 60 s window starts on a whole minute) and a record
belongs to the window of its *end* time, the time its exporter last saw it, which is
close to when it arrives; so the windows close in step with the stream. A window closes
once a record ending ``lateness`` after the window's end has arrived (the watermark);
a record for a window already closed is counted as late and left out of detection (it
is still stored). ``flush`` closes every open window (end of a replay, shutdown).

A detector may also judge a window that is still open (``peek``): every
``peek_seconds`` of stream time it is shown the records that arrived in each open window
since it last looked, and the window's records so far. The volumetric detector uses it
to report a flood within seconds of its first records instead of after the window and
its lateness have passed (FastNetMon's latency, bench/detect.py). What a peek reports is
marked ``early``; the window's close is judged as before.

Only the records of open windows are kept, as the frame columns (about 90 bytes a
record); a window that reaches ``max_window_records`` is evaluated at once and starts
again empty, which bounds memory whatever the stream does.

The same code runs live (the collector's writer thread feeds each attributed batch)
and offline (``hostwarden detect replay``), which is what the issue asks: one path.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.config_detect import DetectSettings
from hostwarden.core.logs import get_logger
from hostwarden.detect.findings import Finding
from hostwarden.detect.frame import Columns, Frame, project
from hostwarden.detect.plugins import Detector
from hostwarden.flows.schema import FlowBatch

log = get_logger("hostwarden.detect")


@dataclass
class EngineStats:
    records: int = 0
    #: Records with no provider side (transit), not judged.
    transit: int = 0
    #: Records that arrived after their window had closed, counted once for each window
    #: length that had (a record can be late for the 10 s window and on time for 5 min).
    late: int = 0
    frames: int = 0
    #: Windows evaluated before their end because they were full.
    early: int = 0
    findings: int = 0
    #: Detector calls that raised (the engine goes on; each is logged).
    errors: int = 0
    #: Looks at open windows (``peek``), and findings they made.
    peeks: int = 0
    peek_findings: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "transit": self.transit,
            "late": self.late,
            "frames": self.frames,
            "early": self.early,
            "findings": self.findings,
            "errors": self.errors,
            "peeks": self.peeks,
            "peek_findings": self.peek_findings,
            "seconds": {k: round(v, 3) for k, v in sorted(self.seconds.items())},
        }


class _Window:
    """The open buckets of one window length."""

    def __init__(self, seconds: int, detectors: Sequence[Detector]) -> None:
        self.seconds = seconds
        self.length_ms = seconds * 1000
        self.detectors = list(detectors)
        #: Those that can judge an open window (``peek(new, so_far)``).
        self.peekers = [d for d in detectors if callable(getattr(d, "peek", None))]
        self.pieces: dict[int, list[dict[str, NDArray[Any]]]] = {}
        #: Per open bucket, the pieces that arrived since the peekers last looked.
        self.fresh: dict[int, list[dict[str, NDArray[Any]]]] = {}
        #: Newest record end (ms) when the peekers last looked.
        self.peeked_ms: int | None = None
        self.sizes: dict[int, int] = {}
        #: Buckets below this are closed.
        self.closed_below: int | None = None


class Engine:
    """Feed attributed batches; get findings as windows close. Not thread-safe: one
    engine per feeding thread (a collector worker has one)."""

    def __init__(
        self,
        settings: DetectSettings,
        detectors: Sequence[Detector],
        *,
        lateness_seconds: int | None = None,
        strict: bool = False,
    ) -> None:
        self.settings = settings
        self.lateness_ms = (
            settings.lateness_seconds if lateness_seconds is None else lateness_seconds
        ) * 1000
        self.max_records = settings.max_window_records
        self.peek_ms = settings.peek_seconds * 1000
        #: Raise a detector's exception instead of logging it (tests).
        self.strict = strict
        self.stats = EngineStats()
        self.watermark_ms: int | None = None
        lengths = sorted({d.window_seconds for d in detectors})
        #: Every window length is a multiple of this (10 s for the built-in 10/60/300),
        #: so sorting records by it puts them in bucket order for every window.
        self.grain_ms = math.gcd(*lengths) * 1000 if lengths else 1000
        self.windows = [
            _Window(s, [d for d in detectors if d.window_seconds == s]) for s in lengths
        ]

    @property
    def detectors(self) -> list[Detector]:
        return [d for w in self.windows for d in w.detectors]

    def feed(self, batch: FlowBatch) -> list[Finding]:
        """Take one attributed batch; the findings of every window it closed."""
        n = len(batch)
        if not n or not self.windows:
            return []
        columns = project(batch)
        kept = len(columns["start"])
        self.stats.records += n
        self.stats.transit += n - kept
        if not kept:
            return []
        end = columns["end"]
        newest_end = int(end.max())
        newest = newest_end - self.lateness_ms
        if self.watermark_ms is None or newest > self.watermark_ms:
            self.watermark_ms = newest
        # Records in the order of their finest window: then every window's share of the
        # batch is a slice, not a masked copy per window and bucket (those copies were a
        # fifth of the engine's time in bench/detect.py). The offsets are small
        # integers, which numpy's stable sort orders by radix in one pass.
        fine = end // self.grain_ms
        low, high = int(fine.min()), int(fine.max())
        if low != high:
            offsets = fine - low
            if high - low < 1 << 16:
                offsets = offsets.astype(np.uint16)
            order = np.argsort(offsets, kind="stable")
            columns = {k: v[order] for k, v in columns.items()}
            end = columns["end"]
        findings: list[Finding] = []
        for window in self.windows:
            findings += self._add(window, columns, end)
        for window in self.windows:
            findings += self._close_due(window)
        if self.peek_ms:
            for window in self.windows:
                findings += self._peek_due(window, newest_end)
        return findings

    def feed_all(self, batches: Iterable[FlowBatch]) -> list[Finding]:
        findings: list[Finding] = []
        for batch in batches:
            findings += self.feed(batch)
        return findings + self.flush()

    def flush(self) -> list[Finding]:
        """Close every open window, oldest first."""
        findings: list[Finding] = []
        for window in self.windows:
            buckets = sorted(set(window.sizes) | set(window.pieces))
            for bucket in buckets:
                findings += self._evaluate(window, bucket, early=False)
            if buckets:
                window.closed_below = max(buckets[-1] + 1, window.closed_below or 0)
            window.sizes.clear()
            window.fresh.clear()
        # A flush is the end of a replay or a shutdown: detectors that keep state across
        # runs (baselines) write it now.
        self.save_state()
        return findings

    def save_state(self) -> None:
        """Let every detector that keeps state (baselines) write it down; a detector
        that cannot is logged and the others still save."""
        for detector in self.detectors:
            save = getattr(detector, "save_state", None)
            if not callable(save):
                continue
            try:
                save()
            except Exception as exc:
                if self.strict:
                    raise
                log.error("detect.state_save_failed", detector=detector.name, error=str(exc)[:300])

    # --- windows -------------------------------------------------------------------------

    def _add(
        self, window: _Window, columns: dict[str, NDArray[Any]], end: NDArray[np.int64]
    ) -> list[Finding]:
        """Hand each bucket its slice of the batch (``end`` is in bucket order)."""
        buckets = end // window.length_ms
        cuts = [0, *(np.flatnonzero(buckets[1:] != buckets[:-1]) + 1).tolist(), len(end)]
        whole = len(cuts) == 2
        findings: list[Finding] = []
        for begin, stop in itertools.pairwise(cuts):
            bucket, count = int(buckets[begin]), stop - begin
            if window.closed_below is not None and bucket < window.closed_below:
                self.stats.late += count
                continue
            piece = columns if whole else {k: v[begin:stop] for k, v in columns.items()}
            window.pieces.setdefault(bucket, []).append(piece)
            if window.peekers and self.peek_ms:
                window.fresh.setdefault(bucket, []).append(piece)
            window.sizes[bucket] = window.sizes.get(bucket, 0) + count
            if window.sizes[bucket] >= self.max_records:
                findings += self._evaluate(window, bucket, early=True)
                window.sizes[bucket] = 0
        return findings

    def _close_due(self, window: _Window) -> list[Finding]:
        if self.watermark_ms is None:
            return []
        # Bucket b covers [b, b + 1) × length; it is due once the watermark passed its end.
        due_below = self.watermark_ms // window.length_ms
        due = sorted(b for b in window.sizes if b < due_below)
        findings: list[Finding] = []
        for bucket in due:
            findings += self._evaluate(window, bucket, early=False)
            del window.sizes[bucket]
        if window.closed_below is None or due_below > window.closed_below:
            window.closed_below = due_below
        return findings

    def _peek_due(self, window: _Window, newest_end: int) -> list[Finding]:
        """Show the peekers each open bucket's new records, once ``peek_seconds`` of
        stream time have passed since they last looked."""
        if not window.fresh:
            return []
        if window.peeked_ms is not None and newest_end - window.peeked_ms < self.peek_ms:
            return []
        window.peeked_ms = newest_end
        findings: list[Finding] = []
        fresh, window.fresh = window.fresh, {}
        for bucket in sorted(fresh):
            pieces = window.pieces.get(bucket)
            if not pieces:
                continue  # judged since (closed, or cut early because full)
            start_ms = bucket * window.length_ms
            new = Frame(
                window.seconds, start_ms, Columns(fresh[bucket]), early=True, looked_ms=newest_end
            )
            so_far = Frame(window.seconds, start_ms, Columns(pieces), early=True)
            self.stats.peeks += 1
            for detector in window.peekers:
                found = self._run(detector, new, "peek", so_far)
                for finding in found:
                    finding.early = True
                    finding.summary += " (window still open: figures of its records so far)"
                self.stats.peek_findings += len(found)
                findings += found
        self.stats.findings += len(findings)
        return findings

    def _evaluate(self, window: _Window, bucket: int, *, early: bool) -> list[Finding]:
        pieces = window.pieces.pop(bucket, [])
        window.fresh.pop(bucket, None)
        if not pieces:
            return []
        frame = Frame(
            seconds=window.seconds,
            start_ms=bucket * window.length_ms,
            columns=Columns(pieces),
            early=early,
        )
        self.stats.frames += 1
        self.stats.early += int(early)
        findings: list[Finding] = []
        for detector in window.detectors:
            findings += self._run(detector, frame, "evaluate")
        self.stats.findings += len(findings)
        return findings

    def _run(self, detector: Detector, frame: Frame, method: str, *more: Frame) -> list[Finding]:
        """``detector.<method>(frame, *more)``, timed; an exception is logged and
        counted (raised when ``strict``), and the engine goes on with the others."""
        began = time.perf_counter()
        try:
            found: list[Finding] = getattr(detector, method)(frame, *more)
        except Exception as exc:
            if self.strict:
                raise
            self.stats.errors += 1
            log.error(
                "detector failed",
                detector=detector.name,
                window_start=frame.start_ms,
                window_seconds=frame.seconds,
                error=f"{type(exc).__name__}: {exc}",
            )
            return []
        finally:
            spent = time.perf_counter() - began
            self.stats.seconds[detector.name] = self.stats.seconds.get(detector.name, 0) + spent
        for finding in found:
            finding.detector = finding.detector or detector.name
        return found
