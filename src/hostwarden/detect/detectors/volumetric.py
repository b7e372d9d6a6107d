"""Volumetric attacks: floods sent from a customer's address (``ddos-out``), per address
and per customer, and floods received by one (``ddos-in``, with a blackhole suggested).

An outbound address alerts when its packets, megabits or flows per second reach the
``[detect.volumetric]`` thresholds (per host, as FastNetMon's are), or when it sends
``baseline_ratio`` times its own hour-of-week baseline (once above ``baseline_min_pps``,
so a quiet host going from 10 to 300 pps is not an attack). A customer alerts when all
its addresses together reach the ``customer_*`` thresholds while none of them alerted on
its own: an attack spread thinly over many addresses. The kind is what more than half
of the packets were: ``reflection`` (UDP responses from an amplification port: the
customer runs an open reflector being abused, or inbound, is the victim of one),
``syn-flood`` (TCP SYN without ACK), ``udp-flood``, ``icmp-flood``, else ``volumetric``.

Rates. A window of S seconds holds the records that *ended* in it, so its rate is what
those records carried divided by S. A record longer than the window (a flow the
exporter reports on its active timeout: 60 s to 30 min) would put all its packets in the
one window where it ended: a legitimate 100 Mbit/s backup reported every 30 min would
read as 18 Gbit/s in a 10 s window. So a record counts only ``S / duration`` of its
packets and bytes here, its own average rate over one window; the earlier part belonged
to windows already judged and is not counted again. This errs low, never high: when
many long flows run side by side, the windows see only the records that happen to end
in them (a 60 s timeout under a 10 s window reads a sixth of the steady rate). Floods
are not hurt by it: spoofed SYN and UDP floods and reflection are many short records,
and a single long flood record still shows its full per-second rate in the window it
ends in. Flows per second are not shared out: a record is one flow (times its sampling
rate) where it ends, which is what "new flows per second" measures. Packets and bytes
are already scaled by the sampling rate, so exporters sampling 1:1 and 1:1000 (or one
exporter changing its rate) give the same rates for the same traffic.

The outbound baseline (pps, bps, flows/s per address and instance, see baseline.py) is
updated after judging with every address that sent in the window; the addresses just
reported are learnt from slowly, so a lasting attack keeps standing out. An evaluation
of a window cut short because it was full (``frame.early``) is not folded in, its rates
being of part of the window only. Distinct peers, which the baselines can also keep, are
left out here: nothing in this detector judges them, and counting them costs a sort of
the window's records every 10 s.

Early alerts (``peek``). Judging only at a window's close reports a flood that began at
its start after the window (10 s) plus the engine's lateness (30 s); FastNetMon, which
counts as records arrive, reports it in about 10 s. So while a window is open, every
look at the records that arrived since the last one does two things (findings of both
are ``early``; an address is reported early in a category at most once a minute, which
is what the first alert of an attack needs; every window's close reports it anyway):

- *Window so far.* The new records are summed per address into the window's running
  totals (a group-by of the new records and a merge with the totals, one row per
  address). An address whose totals so far already reach an absolute threshold has the
  window's records so far judged at once, as at close. Records only add to a window, so
  this finding is one the close makes too (with larger counts); it catches a flood of
  few large records as soon as one arrives.
- *Arrival rate.* Per address, the records that arrived over the last ``recent_seconds``
  (by look: the engine's clock of newest end times, which live is the time they reached
  the collector) divided by that time: FastNetMon's way of counting, which sees a flood
  made of many records within seconds. Because a record covering 10 s of traffic counts
  all at once, it needs ``recent_min_records`` records' worth of evidence, counted as
  the effective number of records (Σ packets)² / Σ packets², so that one or two big
  records beside many small ones count as one or two; the few records of a backup, which
  make FastNetMon ban backup hosts (bench/detect.py), never qualify. A burst can reach the
  threshold over these seconds and not over its whole window: such a finding is about
  the burst, and its window's close may not report it again.

An attack spread over a customer's addresses below the per-address thresholds, and a
baseline ratio alone, are found at close.

Cost. A window's address table (rates and holder per address) is built from its records
as they arrive and completed at close, so each record is grouped once whether or not the
window was looked at early; the reports (kind, top peers and ports) read the records of
the alerting addresses only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.config_detect import DetectSettings, VolumetricSettings
from hostwarden.detect.baseline import (
    Baselines,
    Expected,
    Keys,
    figure,
    hour_of_week,
    slot_text,
    window_share,
)
from hostwarden.detect.detectors.common import port_set
from hostwarden.detect.findings import Finding, address_text, held
from hostwarden.detect.frame import (
    ACK,
    I64,
    ICMP,
    ICMP6,
    SYN,
    TCP,
    U64,
    UDP,
    Columns,
    Frame,
    Groups,
    address_rows,
    group_by,
    top_per_group,
)

BASELINE_FILE = "baselines.npz"
BASELINE_METRICS = ("pps", "bps", "fps")
#: An ongoing attack is reported early (``peek``) at most once in this time.
EARLY_REPEAT_MS = 60_000
#: A kind is named when more than this share of the packets is of it.
DOMINANT = 0.5

_KIND_TEXT = {
    "syn-flood": "a SYN flood",
    "udp-flood": "a UDP flood",
    "icmp-flood": "an ICMP flood",
    "volumetric": "a traffic flood",
}

F64 = NDArray[np.float64]


class _Traffic:
    """One window's record columns as the rates are computed from them; the columns
    that classify an attack are computed only when something alerts."""

    def __init__(self, frame: Frame, amplifying: NDArray[np.bool_]) -> None:
        share = window_share(frame)
        self.frame = frame
        #: Port table: True for the amplification source ports.
        self.amplifying = amplifying
        self.seconds = float(frame.seconds)
        self.packets: F64 = frame["packets"] * share
        self.bits: F64 = frame["bytes"] * share * 8.0
        self.flows: F64 = frame["flows"].astype(np.float64)
        self.outbound: NDArray[np.bool_] = frame["outbound"]

    @cached_property
    def inbound(self) -> NDArray[np.bool_]:
        return ~self.outbound

    def rates(self, groups: Groups) -> tuple[F64, F64, F64]:
        """Per group and direction (column 0 inbound, 1 outbound): packets/s, bits/s,
        flows/s. One pass per figure for both directions."""
        n = len(groups)
        index = groups.inverse * 2 + self.outbound
        return tuple(  # type: ignore[return-value]
            np.bincount(index, weights=values, minlength=2 * n).reshape(n, 2) / self.seconds
            for values in (self.packets, self.bits, self.flows)
        )

    @cached_property
    def _source_port(self) -> NDArray[Any]:
        # The amplification port is the source port: local when the customer answers
        # (outbound), remote when the customer receives the answers (inbound).
        frame = self.frame
        return np.where(self.outbound, frame["local_port"], frame["remote_port"])

    @cached_property
    def amplified(self) -> NDArray[np.bool_]:
        result: NDArray[np.bool_] = (self.frame["proto"] == UDP) & self.amplifying[
            self._source_port
        ]
        return result

    @cached_property
    def port(self) -> NDArray[Any]:
        """The port that says what a record was: the amplification port of a response,
        else the port attacked (remote outbound, local inbound)."""
        frame = self.frame
        target = np.where(self.outbound, frame["remote_port"], frame["local_port"])
        return np.where(self.amplified, self._source_port, target)

    def kinds(
        self, groups: Groups, wanted: NDArray[np.intp], mask: NDArray[np.bool_]
    ) -> NDArray[np.intp]:
        """Per group in ``wanted`` (same order), its kind's index in ``KINDS``."""
        rows = np.flatnonzero(groups.member(wanted) & mask)
        owner = groups.inverse[rows]
        weight = self.packets[rows]
        proto, flags = self.frame["proto"][rows], self.frame["tcp_flags"][rows]
        udp = proto == UDP
        of_kind = (
            self.amplified[rows],
            (proto == TCP) & ((flags & SYN) != 0) & ((flags & ACK) == 0),
            udp,
            (proto == ICMP) | (proto == ICMP6),
        )
        n = len(groups)
        total = np.maximum(np.bincount(owner, weight, minlength=n)[wanted], 1e-9)
        choice = np.full(len(wanted), len(KINDS) - 1, np.intp)
        # From the least to the most specific: a later match wins (reflection is UDP too).
        for index in (3, 2, 1, 0):
            share = np.bincount(owner, np.where(of_kind[index], weight, 0.0), minlength=n)
            choice = np.where(share[wanted] / total > DOMINANT, index, choice)
        return choice


