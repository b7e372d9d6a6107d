"""One closed window of attributed records, seen from the provider's side, and the
vectorised group-by helpers every detector is built from.

A record enters a frame only when one side of it was held by a customer at the time
(``local_side`` set at ingest); transit records are not the provider's to judge. Each
record is turned round so that ``local_*`` is the provider-side address and port and
``remote_*`` the other side, with ``outbound`` telling which way it went. Packets and
bytes are sampling-scaled already (decode multiplies them); ``flows`` is the number of
flows a record stands for, its sampling rate, so that flows per second are comparable
between exporters that sample differently.

Why hand-written group-by instead of polars or pandas: the keys are 128-bit addresses
in two uint64 words plus small integers, and every helper here is one ``np.unique`` or
``np.lexsort`` plus ``np.bincount`` / ``np.add.reduceat`` over them; a DataFrame library
would copy the columns into its own layout for each question and is not faster for
these few operations (numpy is already a dependency, polars would be a second engine).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hostwarden.flows.schema import LOCAL_NONE, LOCAL_SRC, FlowBatch

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]

#: The columns of a frame (record level), each a numpy array of one length.
FRAME_COLUMNS = (
    "start",
    "end",
    "local_hi",
    "local_lo",
    "remote_hi",
    "remote_lo",
    "local_port",
    "remote_port",
    "proto",
    "tcp_flags",
    "packets",
    "bytes",
    "flows",
    "sampling",
    "outbound",
    "customer_id",
    "instance_id",
)

TCP, UDP, ICMP, ICMP6, GRE, ESP = 6, 17, 1, 58, 47, 50
SYN, ACK = 0x02, 0x10


def project(batch: FlowBatch) -> dict[str, NDArray[Any]]:
    """The frame columns of a batch's records that have a provider side."""
    side = batch["local_side"]
    keep = side != LOCAL_NONE
    if not keep.all():
        batch = batch.take(keep)
        side = batch["local_side"]
    out = side == LOCAL_SRC
    sampling = batch["sampling"].astype(np.int64)
    np.maximum(sampling, 1, out=sampling)
    return {
        "start": batch["start"],
        "end": batch["end"],
        "local_hi": np.where(out, batch["src_hi"], batch["dst_hi"]),
        "local_lo": np.where(out, batch["src_lo"], batch["dst_lo"]),
        "remote_hi": np.where(out, batch["dst_hi"], batch["src_hi"]),
        "remote_lo": np.where(out, batch["dst_lo"], batch["src_lo"]),
        "local_port": np.where(out, batch["src_port"], batch["dst_port"]),
        "remote_port": np.where(out, batch["dst_port"], batch["src_port"]),
        "proto": batch["proto"],
        "tcp_flags": batch["tcp_flags"],
        "packets": batch["packets"],
        "bytes": batch["bytes"],
        "flows": sampling,
        "sampling": sampling,
        "outbound": out,
        "customer_id": batch["customer_id"],
        "instance_id": batch["instance_id"],
    }


class Columns(Mapping[str, NDArray[Any]]):
    """A window's columns, joined from its pieces one column at a time when a detector
    first reads it: a column no detector of the window reads is never copied (joining
    all of them was a tenth of the engine's time in bench/detect.py)."""

    def __init__(self, pieces: Sequence[Mapping[str, NDArray[Any]]]) -> None:
        self._pieces = list(pieces)
        self._joined: dict[str, NDArray[Any]] = {}

    def __getitem__(self, name: str) -> NDArray[Any]:
        column = self._joined.get(name)
        if column is None:
            parts = [p[name] for p in self._pieces]
            column = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self._joined[name] = column
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(self._pieces[0])

    def __len__(self) -> int:
        return len(self._pieces[0])

    @property
    def rows(self) -> int:
        return sum(len(p["end"]) for p in self._pieces)

    @property
    def pieces(self) -> list[Mapping[str, NDArray[Any]]]:
        return self._pieces


