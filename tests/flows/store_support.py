"""Helpers shared by the flow store tests: synthetic batches built with numpy, a store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.runtime import Runtime
from hostwarden.flows.schema import LOCAL_DST, LOCAL_NONE, LOCAL_SRC, FlowBatch
from hostwarden.flows.store.parquet import ParquetStore
from hostwarden.registry import netaddr

DAY_MS = 86_400_000
#: 2026-05-01T00:00:00Z
MAY_1 = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1000)
V4 = np.uint64(0xFFFF << 32)


def v4(text: str) -> int:
    """The low word of an IPv4 address in the mapped form the schema stores."""
    return netaddr.text_to_int(text) & ((1 << 64) - 1)


def customer_addresses(prefix: str = "203.0.113.0", count: int = 16) -> NDArray[np.uint64]:
    base = np.uint64(v4(prefix))
    return base + np.arange(count, dtype=np.uint64)


def make_batch(
    rows: int,
    *,
    day_start_ms: int = MAY_1,
    span_ms: int = DAY_MS,
    local: NDArray[np.uint64] | None = None,
    seed: int = 1,
    customer_of_local: bool = True,
) -> FlowBatch:
    """``rows`` flows over [day_start_ms, +span_ms): one side a provider address from
    ``local`` (customer id = its index + 1), the other a random remote IPv4 address;
    45 % outbound (local is src), 45 % inbound (local is dst), 10 % unattributed."""
    rng = np.random.default_rng(seed)
    local_pool = customer_addresses() if local is None else local
    which = rng.integers(0, len(local_pool), rows)
    local_lo = local_pool[which]
    remote_lo = rng.integers(0x01000000, 0xC0000000, rows).astype(np.uint64) | V4
    side = rng.choice([LOCAL_NONE, LOCAL_SRC, LOCAL_DST], rows, p=[0.1, 0.45, 0.45])
    src = np.where(side == LOCAL_DST, remote_lo, local_lo)
    dst = np.where(side == LOCAL_DST, local_lo, remote_lo)
    start = day_start_ms + np.sort(rng.integers(0, span_ms, rows))
    customer = (which + 1).astype(np.int64) if customer_of_local else np.full(rows, -1)
    return FlowBatch(
        {
            "start": start,
            "end": start + rng.integers(0, 5_000, rows),
            "source": np.full(rows, 2),
            "exporter_lo": np.full(rows, v4("192.0.2.1"), dtype=np.uint64),
            "src_lo": src,
            "dst_lo": dst,
            "src_port": rng.integers(1024, 65535, rows),
            "dst_port": rng.choice([22, 53, 80, 443], rows),
            "proto": np.full(rows, 6),
            "packets": rng.integers(1, 100, rows),
            "bytes": rng.integers(40, 100_000, rows),
            "local_side": side,
            "customer_id": np.where(side == LOCAL_NONE, -1, customer),
        }
    )


def matching(batch: FlowBatch, lows: Sequence[int]) -> int:
    """How many records have one of these IPv4 addresses on either side."""
    wanted = np.array(list(lows), dtype=np.uint64)
    return int((np.isin(batch["src_lo"], wanted) | np.isin(batch["dst_lo"], wanted)).sum())


def new_store(runtime: Runtime) -> ParquetStore:
    return ParquetStore(runtime)


#: Six records small enough to add up by hand (``known_flows``): what each provider-side
#: address and customer totals, and what each minute of 1 May 00:00–00:05 holds.
CUSTOMER_A, CUSTOMER_B = "203.0.113.5", "203.0.113.6"
REMOTE_1, REMOTE_2, NOBODY = "198.51.100.1", "198.51.100.2", "192.0.2.9"


def known_flows() -> FlowBatch:
    """On 1 May from 00:00:00 UTC (start second, src → dst, ports, proto, packets,
    bytes, local side, customer):

    ====  ====================  ===========  =====  ===  ======  ====  ====
      0 s  A → remote 1          40000→443    tcp     10   1,000  src   1
     10 s  remote 1 → A          443→40000    tcp     20   2,000  dst   1
     70 s  B → remote 2          5353→53      udp      1     100  src   2
    130 s  remote 2 → B          53→5353      udp      2     300  dst   2
    200 s  A → remote 2          0→2048       icmp     5     500  src   1
    250 s  192.0.2.9 → remote 1  1234→80      tcp      3  30,000  none  -
    ====  ====================  ===========  =====  ===  ======  ====  ====

    So by provider-side address: 192.0.2.9 1 flow, 3 packets, 30,000 bytes; A 3, 35,
    3,500; B 2, 3, 400."""
    a, b, r1, r2, nobody = (v4(x) for x in (CUSTOMER_A, CUSTOMER_B, REMOTE_1, REMOTE_2, NOBODY))
    rows = [
        (0, a, r1, 40000, 443, 6, 10, 1_000, LOCAL_SRC, 1),
        (10, r1, a, 443, 40000, 6, 20, 2_000, LOCAL_DST, 1),
        (70, b, r2, 5353, 53, 17, 1, 100, LOCAL_SRC, 2),
        (130, r2, b, 53, 5353, 17, 2, 300, LOCAL_DST, 2),
        (200, a, r2, 0, 2048, 1, 5, 500, LOCAL_SRC, 1),
        (250, nobody, r1, 1234, 80, 6, 3, 30_000, LOCAL_NONE, -1),
    ]
    names = (
        "start",
        "src_lo",
        "dst_lo",
        "src_port",
        "dst_port",
        "proto",
        "packets",
        "bytes",
        "local_side",
        "customer_id",
    )
    columns = {n: np.array([r[i] for r in rows]) for i, n in enumerate(names)}
    columns["start"] = MAY_1 + columns["start"] * 1000
    columns["end"] = columns["start"] + 500
    columns["src_lo"] = columns["src_lo"].astype(np.uint64)
    columns["dst_lo"] = columns["dst_lo"].astype(np.uint64)
    return FlowBatch(columns)
