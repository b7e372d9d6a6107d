"""From decoded records to stored ones: attribution at ingest, then the store.

Every record is attributed at its own start time through the registry's vectorised bulk
lookup, once for the source and once for the destination address. The side held by a
customer then is the *local* side (``local_side``), and its customer and instance fill the
attribution columns; when both sides were customers' (traffic between two customers),
the source wins, since outbound behaviour is what the provider answers for first.
NAT ports are not resolved here: an exporter behind NAT is expected to send the private
(pre-NAT) address, with the public one in the post-NAT columns.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hostwarden.core.runtime import Runtime
from hostwarden.flows.schema import LOCAL_DST, LOCAL_NONE, LOCAL_SRC, FlowBatch
from hostwarden.registry import attribution


class RecordSink(Protocol):
    """Where attributed records go: a FlowStore, or a detector in later issues."""

    def write(self, batch: FlowBatch) -> None: ...


def attribute_batch(index: attribution.AttributionIndex, batch: FlowBatch) -> FlowBatch:
    """Fill ``local_side``, ``customer_id`` and ``instance_id`` of every record."""
    if not len(batch):
        return batch
    times = batch["start"]
    customer, instance = attribution.attribute_many(
        index, (batch["src_hi"], batch["src_lo"]), times
    )
    local_side = np.where(customer >= 0, LOCAL_SRC, LOCAL_NONE).astype(np.uint8)
    # The destination decides only where nobody held the source (the source side wins
    # when both are the provider's): about half the records of a provider's traffic.
    rows = np.flatnonzero(customer < 0)
    if rows.size:
        c_dst, i_dst = attribution.attribute_many(
            index, (batch["dst_hi"][rows], batch["dst_lo"][rows]), times[rows]
        )
        held = c_dst >= 0
        local_side[rows[held]] = LOCAL_DST
        customer[rows] = c_dst
        instance[rows] = i_dst
    columns = dict(batch.columns)
    columns["local_side"] = local_side
    columns["customer_id"] = customer
    columns["instance_id"] = instance
    return FlowBatch(columns)


@dataclass
class IngestStats:
    """Counters of one ingest path (a collector worker or an import)."""

    batches: int = 0
    records: int = 0
    attributed: int = 0
    seconds_attributing: float = 0.0
    seconds_writing: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "records": self.records,
            "attributed": self.attributed,
            "seconds_attributing": round(self.seconds_attributing, 3),
            "seconds_writing": round(self.seconds_writing, 3),
        }


class Ingestor:
    """Attributes batches against the runtime's current registry index and hands them to
    the sink. Thread-safe: a collector may call it from its flushing thread."""

    def __init__(self, runtime: Runtime, sink: RecordSink) -> None:
        self.runtime = runtime
        self.sink = sink
        self.stats = IngestStats()
        self._lock = threading.Lock()

    def ingest(self, batch: FlowBatch) -> FlowBatch:
        if not len(batch):
            return batch
        began = time.perf_counter()
        index = attribution.current_index(self.runtime)
        attributed = attribute_batch(index, batch)
        middle = time.perf_counter()
        self.sink.write(attributed)
        ended = time.perf_counter()
        with self._lock:
            self.stats.batches += 1
            self.stats.records += len(attributed)
            self.stats.attributed += int(np.count_nonzero(attributed["local_side"]))
            self.stats.seconds_attributing += middle - began
            self.stats.seconds_writing += ended - middle
        return attributed
