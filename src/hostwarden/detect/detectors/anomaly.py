"""Anomalies: an instance far from its own hour-of-week baseline in packets, bits or flows
per second or in distinct peers.

The unit is the instance (a VM or server, across all its addresses), or the address
when no instance held it. Both directions count together: this detector asks "is this
machine doing something it never does at this hour", the volumetric and scan detectors
say what. It alerts when a metric is ``factor`` times its baseline for the slot, once
the slot has ``min_observations`` windows behind it and the value is above that
metric's floor (ten times 3 pps is not worth a person's time). Rates are computed as the
volumetric detector computes them (a record longer than the window counts with its
per-window share; see that module). The baseline is its own, in
``<state_dir>/anomaly-baselines.npz``, updated after judging with every key seen (those
just reported learnt from slowly, see baseline.py).

An address's instance is read from its first record in the window: an address moved to
another instance in the middle of a window is counted with the first one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.config_detect import AnomalySettings, DetectSettings
from hostwarden.detect.baseline import (
    NO_INSTANCE,
    Baselines,
    Keys,
    figure,
    hour_of_week,
    slot_text,
    window_share,
)
from hostwarden.detect.findings import Finding, address_text, held
from hostwarden.detect.frame import Frame, Groups, regroup, top_per_group

BASELINE_FILE = "anomaly-baselines.npz"
METRICS = ("pps", "bps", "fps", "peers")
#: How each metric is named in a finding (kind, counts) and shown.
_KINDS = ("pps", "mbps", "fps", "peers")
_UNITS = ("pps", "Mbit/s", "flows/s", "peers")
_SHOWN = np.array([1.0, 1e-6, 1.0, 1.0])


class AnomalyDetector:
    name = "anomaly"

    def __init__(self, settings: AnomalySettings, baselines: Baselines) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        self.baselines = baselines

    def evaluate(self, frame: Frame) -> list[Finding]:
        if frame.empty():
            return []
        s = self.settings
        seconds = float(frame.seconds)
        share = window_share(frame)
        packets = frame["packets"] * share
        addresses = frame.by_local()
        keyed, keys, key_of_address = _by_instance(frame, addresses)
        observed = np.column_stack(
            (
                keyed.sum(packets) / seconds,
                keyed.sum(frame["bytes"] * share) * 8.0 / seconds,
                keyed.sum(frame["flows"]) / seconds,
                _distinct_peers(keyed, frame["remote_hi"], frame["remote_lo"]),
            )
        )
        slot = hour_of_week(frame.start_ms)
        expected = self.baselines.expected(keys, slot)
        base = expected.values
        floors = np.array([s.min_pps, s.min_mbps * 1e6, s.min_fps, s.min_peers], np.float64)
        ratios = observed / np.maximum(base, 1e-9)
        far = (
            (expected.observations >= s.min_observations)[:, None]
            & (observed >= s.factor * base)
            & (observed >= floors)
        )
        flagged: NDArray[np.bool_] = np.any(far, axis=1)
        hit = np.flatnonzero(flagged)
        findings: list[Finding] = []
        if len(hit):
            address_packets = addresses.sum(packets)
            outbound_share = keyed.sum(packets, frame["outbound"]) / np.maximum(
                keyed.sum(packets), 1e-9
            )
            port = np.where(frame["outbound"], frame["remote_port"], frame["local_port"])
            remote = [frame["remote_hi"], frame["remote_lo"]]
            peers = top_per_group(keyed, hit, remote, packets, 10)
            ports = top_per_group(keyed, hit, [port], packets, 10)
            for k in hit.tolist():
                mine = np.flatnonzero(key_of_address == k)
                busiest = int(addresses.first[mine[np.argmax(address_packets[mine])]])
                m = int(np.argmax(np.where(far[k], ratios[k], -np.inf)))
                findings.append(
                    self._finding(
                        frame,
                        row=busiest,
                        metric=m,
                        observed=observed[k],
                        base=base[k],
                        addresses=len(mine),
                        outbound=bool(outbound_share[k] >= 0.5),
                        slot=slot,
                        peers=[
                            {"ip": address_text(*key), "packets": round(w)} for key, w in peers[k]
                        ],
                        ports=[{"port": key[0], "packets": round(w)} for key, w in ports[k]],
                    )
                )
        if not frame.early:
            self.baselines.update(keys, slot, observed, frame.end_ms, flagged)
        self.baselines.maybe_save()
        return findings

    def save_state(self) -> None:
        self.baselines.save()

    def _finding(
        self,
        frame: Frame,
        *,
        row: int,
        metric: int,
        observed: NDArray[np.float64],
        base: NDArray[np.float64],
        addresses: int,
        outbound: bool,
        slot: int,
        peers: list[dict[str, object]],
        ports: list[dict[str, object]],
    ) -> Finding:
        ip = address_text(frame["local_hi"][row], frame["local_lo"][row])
        instance = held(frame["instance_id"][row])
        shown, usual = observed * _SHOWN, base * _SHOWN
        counts: dict[str, float] = {}
        for i, name in enumerate(_KINDS):
            counts[name] = round(float(shown[i]), 3)
            counts[f"baseline_{name}"] = round(float(usual[i]), 3)
        counts["ratio"] = round(float(observed[metric] / max(base[metric], 1e-9)), 1)
        counts["addresses"] = addresses
        who = f"instance {instance} ({ip})" if instance is not None else ip
        unit = _UNITS[metric]
        summary = (
            f"{who} carried "
            f"{figure(shown[metric])} {unit} in {frame.seconds} s, "
            f"{figure(counts['ratio'])}× its usual {figure(usual[metric])} {unit} "
            f"for {slot_text(slot)}; mostly {'outbound' if outbound else 'inbound'}."
        )
        return Finding(
            category="anomaly",
            severity=self.settings.severity,
            ip=ip,
            direction="outbound" if outbound else "inbound",
            window_start_ms=frame.start_ms,
            window_seconds=frame.seconds,
            customer_id=held(frame["customer_id"][row]),
            instance_id=instance,
            kind=_KINDS[metric],
            summary=summary,
            counts=counts,
            top_peers=peers,
            top_ports=ports,
        )


def _by_instance(frame: Frame, addresses: Groups) -> tuple[Groups, Keys, NDArray[np.intp]]:
    """The rows grouped by instance (or by address when no instance held it): those
    groups, their baseline keys, and each address group's instance group."""
    first = addresses.first
    instance = frame["instance_id"][first].astype(np.int64)
    has = instance >= 0
    hi = np.where(has, np.uint64(0), frame["local_hi"][first]).astype(np.uint64)
    lo = np.where(has, np.uint64(0), frame["local_lo"][first]).astype(np.uint64)
    instance = np.where(has, instance, NO_INSTANCE)
    keyed, key_of_address = regroup(addresses, instance, hi, lo)
    owners = keyed.first
    # The first address group of each key (regroup's ``first`` is a row; its key columns
    # are read back through the address group it belongs to).
    of_key = addresses.inverse[owners]
    keys = Keys(hi[of_key], lo[of_key], instance[of_key])
    return keyed, keys, key_of_address


