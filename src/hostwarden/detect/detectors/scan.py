"""Scanning from a customer address: horizontal (one port, many hosts) and vertical (one
host, many ports).

Zeek's scan policy is the reference for the defaults: 25 distinct hosts on one port, or
15 distinct ports on one host, within 5 minutes, counting only *probes*: attempts that
did not become a conversation. Flow records carry no connection state, so a probe here
is a TCP flow with SYN and without ACK, or any flow of at most ``probe_max_packets``
packets per sampled record (a reply-less UDP probe, a refused TCP connection), but not
a server's answer (from a port below 1024 to a high port) nor an ICMP reply or error.
Only outbound flows count: scans of the provider's customers from outside are
Internet background noise, not something the provider answers for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hostwarden.core.config_detect import DetectSettings, ScanSettings
from hostwarden.detect.detectors.common import (
    about_local,
    local_ip,
    packets_per_record,
    top_remote_ports,
    top_remotes,
)
from hostwarden.detect.findings import Finding, address_text
from hostwarden.detect.frame import ACK, ICMP, ICMP6, SYN, TCP, Frame, group_by

#: ICMP types that ask (echo 8, timestamp 13, address mask 17; ICMPv6 echo 128).
ICMP_PROBE_TYPES = np.zeros(256, dtype=bool)
ICMP_PROBE_TYPES[[8, 13, 17, 128]] = True


class ScanDetector:
    name = "scan"

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds

    def probes(self, frame: Frame) -> np.ndarray:
        proto = frame["proto"]
        flags = frame["tcp_flags"]
        local_port, remote_port = frame["local_port"], frame["remote_port"]
        syn_only = (proto == TCP) & ((flags & SYN) != 0) & ((flags & ACK) == 0)
        small = packets_per_record(frame) <= np.uint64(self.settings.probe_max_packets)
        # A server answering: from a well-known port to a client's ephemeral one (a DNS
        # server's replies to many clients' ports looked like a vertical scan in
        # bench/detect.py). Flow records do not say who opened a connection; this is the
        # usual rule of thumb, and scanners send from high ports.
        answering = (local_port < 1024) & (remote_port >= 1024) & (proto != ICMP)
        # ICMP (the type in the port's high byte): only echo, timestamp and address-mask
        # requests probe; replies and errors answer someone else.
        icmp = (proto == ICMP) | (proto == ICMP6)
        asking = ICMP_PROBE_TYPES[remote_port >> 8]
        result: np.ndarray = frame["outbound"] & (syn_only | small) & ~answering & (~icmp | asking)
        return result

    def evaluate(self, frame: Frame) -> list[Finding]:
        if frame.empty():
            return []
        probe = self.probes(frame)
        # An address with fewer probes than either threshold cannot reach it: most
        # addresses of a window, left out before the two distinct counts.
        groups = frame.by_local()
        probe &= (groups.count(probe) >= min(self.settings.hosts, self.settings.ports))[
            groups.inverse
        ]
        if not probe.any():
            return []
        # Horizontal: per (local, port) distinct hosts; report the local's widest port.
        remote = (frame["remote_hi"], frame["remote_lo"])
        port = frame["remote_port"]
        wide = _widest(frame, probe, (port,), remote, self.settings.hosts)
        # Vertical: per (local, remote host) distinct ports; the busiest host.
        deep = _widest(frame, probe, remote, (port,), self.settings.ports)
        # The peers, ports and probe counts of every scanner at once: one pass over the
        # frame for all of them, not one per finding (a window of a few hundred scanners
        # took seconds that way).
        wanted = np.array(sorted(wide), dtype=np.intp)
        chosen = np.full(len(groups), -1, np.int64)
        chosen[wanted] = [wide[g][0][0] for g in wanted.tolist()]
        on_port = probe & (port == chosen[groups.inverse])
        peers = top_remotes(frame, groups, wanted, on_port)
        probes = groups.sum(frame["flows"], probe)
        findings: list[Finding] = []
        for g in wanted.tolist():
            (scanned,), hosts = wide[g]
            findings.append(
                self._finding(
                    frame,
                    g,
                    kind="horizontal",
                    summary=f"probed port {scanned} on {hosts} hosts",
                    counts={"hosts": hosts, "port": scanned, "probes": float(probes[g])},
                    top_peers=peers[g],
                    top_ports=[{"port": scanned, "hosts": hosts}],
                )
            )
        wanted = np.array(sorted(deep), dtype=np.intp)
        target_hi = np.zeros(len(groups), np.uint64)
        target_lo = np.zeros(len(groups), np.uint64)
        for g in wanted.tolist():
            target_hi[g], target_lo[g] = deep[g][0]
        on_host = (
            probe
            & groups.member(wanted)
            & (remote[0] == target_hi[groups.inverse])
            & (remote[1] == target_lo[groups.inverse])
        )
        ports = top_remote_ports(frame, groups, wanted, on_host)
        host_probes = groups.sum(frame["flows"], on_host)
        for g in wanted.tolist():
            host, ports_n = deep[g]
            target = address_text(*host)
            findings.append(
                self._finding(
                    frame,
                    g,
                    kind="vertical",
                    summary=f"probed {ports_n} ports of {target}",
                    counts={"ports": ports_n, "probes": float(host_probes[g])},
                    top_peers=[{"ip": target, "ports": ports_n}],
                    top_ports=ports[g],
                )
            )
        return findings

    def _finding(
        self,
        frame: Frame,
        g: int,
        *,
        kind: str,
        summary: str,
        counts: dict[str, float],
        top_peers: list[dict[str, Any]],
        top_ports: list[dict[str, Any]],
    ) -> Finding:
        row = int(frame.by_local().first[g])
        return about_local(
            frame,
            row,
            category="scan",
            severity=self.settings.severity,
            direction="outbound",
            kind=kind,
            summary=f"{local_ip(frame, row)} {summary} in {frame.seconds} s",
            counts=counts,
            top_peers=top_peers,
            top_ports=top_ports,
        )


def _widest(
    frame: Frame,
    mask: np.ndarray,
    pivot: tuple[np.ndarray, ...],
    spread: tuple[np.ndarray, ...],
    threshold: int,
) -> dict[int, tuple[tuple[int, ...], int]]:
    """Per local group with at least ``threshold``: the ``pivot`` value with the most
    distinct ``spread`` values, and that count."""
    groups = frame.by_local()
    rows = np.flatnonzero(mask)
    owner = groups.inverse[rows]
    # Distinct (local, pivot, spread) triples, then count them per (local, pivot).
    triples = group_by(owner, *(p[rows] for p in pivot), *(s[rows] for s in spread))
    t_rows = rows[triples.first]
    t_owner = groups.inverse[t_rows]
    pairs = group_by(t_owner, *(p[t_rows] for p in pivot))
    counts = pairs.size
    pair_owner = t_owner[pairs.first]
    # Per owner, the pair with the highest count.
    order = np.lexsort((-counts, pair_owner))
    first_of_owner = np.ones(len(order), dtype=bool)
    first_of_owner[1:] = pair_owner[order][1:] != pair_owner[order][:-1]
    best = order[first_of_owner]
    best = best[counts[best] >= threshold]
    result: dict[int, tuple[tuple[int, ...], int]] = {}
    for i in best.tolist():
        row = t_rows[pairs.first[i]]
        result[int(pair_owner[i])] = (tuple(int(p[row]) for p in pivot), int(counts[i]))
    return result


def make(settings: DetectSettings, home: Path) -> ScanDetector | None:
    return ScanDetector(settings.scan) if settings.scan.enabled else None
