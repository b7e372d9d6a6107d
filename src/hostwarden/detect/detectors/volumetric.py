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
"""

from __future__ import annotations

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
    ICMP,
    ICMP6,
    SYN,
    TCP,
    UDP,
    Frame,
    Groups,
    regroup,
    top_per_group,
)

BASELINE_FILE = "baselines.npz"
BASELINE_METRICS = ("pps", "bps", "fps")
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


class VolumetricDetector:
    name = "volumetric"

    def __init__(self, settings: VolumetricSettings, baselines: Baselines) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        self.baselines = baselines
        self.amplifying = port_set(settings.amplification_ports)

    def evaluate(self, frame: Frame) -> list[Finding]:
        if frame.empty():
            return []
        traffic = _Traffic(frame, self.amplifying)
        groups = frame.by_local()
        pps, bps, fps = traffic.rates(groups)
        active = np.flatnonzero((pps[:, 1] > 0) | (fps[:, 1] > 0))
        first = groups.first[active]
        keys = Keys(frame["local_hi"][first], frame["local_lo"][first], frame["instance_id"][first])
        slot = hour_of_week(frame.start_ms)
        expected = self.baselines.expected(keys, slot)
        observed = np.column_stack((pps[active, 1], bps[active, 1], fps[active, 1]))

        findings, reported, flagged = self._outbound(
            frame, traffic, active, observed, expected, slot
        )
        outbound_rates = np.column_stack((pps[:, 1], bps[:, 1], fps[:, 1]))
        findings += self._customers(frame, traffic, outbound_rates, reported)
        findings += self._inbound(frame, traffic, pps[:, 0], bps[:, 0])

        if not frame.early:
            self.baselines.update(keys, slot, observed, frame.end_ms, flagged)
        self.baselines.maybe_save()
        return findings

    def save_state(self) -> None:
        self.baselines.save()

    # --- outbound, per address -----------------------------------------------------------

    def _outbound(
        self,
        frame: Frame,
        traffic: _Traffic,
        active: NDArray[np.intp],
        observed: F64,
        expected: Expected,
        slot: int,
    ) -> tuple[list[Finding], set[int], NDArray[np.bool_]]:
        """The findings, the customers they name, and which active addresses alerted."""
        s = self.settings
        pps, bps, fps = observed[:, 0], observed[:, 1], observed[:, 2]
        over = (pps >= s.out_pps) | (bps >= s.out_mbps * 1e6) | (fps >= s.out_fps)
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
        groups = frame.by_local()
        wanted = active[hit]
        report = _Report(self, frame, traffic, groups, wanted, traffic.outbound)
        findings: list[Finding] = []
        reported: set[int] = set()
        for i, g in zip(hit.tolist(), wanted.tolist(), strict=True):
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

    def _customers(
        self, frame: Frame, traffic: _Traffic, address_rates: F64, reported: set[int]
    ) -> list[Finding]:
        """``address_rates``: outbound pps, bps, flows/s of each address group."""
        s = self.settings
        # Customers from the address groups (few) rather than the records (many); an
        # address counts for the customer of its first record in the window.
        addresses = frame.by_local()
        customers, customer_of = regroup(addresses, frame["customer_id"][addresses.first])
        pps, bps, fps = (
            np.bincount(customer_of, weights=address_rates[:, m], minlength=len(customers))
            for m in range(3)
        )
        customer_ids = frame["customer_id"][customers.first]
        over = (
            (pps >= s.customer_pps) | (bps >= s.customer_mbps * 1e6) | (fps >= s.customer_fps)
        ) & (customer_ids >= 0)
        wanted = np.array(
            [c for c in np.flatnonzero(over).tolist() if int(customer_ids[c]) not in reported],
            np.intp,
        )
        if not len(wanted):
            return []
        report = _Report(self, frame, traffic, customers, wanted, traffic.outbound)
        sending = (address_rates[:, 0] > 0) | (address_rates[:, 2] > 0)
        findings: list[Finding] = []
        for c in wanted.tolist():
            mine = np.flatnonzero((customer_of == c) & sending)
            mine = mine[np.argsort(-address_rates[mine, 0], kind="stable")]
            # The busiest address's first record: the finding's address and instance.
            row = int(addresses.first[mine[0]])
            counts = report.counts(c)
            counts["addresses"] = len(mine)
            counts["busiest_pps"] = round(float(address_rates[mine[0], 0]), 3)
            reasons = _threshold_reasons(
                np.array([pps[c], bps[c], fps[c]]),
                (s.customer_pps, s.customer_mbps, s.customer_fps),
                "pps",
                "Mbit/s",
                "flows/s",
                scope="customer ",
            )
            first = addresses.first[mine[:5]]
            named = ", ".join(
                address_text(hi, lo)
                for hi, lo in zip(frame["local_hi"][first], frame["local_lo"][first], strict=True)
            )
            lead = (
                f"customer {int(customer_ids[c])}'s {len(mine)} addresses together "
                f"(busiest {named})"
            )
            findings.append(report.finding(c, "ddos-out", "outbound", counts, reasons, lead, row))
        return findings

    # --- inbound -------------------------------------------------------------------------

    def _inbound(self, frame: Frame, traffic: _Traffic, pps: F64, bps: F64) -> list[Finding]:
        s = self.settings
        groups = frame.by_local()
        hit = np.flatnonzero((pps >= s.in_pps) | (bps >= s.in_mbps * 1e6))
        if not len(hit):
            return []
        report = _Report(self, frame, traffic, groups, hit, traffic.inbound)
        findings = []
        for g in hit.tolist():
            reasons = _threshold_reasons(
                np.array([pps[g], bps[g]]), (s.in_pps, s.in_mbps), "pps", "Mbit/s"
            )
            findings.append(report.finding(g, "ddos-in", "inbound", report.counts(g), reasons))
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
        span = f"in {frame.seconds} s"
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
