"""What every decoder returns: records, the problems met, and interface counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from hostwarden.flows.schema import FlowBatch


class DecodeError(NamedTuple):
    """One problem in one datagram (or file part); the rest of the input goes on.

    ``reason`` is a short stable slug, used as a metric label: ``truncated``,
    ``bad-version``, ``no-template``, ``bad-template``, ``bad-length``, ``bad-sample``,
    ``template-expired`` …; ``detail`` says what exactly, for the log line."""

    exporter: str
    reason: str
    detail: str


@dataclass(frozen=True)
class InterfaceCounters:
    """An sFlow counter sample (generic interface counters)."""

    exporter: str
    received_ms: int
    source_id: int
    if_index: int
    if_speed: int
    in_octets: int
    in_packets: int
    in_errors: int
    in_discards: int
    out_octets: int
    out_packets: int
    out_errors: int
    out_discards: int


@dataclass
class DecodeResult:
    batch: FlowBatch = field(default_factory=FlowBatch.empty)
    errors: list[DecodeError] = field(default_factory=list)
    counters: list[InterfaceCounters] = field(default_factory=list)
    #: Data sets (NetFlow v9 / IPFIX) held waiting for their template after this call.
    buffered: int = 0

    def extend(self, other: DecodeResult) -> None:
        self.batch = FlowBatch.concat([self.batch, other.batch])
        self.errors.extend(other.errors)
        self.counters.extend(other.counters)
        self.buffered = other.buffered
