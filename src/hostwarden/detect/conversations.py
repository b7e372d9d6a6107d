"""Conversations followed across windows: how long a 5-tuple has been talking and how
much it moved, for the detectors that look for long-lived flows (Stratum mining,
proxies).

Exporters cut a long connection into records at their active timeout (often 60 s,
Cisco's default 30 min), and a window holds at most five minutes, so "a flow of at
least ten minutes" cannot be read off one record or one window. A ``Conversations``
keeps, per 5-tuple seen from the provider side (local address and port, remote address
and port, protocol), when it was first and last seen and its bytes, and joins the
records of later windows to it while they continue it: a record that starts no more
than ``gap_ms`` after the conversation was last seen (idle connections export nothing;
Stratum sends a job or keepalive at least every minute or two). Both directions of a
connection have the same 5-tuple here, since the frame turns every record round.

The 5-tuple is grouped by a 64-bit hash of its words (one ``np.argsort`` of one
column instead of a five-key ``lexsort``, several times faster); two conversations of
one window share a hash with a chance of about n²/2⁶⁵, some 10⁻⁸ for 500,000 of them,
and would then add up. Memory is bounded: conversations idle for longer than the gap
are dropped, and at most ``max_tracked`` are kept (the most recently seen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hostwarden.detect.frame import Frame, group_by

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(31)


def _mix(value: U64) -> U64:
    value = value ^ (value >> _M3)
    value = value * _M2
    mixed: U64 = value ^ (value >> _M3)
    return mixed


def tuple_hash(frame: Frame, rows: NDArray[np.intp]) -> U64:
    """A 64-bit hash of the 5-tuple of each of ``rows``."""
    word = (
        (frame["local_port"][rows].astype(np.uint64) << np.uint64(24))
        | (frame["remote_port"][rows].astype(np.uint64) << np.uint64(8))
        | frame["proto"][rows].astype(np.uint64)
    )
    h = _mix(frame["local_lo"][rows] * _M1 ^ frame["local_hi"][rows])
    h = _mix(h * _M1 ^ frame["remote_lo"][rows])
    h = _mix(h * _M1 ^ frame["remote_hi"][rows])
    return _mix(h * _M1 ^ word)


@dataclass
class Seen:
    """The conversations of one window's rows, merged with what came before."""

    #: A row of the frame (of this window) of each conversation, to read its 5-tuple.
    row: NDArray[np.intp]
    #: First and last time seen (epoch ms), over this and earlier windows.
    first_ms: I64
    last_ms: I64
    #: Bytes over this and earlier windows (sampling-scaled).
    bytes: NDArray[np.float64]
    #: For each row passed to ``update``, its conversation.
    of_row: NDArray[np.intp]

    def __len__(self) -> int:
        return len(self.row)

    @property
    def seconds(self) -> NDArray[np.float64]:
        span: NDArray[np.float64] = (self.last_ms - self.first_ms) / 1000.0
        return span


class Conversations:
    def __init__(self, gap_ms: int, max_tracked: int = 1_000_000) -> None:
        self.gap_ms = gap_ms
        self.max_tracked = max_tracked
        self._hash: U64 = np.zeros(0, np.uint64)
        self._first: I64 = np.zeros(0, np.int64)
        self._last: I64 = np.zeros(0, np.int64)
        self._bytes: NDArray[np.float64] = np.zeros(0, np.float64)

    def __len__(self) -> int:
        return len(self._hash)

    def update(self, frame: Frame, rows: NDArray[np.intp]) -> Seen:
        """Join ``rows`` of a frame (frames in time order) to the conversations kept."""
        h = tuple_hash(frame, rows)
        groups = group_by(h)
        n = len(groups)
        first = np.full(n, np.iinfo(np.int64).max, np.int64)
        last = np.full(n, np.iinfo(np.int64).min, np.int64)
        np.minimum.at(first, groups.inverse, frame["start"][rows])
        np.maximum.at(last, groups.inverse, frame["end"][rows])
        size = groups.sum(frame["bytes"][rows])
        new_hash = h[groups.first]
        # Pair each new conversation with the kept one of the same hash, if any.
        kept = len(self._hash)
        stale = np.ones(kept, bool)
        if kept:
            order = np.argsort(self._hash, kind="stable")
            at = np.minimum(np.searchsorted(self._hash[order], new_hash), kept - 1)
            match = order[at]
            known = self._hash[match] == new_hash
            continued = known & (first <= self._last[match] + self.gap_ms)
            first = np.where(continued, np.minimum(first, self._first[match]), first)
            last = np.where(continued, np.maximum(last, self._last[match]), last)
            size = np.where(continued, size + self._bytes[match], size)
            stale[match[known]] = False
        # The kept state: the old conversations not seen now, then the new ones.
        horizon = frame.end_ms - self.gap_ms
        old = stale & (self._last >= horizon)
        self._hash = np.concatenate([self._hash[old], new_hash])
        self._first = np.concatenate([self._first[old], first])
        self._last = np.concatenate([self._last[old], last])
        self._bytes = np.concatenate([self._bytes[old], size])
        if len(self._hash) > self.max_tracked:
            recent = np.argsort(-self._last, kind="stable")[: self.max_tracked]
            self._hash, self._first = self._hash[recent], self._first[recent]
            self._last, self._bytes = self._last[recent], self._bytes[recent]
        return Seen(rows[groups.first], first, last, size, groups.inverse)

    def expire(self, frame: Frame) -> None:
        """Drop what a window without candidate rows leaves idle for longer than the gap."""
        keep = self._last >= frame.end_ms - self.gap_ms
        if not keep.all():
            self._hash, self._first = self._hash[keep], self._first[keep]
            self._last, self._bytes = self._last[keep], self._bytes[keep]
