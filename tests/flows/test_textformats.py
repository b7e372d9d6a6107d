"""Flow records from nfdump CSV and JSON lines, attributed at ingest; bad files refused whole."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.errors import ValidationFailed
from hostwarden.flows import imports, textformats
from hostwarden.flows.ingest import Ingestor, attribute_batch
from hostwarden.flows.schema import LOCAL_DST, LOCAL_NONE, LOCAL_SRC, FlowBatch, FlowSource
from hostwarden.registry import attribution, inventory, netaddr
from tests.registry.inventory_support import make_customers, make_ranges

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "flows" / "nfdump-v9.csv"


class ListSink:
    """Collects what the ingest path writes (stands in for the store here)."""

    def __init__(self) -> None:
        self.batches: list[FlowBatch] = []

    def write(self, batch: FlowBatch) -> None:
        self.batches.append(batch)

    @property
    def records(self) -> FlowBatch:
        return FlowBatch.concat(self.batches)


def address(batch: FlowBatch, side: str, k: int) -> str:
    return str(netaddr.hilo_to_address(int(batch[f"{side}_hi"][k]), int(batch[f"{side}_lo"][k])))


def nfdump_rows() -> list[dict[str, str]]:
    text = FIXTURE.read_text(encoding="utf-8").split("\nSummary", 1)[0]
    return list(csv.DictReader(io.StringIO(text)))


def read(data: str, tz: str | None = "UTC") -> FlowBatch:
    return FlowBatch.concat(textformats.read_nfdump_csv(io.StringIO(data), tz))


def test_every_field_of_real_nfdump_output_is_read() -> None:
    """The fixture is what softflowd → nfcapd → `nfdump -o csv` printed (made by
    scripts/make-nfdump-fixture.sh, TZ=UTC); every row is checked against the text."""
    rows = nfdump_rows()
    batch = read(FIXTURE.read_text(encoding="utf-8"))
    assert len(batch) == len(rows) > 10
    protocols = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58}
    for k, row in enumerate(rows):
        start = datetime.fromisoformat(row["ts"]).replace(tzinfo=UTC)
        assert batch["start"][k] == int(start.timestamp() * 1000)
        assert address(batch, "src", k) == row["sa"]
        assert address(batch, "dst", k) == row["da"]
        assert batch["proto"][k] == protocols[row["pr"]]
        assert int(batch["packets"][k]) == int(row["ipkt"])
        assert int(batch["bytes"][k]) == int(row["ibyt"])
        if row["pr"] in ("TCP", "UDP"):
            assert (batch["src_port"][k], batch["dst_port"][k]) == (int(row["sp"]), int(row["dp"]))
        flags = row["flg"]
        assert bool(batch["tcp_flags"][k] & 0x02) == (flags[6] == "S")
        assert bool(batch["tcp_flags"][k] & 0x10) == (flags[3] == "A")
        assert bool(batch["tcp_flags"][k] & 0x01) == (flags[7] == "F")
    assert set(batch["source"].tolist()) == {FlowSource.NFDUMP_CSV}


def test_the_zone_of_nfdump_times_must_be_named_and_is_applied() -> None:
    data = FIXTURE.read_text(encoding="utf-8")
    with pytest.raises(ValidationFailed, match="without a zone") as refused:
        read(data, tz=None)
    assert "--tz" in (refused.value.hint or "")
    utc = read(data, tz="UTC")
    beijing = read(data, tz="Asia/Shanghai")
    assert (utc["start"] - beijing["start"] == 8 * 3_600_000).all()
    with pytest.raises(ValidationFailed, match="not a time zone"):
        read(data, tz="Mars/Olympus")


def test_bad_nfdump_files_name_the_line_and_column() -> None:
    good = FIXTURE.read_text(encoding="utf-8").splitlines()
    with pytest.raises(ValidationFailed, match="lacks the nfdump column"):
        read("time,src,dst\n1,2,3\n")
    broken = [*good[:4], good[4].replace(good[4].split(",")[3], "203.0.113.999", 1), *good[5:]]
    with pytest.raises(textformats.TextFormatError, match=r"line 5, column sa") as bad:
        read("\n".join(broken))
    assert "203.0.113.999" in str(bad.value)
    assert read("").columns["start"].size == 0


def test_json_lines_take_zoned_times_and_refuse_naive_ones() -> None:
    lines = [
        {"start": "2026-05-01T10:00:00+08:00", "src": "203.0.113.7", "dst": "198.51.100.1",
         "src_port": 40000, "dst_port": 25, "proto": "tcp", "packets": 3, "bytes": 180,
         "tcp_flags": "...A..S."},
        {"start": 1777600800000, "end": 1777600801000, "src": "2001:db8::7", "dst": "2001:db8::1",
         "proto": 17, "packets": 1, "bytes": 80, "exporter": "192.0.2.1", "sampling": 100},
    ]  # fmt: skip
    text = "\n".join(json.dumps(x) for x in lines)
    batch = FlowBatch.concat(textformats.read_jsonl(io.StringIO(text)))
    assert batch["start"].tolist() == [1777600800000, 1777600800000]
    assert batch["end"].tolist() == [1777600800000, 1777600801000]
    assert address(batch, "src", 1) == "2001:db8::7"
    assert batch["tcp_flags"][0] == 0x12
    assert batch["sampling"].tolist() == [1, 100]
    naive = json.dumps({"start": "2026-05-01T10:00:00", "src": "1.2.3.4", "dst": "5.6.7.8"})
    with pytest.raises(textformats.TextFormatError, match=r"line 2, column start.*no time zone"):
        FlowBatch.concat(textformats.read_jsonl(io.StringIO(text.split("\n")[0] + "\n" + naive)))
    with pytest.raises(textformats.TextFormatError, match=r"line 1.*not JSON"):
        FlowBatch.concat(textformats.read_jsonl(io.StringIO("{not json\n")))
    with pytest.raises(textformats.TextFormatError, match=r"column dst.*missing"):
        FlowBatch.concat(textformats.read_jsonl(io.StringIO('{"start": 1, "src": "1.2.3.4"}')))


@pytest.fixture
def held(runtime: Runtime) -> dict[str, int]:
    """203.0.113.7 held by Alice since 2026-01-01 (UTC), by Bob from 2026-06-01."""
    alice, bob = make_customers(runtime, "Alice", "Bob")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(system_actor("test")) as op:
        inventory.assign(op, "203.0.113.7", alice, valid_from="2026-01-01T00:00:00Z")
        inventory.assign(op, "203.0.113.7", bob, valid_from="2026-06-01T00:00:00Z", reassign=True)
    return {"alice": alice, "bob": bob}


def flows_jsonl(*rows: tuple[str, str, str]) -> str:
    return "\n".join(
        json.dumps({"start": t, "src": s, "dst": d, "proto": 6, "packets": 1, "bytes": 60})
        for t, s, d in rows
    )


def test_records_are_attributed_at_their_own_time_on_the_customer_side(
    runtime: Runtime, held: dict[str, int]
) -> None:
    text = flows_jsonl(
        ("2026-05-31T23:59:59Z", "203.0.113.7", "198.51.100.1"),  # Alice's, outbound
        ("2026-06-01T00:00:00Z", "198.51.100.1", "203.0.113.7"),  # Bob's, inbound
        ("2026-05-01T00:00:00Z", "198.51.100.1", "198.51.100.2"),  # nobody's
        ("2025-12-31T23:59:59Z", "203.0.113.7", "198.51.100.1"),  # before anyone held it
    )
    batch = FlowBatch.concat(textformats.read_jsonl(io.StringIO(text)))
    out = attribute_batch(attribution.current_index(runtime), batch)
    assert out["local_side"].tolist() == [LOCAL_SRC, LOCAL_DST, LOCAL_NONE, LOCAL_NONE]
    assert out["customer_id"].tolist() == [held["alice"], held["bob"], -1, -1]
    assert (out["instance_id"] == -1).all()


def test_a_file_with_one_bad_row_at_the_end_writes_nothing(
    runtime: Runtime, held: dict[str, int], tmp_path: Path
) -> None:
    good = flows_jsonl(*[("2026-05-01T00:00:00Z", "203.0.113.7", "198.51.100.1")] * 5)
    path = tmp_path / "flows.jsonl"
    path.write_text(good + '\n{"start": "yesterday", "src": "1.2.3.4", "dst": "5.6.7.8"}\n')
    sink = ListSink()
    with pytest.raises(textformats.TextFormatError, match="line 6"):
        imports.import_file(Ingestor(runtime, sink), path)
    assert sink.batches == [], "the checking pass wrote nothing"
    path.write_text(good + "\n")
    report = imports.import_file(Ingestor(runtime, sink), path)
    assert (report.format, report.records, report.attributed) == ("jsonl", 5, 5)
    assert np.all(sink.records["customer_id"] == held["alice"])


def test_formats_are_recognised_and_unknown_ones_refused(tmp_path: Path) -> None:
    assert imports.detect_format(FIXTURE) == "nfdump-csv"
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(ValidationFailed, match="cannot tell") as unknown:
        imports.detect_format(other)
    assert "--format" in (unknown.value.hint or "")
    with pytest.raises(ValidationFailed, match="not an import format"):
        imports.check_format("netflow-v11")
    with pytest.raises(ValidationFailed, match="does not exist"):
        imports.import_file(Ingestor.__new__(Ingestor), tmp_path / "missing.pcap")