KINDS = ("reflection", "syn-flood", "udp-flood", "icmp-flood", "volumetric")


class _Table:
    """One window's traffic per provider-side address, built from the window's records
    as they arrive (``peek``) and completed at its close, so that each record is grouped
    once. A row is an address: its window rates (pps, bit/s, flows/s, each inbound then
    outbound, over the whole window length) and the customer and instance of its first
    record."""

    def __init__(self) -> None:
        self.hi: U64 = np.zeros(0, np.uint64)
        self.lo: U64 = np.zeros(0, np.uint64)
        self.customer: I64 = np.zeros(0, np.int64)
        self.instance: I64 = np.zeros(0, np.int64)
        self.rates: F64 = np.zeros((0, 6))
        #: Addresses whose rates so far reached a threshold (judged early once for it).
        self.judged: NDArray[np.bool_] = np.zeros(0, bool)
        #: How many of the window's pieces (the engine's record slices, in order) are in.
        self.taken = 0

    def __len__(self) -> int:
        return len(self.hi)

    def take(self, frame: Frame, amplifying: NDArray[np.bool_]) -> _Part | None:
        """Add the frame's pieces not taken yet; what they carried per address (None if
        nothing new)."""
        columns = frame.columns
        pieces = columns.pieces if isinstance(columns, Columns) else [columns]
        fresh = pieces[self.taken :]
        self.taken = len(pieces)
        part = Frame(frame.seconds, frame.start_ms, Columns(fresh)) if fresh else None
        if part is None or part.empty():
            return None
        groups = part.by_local()
        traffic = _Traffic(part, amplifying)
        rates = np.hstack(traffic.rates(groups))
        first = groups.first
        hi, lo = part["local_hi"][first], part["local_lo"][first]
        customer, instance = part["customer_id"][first], part["instance_id"][first]
        if not len(self):
            self.hi, self.lo, self.customer, self.instance = hi, lo, customer, instance
            self.rates, self.judged = rates, np.zeros(len(hi), bool)
        else:
            self._merge(hi, lo, customer, instance, rates)
        squares = np.bincount(groups.inverse, weights=traffic.packets**2, minlength=len(groups))
        return _Part(hi, lo, rates * traffic.seconds, squares.astype(np.float64))

    def _merge(self, hi: U64, lo: U64, customer: I64, instance: I64, rates: F64) -> None:
        n = len(self)
        hi, lo = np.concatenate((self.hi, hi)), np.concatenate((self.lo, lo))
        groups = group_by(hi, lo)
        size = len(groups)
        joined = np.vstack((self.rates, rates))
        self.rates = np.column_stack(
            [np.bincount(groups.inverse, weights=c, minlength=size) for c in joined.T]
        )
        judged = np.zeros(size, bool)
        judged[groups.inverse[:n][self.judged]] = True
        self.judged = judged
        # The first row of a group is the older one: the address's first record's holder.
        first = groups.first
        self.customer = np.concatenate((self.customer, customer))[first]
        self.instance = np.concatenate((self.instance, instance))[first]
        self.hi, self.lo = hi[first], lo[first]