_PEER_BITS = 40


def _distinct_peers(
    groups: Groups, hi: NDArray[np.uint64], lo: NDArray[np.uint64]
) -> NDArray[np.float64]:
    """Per group, how many distinct remote addresses. One sort of one uint64 column
    (the group number above a 40-bit hash of the address) instead of a three-key
    lexsort, about four times faster; two peers of one group share a hash once in
    2^40 pairs, so an instance with a million peers is undercounted by about one."""
    if len(groups) >= 1 << (64 - _PEER_BITS):
        return groups.distinct(hi, lo).astype(np.float64)
    z = (hi * np.uint64(0x9E3779B97F4A7C15)) ^ lo
    # splitmix64's finaliser: every input bit reaches the low bits kept.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    key = (groups.inverse.astype(np.uint64) << np.uint64(_PEER_BITS)) | (
        z & np.uint64((1 << _PEER_BITS) - 1)
    )
    key.sort()
    new = np.ones(len(key), bool)
    new[1:] = key[1:] != key[:-1]
    owner = (key[new] >> np.uint64(_PEER_BITS)).astype(np.intp)
    return np.bincount(owner, minlength=len(groups)).astype(np.float64)


def make(settings: DetectSettings, home: Path) -> AnomalyDetector | None:
    s = settings.anomaly
    if not s.enabled:
        return None
    baselines = Baselines(
        METRICS,
        window_seconds=s.window_seconds,
        alpha=s.alpha,
        capacity=s.max_baselines,
        path=home / settings.state_dir / BASELINE_FILE,
    )
    return AnomalyDetector(s, baselines)
