"""Brute force against login services (SSH, RDP, Telnet, VNC, SMB, MySQL, MSSQL, Redis):
many short flows from one source to one service port in a minute, from the flows, and
failed logins from imported sshd logs.

A login attempt is a short flow: a failed SSH password round is a TCP handshake, the
banner and key exchange and a few authentication packets, some 20 to 40 packets, where
a session someone works in is hundreds. So a flow counts when its record has at most
``max_packets`` packets before sampling scaled it (packets ÷ sampling), and the rate is
of sampling-weighted flows (the ``flows`` column), so that exporters sampling 1:1 and
1:1000 give the same figure for the same attack.

Outbound: a customer address attacking others, counted per (address, service) over all
its targets: a brute-forcer spreading over many hosts is as much the customer's doing
as one hammering a single host, as long as it tries each target several times
(``min_attempts_per_target`` on average): one short flow per host is a scan, which the
scan detector reports. A connection is counted from its requests (towards
the service port) or, where an exporter sees only the return path, from the service's
replies, whichever side shows more: never both, so it is not counted twice.

Inbound (``inbound``): one outside source attacking a customer's service, per source;
informational by default, since every SSH server on the Internet gets this.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from hostwarden.core.config_detect import BruteForceSettings, DetectSettings, Severity
from hostwarden.detect.detectors.common import (
    about_local,
    local_ip,
    packets_per_record,
    port_codes,
    ranked,
    top_remotes,
)
from hostwarden.detect.findings import Finding, address_text, held
from hostwarden.detect.frame import Frame, group_by

if TYPE_CHECKING:
    from hostwarden.registry.attribution import AttributionIndex

CATEGORY = "bruteforce"


class BruteForceDetector:
    name = "bruteforce"

    def __init__(self, settings: BruteForceSettings) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        self.ports = sorted(settings.services)
        self.services = [settings.services[p] for p in self.ports]
        self.codes = port_codes({port: i for i, port in enumerate(self.ports)})

    def evaluate(self, frame: Frame) -> list[Finding]:
        if frame.empty():
            return []
        short = packets_per_record(frame) <= np.uint64(self.settings.max_packets)
        findings = self._outbound(frame, short)
        if self.settings.inbound:
            findings += self._inbound(frame, short)
        return findings

    def _per_minute(self, flows: NDArray[np.float64], frame: Frame) -> NDArray[np.float64]:
        rate: NDArray[np.float64] = flows * (60.0 / frame.seconds)
        return rate

    def _outbound(self, frame: Frame, short: NDArray[np.bool_]) -> list[Finding]:
        service = self.codes[frame["remote_port"]]
        rows = np.flatnonzero(short & (service >= 0))
        if not len(rows):
            return []
        local = frame.by_local()
        owner = local.inverse[rows]
        asked = frame["outbound"][rows]
        pairs = group_by(owner, service[rows])
        flows = _attempts(
            pairs.sum(frame["flows"][rows], asked), pairs.sum(frame["flows"][rows], ~asked)
        )
        rate = self._per_minute(flows, frame)
        targets = pairs.distinct(frame["remote_hi"][rows], frame["remote_lo"][rows])
        # One try per host is a scan (the scan detector's), not password guessing.
        guessing = flows >= self.settings.min_attempts_per_target * np.maximum(targets, 1)
        hits = np.flatnonzero((rate >= self.settings.flows_per_minute) & guessing)
        if not len(hits):
            return []
        # Top targets from the side the count came from (requests, else replies).
        by_requests = pairs.count(asked) > 0
        side = np.zeros(len(frame), dtype=bool)
        side[rows] = asked == by_requests[pairs.inverse]
        findings: list[Finding] = []
        for s in np.unique(service[rows[pairs.first[hits]]]).tolist():
            mine = hits[service[rows[pairs.first[hits]]] == s]
            groups = owner[pairs.first[mine]]
            peers = top_remotes(frame, local, groups, side & (service == s))
            port, name = self.ports[s], self.services[s]
            for p, g in zip(mine.tolist(), groups.tolist(), strict=True):
                row = int(rows[pairs.first[p]])
                ip = local_ip(frame, row)
                summary = (
                    f"{ip} opened {flows[p]:.0f} short {name} connections (port {port}) to "
                    f"{targets[p]} host(s) in {frame.seconds} s, {rate[p]:.0f} a minute"
                )
                findings.append(
                    about_local(
                        frame,
                        row,
                        category=CATEGORY,
                        severity=self.settings.severity,
                        direction="outbound",
                        kind=name,
                        summary=summary,
                        counts={
                            "flows": float(flows[p]),
                            "flows_per_minute": float(rate[p]),
                            "targets": int(targets[p]),
                            "port": port,
                        },
                        top_peers=peers[g],
                        top_ports=[{"port": port, "flows": float(flows[p])}],
                    )
                )
        return findings

    def _inbound(self, frame: Frame, short: NDArray[np.bool_]) -> list[Finding]:
        service = self.codes[frame["local_port"]]
        rows = np.flatnonzero(short & (service >= 0))
        if not len(rows):
            return []
        local = frame.by_local()
        owner = local.inverse[rows]
        asked = ~frame["outbound"][rows]
        # Per (customer address, service, source): one source's attempts.
        triples = group_by(owner, service[rows], frame["remote_hi"][rows], frame["remote_lo"][rows])
        flows = _attempts(
            triples.sum(frame["flows"][rows], asked), triples.sum(frame["flows"][rows], ~asked)
        )
        rate = self._per_minute(flows, frame)
        over = np.flatnonzero(rate >= self.settings.flows_per_minute)
        if not len(over):
            return []
        first_rows = rows[triples.first[over]]
        targets = group_by(local.inverse[first_rows], service[first_rows])
        order, bounds = ranked(targets.inverse, flows[over], len(targets))
        findings: list[Finding] = []
        for t in range(len(targets)):
            members = over[order[bounds[t] : bounds[t + 1]]]
            row = int(rows[triples.first[members[0]]])
            s = int(service[row])
            port, name = self.ports[s], self.services[s]
            ip = local_ip(frame, row)
            total = float(flows[members].sum())
            sources = [
                {
                    "ip": address_text(
                        frame["remote_hi"][rows[triples.first[m]]],
                        frame["remote_lo"][rows[triples.first[m]]],
                    ),
                    "flows": float(flows[m]),
                }
                for m in members[:10].tolist()
            ]
            summary = (
                f"{ip} received {total:.0f} short {name} connections (port {port}) from "
                f"{len(members)} source(s), each at {self.settings.flows_per_minute:g} or more "
                f"a minute, in {frame.seconds} s"
            )
            findings.append(
                about_local(
                    frame,
                    row,
                    category=CATEGORY,
                    severity=self.settings.inbound_severity,
                    direction="inbound",
                    kind=name,
                    summary=summary,
                    counts={
                        "flows": total,
                        "flows_per_minute": float(rate[members].max()),
                        "sources": len(members),
                        "port": port,
                    },
                    top_peers=sources,
                    top_ports=[{"port": port, "flows": total}],
                )
            )
        return findings


def _attempts(requests: NDArray[np.float64], replies: NDArray[np.float64]) -> NDArray[np.float64]:
    """Connections counted from the side the exporters saw better: the requests towards
    the service port, or its replies when routing or an ingress-only exporter shows the
    return path alone. Taking the larger, not the sum, counts a connection seen both
    ways once."""
    attempts: NDArray[np.float64] = np.maximum(requests, replies)
    return attempts


# --- sshd logs --------------------------------------------------------------------------


def _column(table: pa.Table, name: str) -> NDArray[Any]:
    values: NDArray[Any] = table.column(name).to_numpy()
    return values


def _is(table: pa.Table, name: str, value: str) -> NDArray[np.bool_]:
    found: NDArray[np.bool_] = pc.fill_null(pc.equal(table.column(name), value), False).to_numpy()
    return found


def ssh_findings(
    table: pa.Table,
    settings: BruteForceSettings,
    *,
    window_seconds: int | None = None,
    index: AttributionIndex | None = None,
    top: int = 10,
) -> list[Finding]:
    """Brute force in parsed sshd events (``logformats.read_ssh``'s tables, attributed
    or not): per window, the servers against which a source had at least
    ``auth_failures`` failed logins, with those sources.

    A failed login is a ``Failed …`` line (one per password or key tried). A connection
    that has none but names a user and never logs in (``Invalid user …``, or closed by
    an ``authenticating user`` before authenticating, as on a server that takes only
    keys) counts as one. Connections are told apart by sshd's process id. Windows are
    ``window_seconds`` (default the detector's) aligned to the epoch, by the time of
    each connection's first line.

    Findings are inbound, about the server (when ``settings.inbound``); with an
    attribution ``index``, a source that was a customer's address at the time also
    gets an outbound finding: the customer attacking someone's SSH server.
    """
    if not settings.enabled or not len(table):
        return []
    seconds = window_seconds or settings.window_seconds
    width_ms = seconds * 1000
    time_ms = table.column("time").cast(pa.int64()).to_numpy()
    local_hi, local_lo = _column(table, "local_hi"), _column(table, "local_lo")
    remote_hi, remote_lo = _column(table, "remote_hi"), _column(table, "remote_lo")
    failed = _is(table, "result", "failed")
    accepted = _is(table, "result", "accepted")
    named = pc.fill_null(pc.not_equal(table.column("user"), ""), False).to_numpy()
    tried = _is(table, "result", "invalid-user") | (_is(table, "result", "disconnect") & named)
    pid = pc.fill_null(table.column("pid").cast(pa.int64()), -1).to_numpy()
    # A line without a process id is a connection of its own.
    pid = np.where(pid < 0, -2 - np.arange(len(pid)), pid)

    conn = group_by(local_hi, local_lo, remote_hi, remote_lo, pid)
    fails = conn.count(failed)
    logged_in = conn.count(accepted) > 0
    attempts = np.where(fails > 0, fails, ((conn.count(tried) > 0) & ~logged_in).astype(np.int64))
    began = np.full(len(conn), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(began, conn.inverse, time_ms)
    window = began // width_ms
    c_rows = conn.first
    pairs = group_by(
        window, local_hi[c_rows], local_lo[c_rows], remote_hi[c_rows], remote_lo[c_rows]
    )
    pair_attempts = np.bincount(pairs.inverse, weights=attempts, minlength=len(pairs))
    pair_logins = np.bincount(pairs.inverse, weights=logged_in, minlength=len(pairs))
    offending = np.flatnonzero(pair_attempts >= settings.auth_failures)
    if not len(offending):
        return []
    found = _Offenders(
        table=table,
        seconds=seconds,
        rows=c_rows[pairs.first[offending]],
        window=window[pairs.first[offending]],
        attempts=pair_attempts[offending].astype(np.float64),
        logins=pair_logins[offending].astype(np.float64),
        top=top,
    )
    findings: list[Finding] = []
    if settings.inbound:
        findings += found.findings(settings.inbound_severity, server_side=True, index=index)
    if index is not None:
        findings += found.findings(settings.severity, server_side=False, index=index)
    return findings


@dataclass
class _Offenders:
    """(window, server, source) pairs at or above ``auth_failures``."""

    table: pa.Table
    seconds: int
    #: A log row of each pair, its window number, failed attempts and logged-in
    #: connections.
    rows: NDArray[np.intp]
    window: NDArray[np.int64]
    attempts: NDArray[np.float64]
    logins: NDArray[np.float64]
    top: int

    def findings(
        self, severity: Severity, *, server_side: bool, index: AttributionIndex | None
    ) -> list[Finding]:
        """One finding per (window, address on the provider's side): the server attacked
        (inbound), or the customer's address attacking (outbound), the other ends as
        its peers."""
        table, rows = self.table, self.rows
        mine, theirs = ("local", "remote") if server_side else ("remote", "local")
        m_hi, m_lo = _column(table, f"{mine}_hi")[rows], _column(table, f"{mine}_lo")[rows]
        t_hi, t_lo = _column(table, f"{theirs}_hi")[rows], _column(table, f"{theirs}_lo")[rows]
        times = self.window * (self.seconds * 1000)
        if server_side and "customer_id" in table.column_names:
            customer = _column(table, "customer_id")[rows]
            instance = _column(table, "instance_id")[rows]
        elif index is not None:
            from hostwarden.registry import attribution

            customer, instance = attribution.attribute_many(index, (m_hi, m_lo), times)
        else:
            customer = instance = np.full(len(rows), -1, np.int64)
        keep = np.ones(len(rows), bool) if server_side else customer >= 0
        if not keep.any():
            return []
        idx = np.flatnonzero(keep)
        groups = group_by(self.window[idx], m_hi[idx], m_lo[idx])
        order, bounds = ranked(groups.inverse, self.attempts[idx], len(groups))
        findings: list[Finding] = []
        for g in range(len(groups)):
            members = idx[order[bounds[g] : bounds[g + 1]]]
            lead = int(members[0])
            ip = address_text(m_hi[lead], m_lo[lead])
            failures = float(self.attempts[members].sum())
            logged_in = float(self.logins[members].sum())
            peers = [
                {
                    "ip": address_text(t_hi[m], t_lo[m]),
                    "failures": int(self.attempts[m]),
                    "logins": int(self.logins[m]),
                }
                for m in members[: self.top].tolist()
            ]
            if server_side:
                what = f"{ip} had {failures:.0f} failed SSH logins from {len(members)} source(s)"
            else:
                what = (
                    f"{ip} failed {failures:.0f} SSH logins on {len(members)} server(s) "
                    "whose logs were imported"
                )
            summary = f"{what} in {self.seconds} s (sshd log)"
            if logged_in:
                summary += f"; {logged_in:.0f} of those sources' connections then logged in"
            findings.append(
                Finding(
                    category=CATEGORY,
                    severity=severity,
                    ip=ip,
                    direction="inbound" if server_side else "outbound",
                    window_start_ms=int(times[lead]),
                    window_seconds=self.seconds,
                    customer_id=held(customer[lead]),
                    instance_id=held(instance[lead]),
                    kind="ssh",
                    summary=summary,
                    counts={
                        "failures": failures,
                        "logins": logged_in,
                        "sources" if server_side else "servers": len(members),
                    },
                    top_peers=peers,
                    detector="bruteforce",
                )
            )
        return findings


def make(settings: DetectSettings, home: Path) -> BruteForceDetector | None:
    return BruteForceDetector(settings.bruteforce) if settings.bruteforce.enabled else None