@dataclass
class _Part:
    """What some newly taken records carried per address: sums (not rates) of packets,
    bits and flows, each inbound then outbound, and of each record's packets squared."""

    hi: U64
    lo: U64
    sums: F64
    squares: F64


class _Arrivals:
    """What each address's arriving records carried, per look at the open windows, for
    the last ``seconds`` of looks: the arrival rates of ``peek``."""

    def __init__(self, seconds: float, min_records: float) -> None:
        self.span_ms = seconds * 1000
        self.min_records = min_records
        #: (look ms, part) per frame taken; several per look when it spans windows.
        self.looks: list[tuple[int, _Part]] = []

    def add(self, looked_ms: int, part: _Part) -> None:
        self.looks.append((looked_ms, part))

    def recent(self, now_ms: int) -> tuple[U64, U64, F64, float] | None:
        """The addresses whose records arrived after the boundary look (the newest one
        at least ``seconds`` before ``now_ms``, else the oldest kept: its own records
        arrived before the span began) on enough records: their rates (as ``_over``
        reads them) and the span in seconds. None before a second look.

        "Enough" is the effective number of records, (Σ packets)² / Σ packets²: the
        count itself for records of one size, about 1 when one record holds nearly all
        the packets. It keeps a burst of two big records beside a hundred small ones from
        passing as a hundred records' evidence."""
        times = [t for t, _ in self.looks]
        old = [t for t in times if t <= now_ms - self.span_ms]
        boundary = max(old) if old else min(times, default=now_ms)
        self.looks = [look for look in self.looks if look[0] >= boundary]
        within = [part for t, part in self.looks if t > boundary]
        seconds = (now_ms - boundary) / 1000
        if not within or seconds <= 0:
            return None
        hi = np.concatenate([p.hi for p in within])
        lo = np.concatenate([p.lo for p in within])
        groups = group_by(hi, lo)
        n = len(groups)
        sums = np.vstack([p.sums for p in within])
        totals = np.column_stack(
            [np.bincount(groups.inverse, weights=c, minlength=n) for c in sums.T]
        )
        squares = np.bincount(
            groups.inverse, weights=np.concatenate([p.squares for p in within]), minlength=n
        )
        packets = totals[:, 0] + totals[:, 1]
        effective = packets**2 / np.maximum(squares, 1e-9)
        enough = np.flatnonzero(effective >= self.min_records)
        first = groups.first[enough]
        return hi[first], lo[first], totals[enough] / seconds, seconds


