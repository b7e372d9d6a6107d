"""Traces for detector tests: attributed flow batches built from a few lines of intent.

The batches are what ingest produces (``local_side``, ``customer_id``, ``instance_id``
filled), so the detectors are tested without a registry; the end-to-end tests (replay
of a pcap through real attribution) live in test_replay.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.config_detect import DetectSettings
from hostwarden.detect.engine import Engine
from hostwarden.detect.findings import Finding
from hostwarden.detect.plugins import Detector
from hostwarden.flows.schema import LOCAL_DST, LOCAL_SRC, FlowBatch
from hostwarden.registry import netaddr

#: 2026-05-04 12:00:00 UTC, a Monday.
T0 = 1_777_896_000_000


def hilo(texts: Sequence[str]) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    return netaddr.texts_to_hilo(list(texts))


@dataclass
class Trace:
    """Records added by intent, then one batch (sorted by end time, as exporters send)."""

    parts: list[dict[str, NDArray[Any]]] = field(default_factory=list)

    def flows(
        self,
        *,
        local: str | Sequence[str],
        remote: str | Sequence[str],
        n: int,
        outbound: bool = True,
        local_port: int | NDArray[Any] = 40000,
        remote_port: int | NDArray[Any] = 443,
        proto: int = 6,
        tcp_flags: int = 0x1B,
        packets: int | NDArray[Any] = 10,
        bytes_per_packet: int = 500,
        start_ms: int = T0,
        spread_ms: int = 1000,
        duration_ms: int = 100,
        sampling: int = 1,
        customer_id: int = 1,
        instance_id: int = 10,
    ) -> Trace:
        """``n`` flows between ``local`` (the customer's side) and ``remote``, starting
        evenly over ``spread_ms`` from ``start_ms``; a sequence of addresses is used
        round-robin. Packets and bytes are given unsampled and scaled here by
        ``sampling``, as decoders do."""
        locals_ = [local] if isinstance(local, str) else list(local)
        remotes = [remote] if isinstance(remote, str) else list(remote)
        l_hi, l_lo = hilo([locals_[i % len(locals_)] for i in range(n)])
        r_hi, r_lo = hilo([remotes[i % len(remotes)] for i in range(n)])
        start = start_ms + (np.arange(n, dtype=np.int64) * spread_ms) // max(n, 1)
        pk = np.broadcast_to(np.asarray(packets, np.uint64), (n,)).copy()
        part = {
            "start": start,
            "end": start + duration_ms,
            "src_hi": l_hi if outbound else r_hi,
            "src_lo": l_lo if outbound else r_lo,
            "dst_hi": r_hi if outbound else l_hi,
            "dst_lo": r_lo if outbound else l_lo,
            "src_port": np.broadcast_to(
                np.asarray(local_port if outbound else remote_port, np.uint16), (n,)
            ).copy(),
            "dst_port": np.broadcast_to(
                np.asarray(remote_port if outbound else local_port, np.uint16), (n,)
            ).copy(),
            "proto": np.full(n, proto, np.uint8),
            "tcp_flags": np.full(n, tcp_flags, np.uint8),
            "packets": pk * np.uint64(sampling),
            "bytes": pk * np.uint64(bytes_per_packet * sampling),
            "sampling": np.full(n, sampling, np.uint32),
            "local_side": np.full(n, LOCAL_SRC if outbound else LOCAL_DST, np.uint8),
            "customer_id": np.full(n, customer_id, np.int64),
            "instance_id": np.full(n, instance_id, np.int64),
        }
        self.parts.append(part)
        return self

    def background(
        self,
        *,
        hosts: int = 200,
        records: int = 20_000,
        seconds: int = 600,
        start_ms: int = T0,
        seed: int = 7,
        prefix: str = "100.64.",
    ) -> Trace:
        """Ordinary traffic: ``hosts`` customer addresses talking to a pool of web, DNS
        and mail servers, a few flows a second each, nothing a detector should name."""
        rng = np.random.default_rng(seed)
        host = rng.integers(0, hosts, records)
        locals_ = [f"{prefix}{h // 250}.{h % 250 + 1}" for h in host.tolist()]
        server = rng.integers(0, 5000, records)
        remotes = [f"198.18.{s // 250}.{s % 250 + 1}" for s in server.tolist()]
        port = rng.choice(np.array([443, 80, 53, 443, 443, 993], np.uint16), records)
        start = start_ms + np.sort(rng.integers(0, seconds * 1000, records)).astype(np.int64)
        outbound = rng.random(records) < 0.5
        l_hi, l_lo = hilo(locals_)
        r_hi, r_lo = hilo(remotes)
        packets = rng.integers(4, 60, records).astype(np.uint64)
        self.parts.append(
            {
                "start": start,
                "end": start + rng.integers(10, 5000, records),
                "src_hi": np.where(outbound, l_hi, r_hi),
                "src_lo": np.where(outbound, l_lo, r_lo),
                "dst_hi": np.where(outbound, r_hi, l_hi),
                "dst_lo": np.where(outbound, r_lo, l_lo),
                "src_port": np.where(outbound, rng.integers(32768, 60999, records), port).astype(
                    np.uint16
                ),
                "dst_port": np.where(outbound, port, rng.integers(32768, 60999, records)).astype(
                    np.uint16
                ),
                "proto": np.where(port == 53, 17, 6).astype(np.uint8),
                "tcp_flags": np.where(port == 53, 0, 0x1B).astype(np.uint8),
                "packets": packets,
                "bytes": packets * np.uint64(700),
                "sampling": np.ones(records, np.uint32),
                "local_side": np.where(outbound, LOCAL_SRC, LOCAL_DST).astype(np.uint8),
                "customer_id": (host // 4 + 100).astype(np.int64),
                "instance_id": (host + 1000).astype(np.int64),
            }
        )
        return self

    def batch(self) -> FlowBatch:
        joined = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        order = np.argsort(joined["end"], kind="stable")
        return FlowBatch({k: v[order] for k, v in joined.items()})

    def batches(self, size: int = 5000) -> list[FlowBatch]:
        whole = self.batch()
        return [
            whole.take(np.arange(i, min(i + size, len(whole)))) for i in range(0, len(whole), size)
        ]


def run(
    detector: Detector,
    trace: Trace,
    settings: DetectSettings | None = None,
    size: int = 5000,
    *,
    early: bool = False,
) -> list[Finding]:
    """The findings of ``detector`` over the trace, fed in batches of ``size``: those of
    the windows' closes, and with ``early`` those made while a window was open too.

    An early finding on a window's records so far must be one its window's close makes
    as well (same address, category and direction): checked here, so every detector test
    checks it. (Volumetric findings on arrival rates, with ``recent_seconds`` in their
    counts, are about the last seconds, not the window, and are left out of the check.)"""
    engine = Engine(settings or DetectSettings(), [detector], strict=True)
    findings = engine.feed_all(trace.batches(size))
    closed = [f for f in findings if not f.early]
    made = {(f.ip, f.category, f.direction, f.window_start_ms) for f in closed}
    stray = [
        f.summary
        for f in findings
        if f.early
        and "recent_seconds" not in f.counts
        and (f.ip, f.category, f.direction, f.window_start_ms) not in made
    ]
    assert not stray, f"early findings the windows' closes did not make: {stray}"
    return findings if early else closed


def of(findings: Sequence[Finding], category: str, ip: str | None = None) -> list[Finding]:
    return [f for f in findings if f.category == category and (ip is None or f.ip == ip)]
