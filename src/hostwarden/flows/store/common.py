"""What the store backends share on the read side: the query result's schema with
readable addresses, and address-range conditions for their SQL."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from hostwarden.flows.schema import ARROW_SCHEMA, NAMES
from hostwarden.registry import netaddr

_U64_MASK = (1 << 64) - 1
QUERY_SCHEMA = ARROW_SCHEMA.append(pa.field("src", pa.string(), nullable=False)).append(
    pa.field("dst", pa.string(), nullable=False)
)


def range_condition(column: str, first: int, last: int, literal: Callable[[int], str] = str) -> str:
    """``column`` (src/dst) within the 128-bit range [first, last] of one CIDR prefix: a
    prefix is either a range of high words (length ≤ 64) or one high word and a range
    of low words, so this is always a conjunction the engine can push down. ``literal``
    writes an int as the engine's SQL wants it (every value is an int computed here,
    never text from a caller)."""
    first_hi, first_lo = first >> 64, first & _U64_MASK
    last_hi, last_lo = last >> 64, last & _U64_MASK
    if first_hi != last_hi:
        return f"{column}_hi BETWEEN {literal(first_hi)} AND {literal(last_hi)}"
    if first_lo == last_lo:
        return f"{column}_hi = {literal(first_hi)} AND {column}_lo = {literal(first_lo)}"
    return (
        f"{column}_hi = {literal(first_hi)} AND {column}_lo BETWEEN {literal(first_lo)} AND "
        f"{literal(last_lo)}"
    )


def _address_texts(hi: NDArray[np.uint64], lo: NDArray[np.uint64]) -> pa.Array:
    """Readable address text for every row, formatting each distinct address once."""
    if len(hi) == 0:
        return pa.array([], type=pa.string())
    pairs = np.stack([hi, lo], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    texts = np.array(
        [
            "" if h == 0 and lo_ == 0 else str(netaddr.hilo_to_address(int(h), int(lo_)))
            for h, lo_ in unique
        ],
        dtype=object,
    )
    return pa.array(texts[inverse.reshape(-1)], type=pa.string())


def with_address_texts(table: pa.Table) -> pa.Table:
    """A result table in ``QUERY_SCHEMA``: the stored columns plus src/dst as text."""
    arrays = [table.column(n) for n in NAMES]
    columns = {n: table.column(n).to_numpy() for n in ("src_hi", "src_lo", "dst_hi", "dst_lo")}
    base = pa.Table.from_arrays(
        [a.cast(f.type) for a, f in zip(arrays, ARROW_SCHEMA, strict=True)], schema=ARROW_SCHEMA
    )
    base = base.append_column(
        QUERY_SCHEMA.field("src"), _address_texts(columns["src_hi"], columns["src_lo"])
    )
    return base.append_column(
        QUERY_SCHEMA.field("dst"), _address_texts(columns["dst_hi"], columns["dst_lo"])
    )
