"""What a detector reports: one ``Finding`` per provider-side address (or customer) and
category in a window. The alert store deduplicates findings into alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hostwarden.core.config_detect import Severity
from hostwarden.core.timeutil import isoformat
from hostwarden.registry import netaddr

#: Categories of the built-in detectors (docs/detect.md); plugins may add their own.
CATEGORIES = (
    "ddos-out",
    "ddos-in",
    "scan",
    "bruteforce",
    "spam",
    "mining",
    "tunnel",
    "threat-intel",
    "anomaly",
)
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")


def address_text(hi: int, lo: int) -> str:
    return str(netaddr.hilo_to_address(int(hi), int(lo)))


@dataclass
class Finding:
    category: str
    severity: Severity
    #: The provider-side address (text) the finding is about.
    ip: str
    #: "outbound": the customer's address did it; "inbound": it was done to it.
    direction: str
    window_start_ms: int
    window_seconds: int
    #: Who held ``ip`` then (None: nobody on record).
    customer_id: int | None
    instance_id: int | None
    #: What exactly, within the category: "syn-flood", "horizontal", "ssh", "openvpn" …
    kind: str
    #: One sentence a person can read on its own.
    summary: str
    #: Figures of the window: packets, bytes, flows, pps, mbps, fps, hosts, ports …
    counts: dict[str, float] = field(default_factory=dict)
    #: Heaviest peers and ports: [{"ip": …, "flows": …, "bytes": …}], [{"port": …, …}].
    top_peers: list[dict[str, Any]] = field(default_factory=list)
    top_ports: list[dict[str, Any]] = field(default_factory=list)
    #: What the desk might do, e.g. "blackhole 203.0.113.5/32" for an inbound attack.
    suggested_action: str | None = None
    #: Which detector (plugin name) reported it.
    detector: str = ""
    #: Reported while its window was still open (``peek``): the counts are of the part
    #: seen so far, and the window's close reports the whole.
    early: bool = False

    @property
    def window_end_ms(self) -> int:
        return self.window_start_ms + self.window_seconds * 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "kind": self.kind,
            "severity": self.severity,
            "ip": self.ip,
            "direction": self.direction,
            "customer_id": self.customer_id,
            "instance_id": self.instance_id,
            "window_start": isoformat_ms(self.window_start_ms),
            "window_end": isoformat_ms(self.window_end_ms),
            "window_seconds": self.window_seconds,
            "summary": self.summary,
            "counts": {k: number(v) for k, v in self.counts.items()},
            "top_peers": self.top_peers,
            "top_ports": self.top_ports,
            "suggested_action": self.suggested_action,
            "detector": self.detector,
            "early": self.early,
        }


def number(value: float) -> float | int:
    """A count as JSON shows it best: an integer when whole, else to three places."""
    plain = float(value)
    return int(plain) if plain.is_integer() else round(plain, 3)


def isoformat_ms(ms: int) -> str:
    return isoformat(datetime.fromtimestamp(ms / 1000, tz=UTC))


def held(value: int) -> int | None:
    """An attribution column's value as an id (the store's -1 sentinel: None)."""
    return None if int(value) < 0 else int(value)
