"""The normalised flow record: one schema for every decoder, import and store backend.

A batch of records is columnar: one numpy array per column (``FlowBatch``), so decoders
fill whole columns at once and the store hands them to Arrow without copying. Addresses
are kept in the registry's 128-bit space (IPv4 mapped into ``::ffff:0:0/96``) as two
``uint64`` words, the form ``registry.attribution.attribute_many`` takes; an address of
all zeros means "not sent by the exporter" (used for the post-NAT columns).

Absent values use fixed sentinels instead of nulls, so that every column stays a plain
numpy array: 0 for counters, ports, flags and interfaces; ``DIRECTION_UNKNOWN`` for the
direction; -1 for customer and instance when nobody held the address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from hostwarden.errors import ValidationFailed


class FlowSource(IntEnum):
    """Where a record came from (column ``source``)."""

    NETFLOW5 = 1
    NETFLOW9 = 2
    IPFIX = 3
    SFLOW5 = 4
    NFDUMP_CSV = 5
    JSONL = 6

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


DIRECTION_INGRESS = 0
DIRECTION_EGRESS = 1
DIRECTION_UNKNOWN = 255

#: Which side of a record the provider's customer is on (column ``local_side``).
LOCAL_NONE = 0
LOCAL_SRC = 1
LOCAL_DST = 2


@dataclass(frozen=True)
class Column:
    name: str
    dtype: np.dtype[Any]
    arrow: pa.DataType
    doc: str
    default: int = 0


def _col(name: str, dtype: str, arrow: pa.DataType, doc: str, default: int = 0) -> Column:
    return Column(name, np.dtype(dtype), arrow, doc, default)


_TS = pa.timestamp("ms", tz="UTC")

#: Every column, in storage order.
COLUMNS: tuple[Column, ...] = (
    _col("start", "int64", _TS, "first packet, UTC epoch milliseconds"),
    _col("end", "int64", _TS, "last packet, UTC epoch milliseconds"),
    _col("source", "uint8", pa.uint8(), "FlowSource code: protocol or import format"),
    _col("exporter_hi", "uint64", pa.uint64(), "exporter address, high word"),
    _col("exporter_lo", "uint64", pa.uint64(), "exporter address, low word"),
    _col("src_hi", "uint64", pa.uint64(), "source address, high word"),
    _col("src_lo", "uint64", pa.uint64(), "source address, low word"),
    _col("dst_hi", "uint64", pa.uint64(), "destination address, high word"),
    _col("dst_lo", "uint64", pa.uint64(), "destination address, low word"),
    _col("src_port", "uint16", pa.uint16(), "source port (ICMP: 0)"),
    _col("dst_port", "uint16", pa.uint16(), "destination port (ICMP: type << 8 | code)"),
    _col("proto", "uint8", pa.uint8(), "IP protocol number"),
    _col("tcp_flags", "uint8", pa.uint8(), "OR of the TCP flags seen"),
    _col("packets", "uint64", pa.uint64(), "packets, multiplied by the sampling rate"),
    _col("bytes", "uint64", pa.uint64(), "bytes, multiplied by the sampling rate"),
    _col("sampling", "uint32", pa.uint32(), "sampling rate applied (1: unsampled)", 1),
    _col("in_if", "uint32", pa.uint32(), "input interface index"),
    _col("out_if", "uint32", pa.uint32(), "output interface index"),
    _col("direction", "uint8", pa.uint8(), "0 ingress, 1 egress, 255 unknown", 255),
    _col("nat_src_hi", "uint64", pa.uint64(), "post-NAT source address, high word"),
    _col("nat_src_lo", "uint64", pa.uint64(), "post-NAT source address, low word (0: none)"),
    _col("nat_dst_hi", "uint64", pa.uint64(), "post-NAT destination address, high word"),
    _col("nat_dst_lo", "uint64", pa.uint64(), "post-NAT destination address, low word"),
    _col("nat_src_port", "uint16", pa.uint16(), "post-NAT source port"),
    _col("nat_dst_port", "uint16", pa.uint16(), "post-NAT destination port"),
    _col("local_side", "uint8", pa.uint8(), "0 none, 1 source, 2 destination is the customer"),
    _col("customer_id", "int64", pa.int64(), "customer holding the local address then", -1),
    _col("instance_id", "int64", pa.int64(), "instance holding the local address then", -1),
)
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
ARROW_SCHEMA = pa.schema([pa.field(c.name, c.arrow, nullable=False) for c in COLUMNS])


class FlowBatch:
    """Records as one numpy array per column, all of one length."""

    __slots__ = ("columns",)

    def __init__(self, columns: Mapping[str, NDArray[Any]]) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValidationFailed(
                f"flow batch columns differ in length ({sorted(lengths)}).",
                hint="Every column of a batch must hold one value per record.",
            )
        unknown = set(columns) - set(NAMES)
        if unknown:
            raise ValidationFailed(
                f"unknown flow column(s): {', '.join(sorted(unknown))}.",
                hint=f"Columns are: {', '.join(NAMES)}.",
            )
        n = lengths.pop() if lengths else 0
        self.columns: dict[str, NDArray[Any]] = {}
        for c in COLUMNS:
            given = columns.get(c.name)
            if given is None:
                self.columns[c.name] = np.full(n, c.default, dtype=c.dtype)
            else:
                self.columns[c.name] = np.ascontiguousarray(given, dtype=c.dtype)

    @classmethod
    def empty(cls) -> FlowBatch:
        """A batch of no records. Shares one set of zero-length arrays (cheap: decoders
        return one per datagram), so callers must not resize its arrays in place."""
        batch = cls.__new__(cls)
        batch.columns = dict(_EMPTY_COLUMNS)
        return batch

    def __len__(self) -> int:
        return len(self.columns["start"])

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.columns[name]

    def take(self, rows: NDArray[Any]) -> FlowBatch:
        """The records at ``rows`` (indices or a boolean mask)."""
        return FlowBatch({k: v[rows] for k, v in self.columns.items()})

    @staticmethod
    def concat(batches: Iterable[FlowBatch]) -> FlowBatch:
        parts = [b for b in batches if len(b)]
        if not parts:
            return FlowBatch.empty()
        if len(parts) == 1:
            return parts[0]
        return FlowBatch({n: np.concatenate([b.columns[n] for b in parts]) for n in NAMES})

    def to_arrow(self) -> pa.Table:
        """The batch as an Arrow table with ``ARROW_SCHEMA`` (no copy for most columns)."""
        arrays = []
        for c in COLUMNS:
            values = self.columns[c.name]
            if c.arrow == _TS:
                arrays.append(pa.array(values, type=pa.int64()).cast(_TS))
            else:
                arrays.append(pa.array(values, type=c.arrow))
        return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> FlowBatch:
        columns: dict[str, NDArray[Any]] = {}
        for c in COLUMNS:
            column = table.column(c.name)
            if c.arrow == _TS:
                column = column.cast(pa.int64())
            columns[c.name] = column.to_numpy()
        return cls(columns)


_EMPTY_COLUMNS: dict[str, NDArray[Any]] = {c.name: np.zeros(0, dtype=c.dtype) for c in COLUMNS}
for _array in _EMPTY_COLUMNS.values():
    _array.flags.writeable = False
