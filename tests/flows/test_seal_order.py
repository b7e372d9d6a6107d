"""The order of rows in a sealed segment: grouped by which column holds the provider-side
address, then that address, then start time; the fast packed-key sort for IPv4 gives the
same order as the general four-key sort, and IPv6 or long spans take the general one."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from hostwarden.flows.schema import LOCAL_DST, FlowBatch
from hostwarden.flows.store import parquet, sealing
from tests.flows.store_support import DAY_MS, MAY_1, make_batch


def sort_keys(batch: FlowBatch) -> np.ndarray:
    hi, lo = sealing.local_address(batch)
    group = (batch["local_side"] == LOCAL_DST).astype(np.uint64)
    return np.stack([group, hi, lo, batch["start"].astype(np.uint64)])


def general_order(batch: FlowBatch) -> np.ndarray:
    hi, lo = sealing.local_address(batch)
    group = batch["local_side"] == LOCAL_DST
    return np.lexsort((batch["start"], lo, hi, group))


def test_ipv4_rows_are_ordered_as_the_four_key_sort_orders_them() -> None:
    batch = make_batch(50_000, seed=3)
    order = parquet.storage_order(batch)
    assert sorted(order.tolist()) == list(range(len(batch)))
    expected = sort_keys(batch)[:, general_order(batch)]
    assert np.array_equal(sort_keys(batch)[:, order], expected)


def test_ipv6_addresses_and_spans_over_a_day_take_the_general_sort() -> None:
    batch = make_batch(5_000, seed=4)
    v6 = dict(batch.columns)
    v6["src_hi"] = np.where(batch["local_side"] == LOCAL_DST, 0, np.uint64(0x20010DB8 << 32))
    for case in (
        FlowBatch(v6),
        make_batch(5_000, seed=5, span_ms=3 * DAY_MS),  # more than 2^27 ms of starts
    ):
        assert np.array_equal(parquet.storage_order(case), general_order(case))


def test_a_sealed_segment_holds_every_record_once_in_storage_order() -> None:
    batch = make_batch(20_000, seed=6, day_start_ms=MAY_1)
    data, fields = parquet.segment_bytes(batch)
    table = pq.read_table(io.BytesIO(memoryview(data)))
    stored = FlowBatch.from_arrow(table)
    assert fields["rows"] == len(stored) == len(batch)
    keys = sort_keys(stored)
    assert np.array_equal(keys, keys[:, np.lexsort(keys[::-1])]), "rows are in key order"
    # Same records: every column's multiset is unchanged, constant columns included.
    for name in batch.columns:
        assert np.array_equal(np.sort(stored[name]), np.sort(batch[name])), name