@dataclass
class Groups:
    """Rows grouped by a key: ``inverse[i]`` is row i's group, ``first[g]`` the first row
    of group g (to read its key columns back), ``size[g]`` its row count."""

    inverse: NDArray[np.intp]
    first: NDArray[np.intp]
    size: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.first)

    def sum(self, values: NDArray[Any], mask: NDArray[np.bool_] | None = None) -> NDArray[Any]:
        """Per group, the sum of ``values`` (of the rows in ``mask``)."""
        weights = values.astype(np.float64)
        if mask is not None:
            weights = np.where(mask, weights, 0.0)
        return np.bincount(self.inverse, weights=weights, minlength=len(self))

    def member(self, wanted: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Per row, whether its group is in ``wanted`` (a table lookup; ``np.isin`` sorts
        both sides and cost a third of a detector's time in bench/detect.py)."""
        table = np.zeros(len(self), dtype=bool)
        table[wanted] = True
        result: NDArray[np.bool_] = table[self.inverse]
        return result

    def count(self, mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        return np.bincount(self.inverse[mask], minlength=len(self)).astype(np.int64)

    def distinct(self, *keys: NDArray[Any], mask: NDArray[np.bool_] | None = None) -> NDArray[Any]:
        """Per group, how many distinct values ``keys`` (together) take."""
        rows = np.arange(len(self.inverse)) if mask is None else np.flatnonzero(mask)
        if not len(rows):
            return np.zeros(len(self), np.int64)
        sub = group_by(self.inverse[rows], *(k[rows] for k in keys))
        owner = self.inverse[rows][sub.first]
        return np.bincount(owner, minlength=len(self)).astype(np.int64)


def group_by(*keys: NDArray[Any]) -> Groups:
    """Group rows by the tuple of ``keys`` (any integer columns) with one sort.

    Keys that hold one value throughout are left out, and when the others' value ranges
    fit 64 bits together (an IPv4 address's low word, a port, a group number: nearly
    always) they are packed into one uint64 and sorted with one ``argsort``, three to
    four times faster than ``lexsort`` over the separate columns."""
    n = len(keys[0])
    if n == 0:
        empty = np.zeros(0, np.intp)
        return Groups(empty, empty, np.zeros(0, np.int64))
    packed = _packed(keys)
    if packed is None:
        order = np.lexsort(keys[::-1])
        boundary = np.zeros(n, dtype=bool)
        for key in keys:
            ordered = key[order]
            boundary[1:] |= ordered[1:] != ordered[:-1]
    else:
        order = np.argsort(packed)
        ordered = packed[order]
        boundary = np.empty(n, dtype=bool)
        np.not_equal(ordered[1:], ordered[:-1], out=boundary[1:])
    boundary[0] = True
    starts = np.flatnonzero(boundary)
    group_of_sorted = np.cumsum(boundary) - 1
    inverse = np.empty(n, np.intp)
    inverse[order] = group_of_sorted
    size = np.diff(np.append(starts, n)).astype(np.int64)
    # Each group's first row in the input (the sort is not stable): what detectors read
    # a group's customer and instance from.
    first = np.minimum.reduceat(order, starts) if packed is not None else order[starts]
    return Groups(inverse, first, size)


def _packed(keys: Sequence[NDArray[Any]]) -> NDArray[np.uint64] | None:
    """The keys as one uint64 that sorts as the tuple does, or None if they need more
    than 64 bits."""
    parts: list[tuple[NDArray[np.uint64], int]] = []
    total = 0
    for key in keys:
        low, high = key.min(), key.max()
        if low == high:
            continue
        bits = (int(high) - int(low)).bit_length()
        total += bits
        if total > 64:
            return None
        if key.dtype.kind == "u":
            shifted = (key.astype(np.uint64, copy=False) - np.uint64(int(low))).astype(np.uint64)
        else:
            shifted = (key.astype(np.int64, copy=False) - np.int64(int(low))).astype(np.uint64)
        parts.append((shifted, bits))
    packed = np.zeros(len(keys[0]), np.uint64)
    for shifted, bits in parts:
        packed <<= np.uint64(bits)
        packed |= shifted
    return packed


def regroup(groups: Groups, *keys: NDArray[Any]) -> tuple[Groups, NDArray[np.intp]]:
    """Rows grouped by a key of their group (``keys``: one value per group of ``groups``,
    e.g. the customer of each address): the coarser groups, and each group's coarser
    group. Sorts the groups, not the rows, so it is cheap on a grouping already made."""
    outer = group_by(*keys)
    inverse = outer.inverse[groups.inverse]
    size = np.bincount(outer.inverse, weights=groups.size, minlength=len(outer))
    return Groups(inverse, groups.first[outer.first], size.astype(np.int64)), outer.inverse


def top_per_group(
    groups: Groups,
    wanted: NDArray[np.intp],
    keys: Sequence[NDArray[Any]],
    weight: NDArray[Any],
    k: int,
    mask: NDArray[np.bool_] | None = None,
) -> dict[int, list[tuple[tuple[int, ...], float]]]:
    """For each group in ``wanted``, its ``k`` heaviest values of ``keys`` by summed
    ``weight``: {group: [(key tuple, weight), …]}. Only called for the few groups that
    raise an alert, so the per-group loop here is over alerts, not records."""
    result: dict[int, list[tuple[tuple[int, ...], float]]] = {}
    if not len(wanted):
        return result
    chosen = groups.member(wanted)
    if mask is not None:
        chosen &= mask
    rows = np.flatnonzero(chosen)
    owner = groups.inverse[rows]
    sub = group_by(owner, *(key[rows] for key in keys))
    totals = np.bincount(sub.inverse, weights=weight[rows].astype(np.float64), minlength=len(sub))
    sub_owner = owner[sub.first]
    # One stable sort by (group, heaviest first) and a slice per group: a scan of all
    # values per wanted group would cost groups × values when many groups alert.
    order = np.lexsort((-totals, sub_owner))
    ordered_owner = sub_owner[order]
    starts = np.searchsorted(ordered_owner, wanted, "left")
    stops = np.searchsorted(ordered_owner, wanted, "right")
    for g, start, stop in zip(wanted.tolist(), starts.tolist(), stops.tolist(), strict=True):
        best = order[start : min(stop, start + k)]
        result[g] = [
            (tuple(int(key[rows[sub.first[i]]]) for key in keys), float(totals[i])) for i in best
        ]
    return result


def address_rows(high: U64, low: U64, hi: U64, lo: U64) -> NDArray[np.intp]:
    """The rows of address columns (``high``, ``low``) that hold one of the few addresses
    (``hi``, ``lo``): the low words narrow the rows first, then each address is compared
    (no sort of the columns)."""
    rows = np.flatnonzero(np.isin(low, lo))
    if not len(rows):
        return rows
    high, low = high[rows], low[rows]
    keep = np.zeros(len(rows), dtype=bool)
    for h, v in zip(hi.tolist(), lo.tolist(), strict=True):
        keep |= (high == h) & (low == v)
    return rows[keep]


@dataclass
class Frame:
    """The records of one window: ``[start_ms, start_ms + seconds * 1000)`` by end time."""

    seconds: int
    start_ms: int
    columns: Mapping[str, NDArray[Any]]
    #: True when the window was evaluated before its end because it held
    #: ``max_window_records`` records; the rest of its time comes in another frame.
    early: bool = False
    #: For a frame shown to ``peek``: the newest record end when the engine looked (every
    #: frame of one look has the same), a clock for rates of records as they arrive.
    looked_ms: int | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.seconds * 1000

    def __len__(self) -> int:
        columns = self.columns
        return columns.rows if isinstance(columns, Columns) else len(columns["end"])

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.columns[name]

    def by_local(self) -> Groups:
        """Rows grouped by provider-side address (cached: most detectors start here)."""
        groups = self._cache.get("by_local")
        if groups is None:
            groups = group_by(self.columns["local_hi"], self.columns["local_lo"])
            self._cache["by_local"] = groups
        return groups

    def of_addresses(self, hi: U64, lo: U64) -> Frame:
        """The records whose provider-side address is one of (``hi``, ``lo``), as a frame
        of the same window: for the few addresses that reached a threshold, found by
        comparing columns piece by piece (no sort, and the window's columns are not
        joined, which a detector looking at an open window would pay for again)."""
        pieces = self.columns.pieces if isinstance(self.columns, Columns) else [self.columns]
        parts: list[dict[str, NDArray[Any]]] = []
        for piece in pieces:
            rows = address_rows(piece["local_hi"], piece["local_lo"], hi, lo)
            parts.append({name: column[rows] for name, column in piece.items()})
        return Frame(
            self.seconds, self.start_ms, Columns(parts), early=self.early, looked_ms=self.looked_ms
        )

    def by_customer(self) -> Groups:
        groups = self._cache.get("by_customer")
        if groups is None:
            groups = group_by(self.columns["customer_id"])
            self._cache["by_customer"] = groups
        return groups

    def empty(self) -> bool:
        return len(self) == 0