class VolumetricDetector:
    name = "volumetric"

    def __init__(self, settings: VolumetricSettings, baselines: Baselines) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        self.baselines = baselines
        self.amplifying = port_set(settings.amplification_ports)
        #: The open windows' address tables, by window start (ms).
        self._open: dict[int, _Table] = {}
        #: (address, category) → window start of its last early finding.
        self._early_at: dict[tuple[str, str], int] = {}
        self._arrivals = (
            _Arrivals(settings.recent_seconds, settings.recent_min_records)
            if settings.recent_seconds > 0
            else None
        )

    def evaluate(self, frame: Frame) -> list[Finding]:
        table = self._open.pop(frame.start_ms, None) or _Table()
        # Tables of older windows whose close never came (a detector error) go too.
        for start in [t for t in self._open if t < frame.start_ms]:
            del self._open[start]
        done = frame.start_ms - EARLY_REPEAT_MS
        self._early_at = {k: t for k, t in self._early_at.items() if t > done}
        table.take(frame, self.amplifying)
        return self._judge(table, frame)

    def peek(self, new: Frame, so_far: Frame) -> list[Finding]:
        """Take the records that arrived in an open window since the last look into its
        table and the arrival rates; judge what reached a threshold (module
        docstring)."""
        table = self._open.get(so_far.start_ms)
        if table is None:
            table = self._open[so_far.start_ms] = _Table()
        part = table.take(so_far, self.amplifying)
        if part is None:
            return []
        findings: list[Finding] = []
        start = so_far.start_ms
        out, into = self._over(table.rates)
        over = out | into
        crossed = over & ~table.judged
        if crossed.any():
            table.judged |= over
            for row in np.flatnonzero(crossed).tolist():
                ip = address_text(table.hi[row], table.lo[row])
                crossed[row] = (out[row] and self._news(ip, "ddos-out", start)) or (
                    into[row] and self._news(ip, "ddos-in", start)
                )
            if crossed.any():
                findings += self._told(self._judge(table, so_far, only=crossed), start)
        if self._arrivals is not None and new.looked_ms is not None:
            self._arrivals.add(new.looked_ms, part)
            if new.start_ms <= new.looked_ms < new.end_ms:  # the look's last frame
                findings += self._told(self._recent(so_far, new.looked_ms), start)
        return findings

    def _news(self, ip: str, category: str, start_ms: int) -> bool:
        """Whether an early finding on ``ip`` in ``category`` would be news: none was
        made in the last ``EARLY_REPEAT_MS`` (an ongoing attack is reported early once
        a minute; every window's close still reports it)."""
        last = self._early_at.get((ip, category))
        return last is None or start_ms - last >= EARLY_REPEAT_MS

    def _told(self, findings: list[Finding], start_ms: int) -> list[Finding]:
        """Those of ``findings`` that are news (``_news``); they are now told."""
        new = [f for f in findings if self._news(f.ip, f.category, start_ms)]
        for finding in new:
            self._early_at[(finding.ip, finding.category)] = start_ms
        return new

    def save_state(self) -> None:
        self.baselines.save()

    def _over(self, rates: F64) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Per row of rates (pps in, out; bit/s in, out; flows/s in, out), whether it
        reaches an absolute per-address threshold outbound, and inbound."""
        s = self.settings
        out = (
            (rates[:, 1] >= s.out_pps)
            | (rates[:, 3] >= s.out_mbps * 1e6)
            | (rates[:, 5] >= s.out_fps)
        )
        into = (rates[:, 0] >= s.in_pps) | (rates[:, 2] >= s.in_mbps * 1e6)
        return out, into

    def _judge(
        self, table: _Table, frame: Frame, only: NDArray[np.bool_] | None = None
    ) -> list[Finding]:
        """Judge the window's address table (whole at close, so far on a peek, and then
        ``only`` the addresses that just reached a threshold, customers left to the
        close); ``frame`` holds the records, read for the reports."""
        if not len(table):
            return []
        rates = table.rates
        sending = (rates[:, 1] > 0) | (rates[:, 5] > 0)
        active = np.flatnonzero(sending if only is None else sending & only)
        keys = Keys(table.hi[active], table.lo[active], table.instance[active])
        slot = hour_of_week(frame.start_ms)
        expected = self.baselines.expected(keys, slot)
        observed = rates[active][:, [1, 3, 5]]
        findings, reported, flagged = self._outbound(table, frame, active, observed, expected, slot)
        if only is None:
            findings += self._customers(table, frame, reported)
        findings += self._inbound(table, frame, only)
        if not frame.early:
            self.baselines.update(keys, slot, observed, frame.end_ms, flagged)
        self.baselines.maybe_save()
        return findings

    # --- outbound, per address -----------------------------------------------------------

    def _outbound(
        self,
        table: _Table,
        frame: Frame,
        active: NDArray[np.intp],
        observed: F64,
        expected: Expected,
        slot: int,
    ) -> tuple[list[Finding], set[int], NDArray[np.bool_]]:
        """The findings, the customers they name, and which active addresses alerted."""
        s = self.settings
        pps = observed[:, 0]
        over = self._over(table.rates[active])[0]
        base = expected.values
        usable = expected.observations >= s.baseline_min_observations
        ratios = observed / np.maximum(base, 1e-9)
        above_baseline = (
            usable & (pps >= s.baseline_min_pps) & (ratios >= s.baseline_ratio).any(axis=1)
        )
        flagged = over | above_baseline
        hit = np.flatnonzero(flagged)
        if not len(hit):
            return [], set(), flagged
        rows = active[hit]
        report = _Report.of_addresses(self, frame, table.hi[rows], table.lo[rows], True)
        findings: list[Finding] = []
        reported: set[int] = set()
        for i, g in zip(hit.tolist(), report.wanted.tolist(), strict=True):
            reasons = _threshold_reasons(
                observed[i], (s.out_pps, s.out_mbps, s.out_fps), "pps", "Mbit/s", "flows/s"
            )
            counts = report.counts(g)
            if above_baseline[i]:
                m = int(np.argmax(ratios[i]))
                usual = base[i, m] / (1e6 if m == 1 else 1.0)
                unit = ("pps", "Mbit/s", "flows/s")[m]
                ratio = float(observed[i, m] / max(base[i, m], 1e-9))
                reasons.append(
                    f"{_times(ratio)} its usual {figure(usual)} {unit} for {slot_text(slot)}"
                )
                counts["baseline_pps"] = round(float(base[i, 0]), 3)
                counts["baseline_ratio"] = round(min(ratio, 1e9), 1)
            finding = report.finding(g, "ddos-out", "outbound", counts, reasons)
            findings.append(finding)
            if finding.customer_id is not None:
                reported.add(finding.customer_id)
        return findings, reported, flagged

    # --- outbound, per customer ----------------------------------------------------------

    def _customers(self, table: _Table, frame: Frame, reported: set[int]) -> list[Finding]:
        s = self.settings
        # Customers from the address table (an address counts for the customer of its
        # first record in the window), then the records of the few that alert.
        out = table.rates[:, [1, 3, 5]]
        customers = group_by(table.customer)
        n = len(customers)
        pps, bps, fps = (
            np.bincount(customers.inverse, weights=out[:, m], minlength=n) for m in range(3)
        )
        customer_ids = table.customer[customers.first]
        over = (
            (pps >= s.customer_pps) | (bps >= s.customer_mbps * 1e6) | (fps >= s.customer_fps)
        ) & (customer_ids >= 0)
        wanted = [c for c in np.flatnonzero(over).tolist() if int(customer_ids[c]) not in reported]
        if not wanted:
            return []
        sending = (out[:, 0] > 0) | (out[:, 2] > 0)
        theirs = [np.flatnonzero((customers.inverse == c) & sending) for c in wanted]
        for c, mine in enumerate(theirs):
            theirs[c] = mine[np.argsort(-out[mine, 0], kind="stable")]
        everyone = np.concatenate(theirs)
        sub = frame.of_addresses(table.hi[everyone], table.lo[everyone])
        local = sub["local_hi"], sub["local_lo"]
        # The records grouped by the customer their address counts for.
        owner = np.full(len(sub), -1, np.int64)
        for c, mine in zip(wanted, theirs, strict=True):
            owner[address_rows(*local, table.hi[mine], table.lo[mine])] = c
        groups = group_by(owner)
        index = {int(owner[row]): g for g, row in enumerate(groups.first.tolist())}
        traffic = _Traffic(sub, self.amplifying)
        chosen = np.array([index[c] for c in wanted], np.intp)
        report = _Report(self, sub, traffic, groups, chosen, traffic.outbound)
        findings: list[Finding] = []
        for c, g, mine in zip(wanted, chosen.tolist(), theirs, strict=True):
            busiest = mine[0]
            # The busiest address's first record: the finding's address and instance.
            row = int(address_rows(*local, table.hi[mine[:1]], table.lo[mine[:1]])[0])
            counts = report.counts(g)
            counts["addresses"] = len(mine)
            counts["busiest_pps"] = round(float(out[busiest, 0]), 3)
            reasons = _threshold_reasons(
                np.array([pps[c], bps[c], fps[c]]),
                (s.customer_pps, s.customer_mbps, s.customer_fps),
                "pps",
                "Mbit/s",
                "flows/s",
                scope="customer ",
            )
            named = ", ".join(
                address_text(hi, lo)
                for hi, lo in zip(table.hi[mine[:5]], table.lo[mine[:5]], strict=True)
            )
            lead = (
                f"customer {int(customer_ids[c])}'s {len(mine)} addresses together "
                f"(busiest {named})"
            )
            findings.append(report.finding(g, "ddos-out", "outbound", counts, reasons, lead, row))
        return findings

    # --- inbound -------------------------------------------------------------------------

    def _inbound(
        self, table: _Table, frame: Frame, only: NDArray[np.bool_] | None
    ) -> list[Finding]:
        s = self.settings
        pps, bps = table.rates[:, 0], table.rates[:, 2]
        over = self._over(table.rates)[1]
        hit = np.flatnonzero(over if only is None else over & only)
        if not len(hit):
            return []
        report = _Report.of_addresses(self, frame, table.hi[hit], table.lo[hit], False)
        findings = []
        for i, g in zip(hit.tolist(), report.wanted.tolist(), strict=True):
            reasons = _threshold_reasons(
                np.array([pps[i], bps[i]]), (s.in_pps, s.in_mbps), "pps", "Mbit/s"
            )
            findings.append(report.finding(g, "ddos-in", "inbound", report.counts(g), reasons))
        return findings

    # --- early, on arrival rates ---------------------------------------------------------

    def _recent(self, frame: Frame, now_ms: int) -> list[Finding]:
        """Findings on the addresses whose arrival rates reach a threshold at the look
        at ``now_ms`` and were not reported early in this window yet, with their records
        of the window so far (``frame``) as evidence."""
        if self._arrivals is None:
            return []
        s = self.settings
        recent = self._arrivals.recent(now_ms)
        if recent is None:
            return []
        hi, lo, rates, seconds = recent
        out, into = self._over(rates)
        hit = np.flatnonzero(out | into)
        findings: list[Finding] = []
        for i in hit.tolist():
            outbound = bool(out[i])
            category, direction = ("ddos-out", "outbound") if outbound else ("ddos-in", "inbound")
            if not self._news(address_text(hi[i], lo[i]), category, frame.start_ms):
                continue  # an ongoing attack, reported early less than a minute ago
            report = _Report.of_addresses(self, frame, hi[i : i + 1], lo[i : i + 1], outbound)
            if not len(report.wanted):
                continue  # its records arrived in an older window only
            g = int(report.wanted[0])
            column = 1 if outbound else 0
            counts = report.counts(g)
            counts.update(
                pps=round(float(rates[i, column]), 3),
                mbps=round(float(rates[i, 2 + column]) / 1e6, 3),
                fps=round(float(rates[i, 4 + column]), 3),
                recent_seconds=round(seconds, 3),
            )
            if outbound:
                limits: tuple[float, ...] = (s.out_pps, s.out_mbps, s.out_fps)
                units: tuple[str, ...] = ("pps", "Mbit/s", "flows/s")
                reasons = _threshold_reasons(rates[i, [1, 3, 5]], limits, *units)
            else:
                limits = (s.in_pps, s.in_mbps)
                reasons = _threshold_reasons(rates[i, [0, 2]], limits, "pps", "Mbit/s")
            span = f"in the records that arrived over the last {figure(seconds)} s"
            findings.append(report.finding(g, category, direction, counts, reasons, span=span))
        return findings


class _Report:
    """Builds the findings of some alerting groups (addresses or customers): their kind,
    top peers and ports, computed for all of them at once."""

    def __init__(
        self,
        detector: VolumetricDetector,
        frame: Frame,
        traffic: _Traffic,
        groups: Groups,
        wanted: NDArray[np.intp],
        mask: NDArray[np.bool_],
    ) -> None:
        self.settings = detector.settings
        self.frame = frame
        self.traffic = traffic
        self.groups = groups
        self.wanted = wanted
        top = self.settings.top
        remote = [frame["remote_hi"], frame["remote_lo"]]
        self.kind = dict(
            zip(wanted.tolist(), traffic.kinds(groups, wanted, mask).tolist(), strict=True)
        )
        self.peers = top_per_group(groups, wanted, remote, traffic.packets, top, mask)
        self.ports = top_per_group(groups, wanted, [traffic.port], traffic.packets, top, mask)
        in_wanted = groups.member(wanted) & mask
        self.hosts = groups.distinct(*remote, mask=in_wanted)
        self.totals = (
            groups.sum(traffic.packets, in_wanted),
            groups.sum(traffic.bits, in_wanted) / 8.0,
            groups.sum(traffic.flows, in_wanted),
        )

    @classmethod
    def of_addresses(
        cls, detector: VolumetricDetector, frame: Frame, hi: U64, lo: U64, outbound: bool
    ) -> _Report:
        """A report on the addresses (``hi``, ``lo``) from their records in ``frame``,
        one direction; ``wanted`` holds their groups in the same order (an address
        with no record in the frame is left out)."""
        sub = frame.of_addresses(hi, lo)
        groups = sub.by_local()
        first_hi, first_lo = sub["local_hi"][groups.first], sub["local_lo"][groups.first]
        wanted = [
            int(found[0])
            for h, v in zip(hi.tolist(), lo.tolist(), strict=True)
            if len(found := np.flatnonzero((first_hi == h) & (first_lo == v)))
        ]
        traffic = _Traffic(sub, detector.amplifying)
        mask = traffic.outbound if outbound else traffic.inbound
        return cls(detector, sub, traffic, groups, np.array(wanted, np.intp), mask)

    def counts(self, g: int) -> dict[str, float]:
        seconds = self.traffic.seconds
        packets, octets, flows = (float(t[g]) for t in self.totals)
        return {
            "packets": round(packets),
            "bytes": round(octets),
            "flows": round(flows),
            "pps": round(packets / seconds, 3),
            "mbps": round(octets * 8 / seconds / 1e6, 3),
            "fps": round(flows / seconds, 3),
            "peers": int(self.hosts[g]),
        }

    def finding(
        self,
        g: int,
        category: str,
        direction: str,
        counts: dict[str, float],
        reasons: list[str],
        who: str | None = None,
        row: int | None = None,
        span: str | None = None,
    ) -> Finding:
        frame = self.frame
        if row is None:
            row = int(self.groups.first[g])
        ip = address_text(frame["local_hi"][row], frame["local_lo"][row])
        kind = KINDS[int(self.kind[g])]
        peers = [
            {"ip": address_text(*key), "packets": round(weight)} for key, weight in self.peers[g]
        ]
        ports = [{"port": key[0], "packets": round(weight)} for key, weight in self.ports[g]]
        port = ports[0]["port"] if ports else 0
        top_peer = peers[0]["ip"] if peers else "?"
        hosts = int(counts["peers"])
        rates = (
            f"{figure(counts['pps'])} pps, {figure(counts['mbps'])} Mbit/s, "
            f"{figure(counts['fps'])} flows/s"
        )
        who = who or ip
        span = span or f"in {frame.seconds} s"
        if direction == "outbound" and kind == "reflection":
            text = (
                f"{who} answered as an abused reflector: {rates} of responses from UDP port "
                f"{port} to {_hosts(hosts)} (top {top_peer}, likely the victim) {span}"
            )
        elif direction == "outbound":
            text = (
                f"{who} sent {_KIND_TEXT[kind]}: {rates} to {_hosts(hosts)} "
                f"(top {top_peer}, port {port}) {span}"
            )
        elif kind == "reflection":
            text = (
                f"{who} is the target of a reflection attack: {rates} of responses from UDP "
                f"port {port} off {_hosts(hosts, 'reflector')} {span}"
            )
        else:
            text = (
                f"{who} received {_KIND_TEXT[kind]}: {rates} from {_hosts(hosts)} "
                f"(to port {port}) {span}"
            )
        action = None
        if category == "ddos-in":
            action = f"blackhole {ip}/{32 if '.' in ip else 128}"
        return Finding(
            category=category,
            severity=self.settings.severity,
            ip=ip,
            direction=direction,
            window_start_ms=frame.start_ms,
            window_seconds=frame.seconds,
            customer_id=held(frame["customer_id"][row]),
            instance_id=held(frame["instance_id"][row]),
            kind=kind,
            summary=f"{text}; {'; '.join(reasons)}.",
            counts=counts,
            top_peers=peers,
            top_ports=ports,
            suggested_action=action,
        )


def _threshold_reasons(
    values: NDArray[Any],
    limits: tuple[float, ...],
    *units: str,
    scope: str = "",
) -> list[str]:
    """ "over the 50,000 pps threshold" for each limit reached (bits are given per second
    and compared in Mbit/s)."""
    reasons = []
    for value, limit, unit in zip(values.tolist(), limits, units, strict=True):
        shown = value / 1e6 if unit == "Mbit/s" else value
        if shown >= limit:
            reasons.append(f"over the {scope}{limit:,.0f} {unit} threshold")
    return reasons


def _times(ratio: float) -> str:
    return "infinitely many times" if ratio >= 1e9 else f"{figure(ratio)}×"


def _hosts(n: int, noun: str = "host") -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def make(settings: DetectSettings, home: Path) -> VolumetricDetector | None:
    s = settings.volumetric
    if not s.enabled:
        return None
    baselines = Baselines(
        BASELINE_METRICS,
        window_seconds=s.window_seconds,
        alpha=s.baseline_alpha,
        capacity=s.baseline_max_addresses,
        path=home / settings.state_dir / BASELINE_FILE,
    )
    return VolumetricDetector(s, baselines)
