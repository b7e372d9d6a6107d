"""`hostwarden flows query|top|series`: filters, output formats and aggregations in the
shell, over records added up by hand (``store_support.known_flows``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.runtime import Runtime
from hostwarden.flows.store import Segment
from tests.flows.store_support import (
    CUSTOMER_A,
    CUSTOMER_B,
    NOBODY,
    REMOTE_1,
    known_flows,
    new_store,
)

runner = CliRunner()
FIVE_MINUTES = ["--from", "2026-05-01T08:00:00+08:00", "--to", "2026-05-01T00:05:00Z"]


@pytest.fixture
def sealed(runtime: Runtime, env_for_home: dict[str, str]) -> Segment:
    store = new_store(runtime)
    try:
        store.write(known_flows())
        (segment,) = store.flush()
    finally:
        store.close()
    return segment


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    return result.output


def test_query_filters_by_port_on_either_side_and_protocol_by_name(sealed: Segment) -> None:
    rows = json.loads(
        run("flows", "query", *FIVE_MINUTES, "--port", "443", "--proto", "tcp", "--json")
    )
    assert [(r["src"], r["dst"], r["bytes"]) for r in rows] == [
        (CUSTOMER_A, REMOTE_1, 1_000),
        (REMOTE_1, CUSTOMER_A, 2_000),
    ]
    assert rows[0]["start"] == "2026-05-01T00:00:00.000Z"
    assert rows[1]["end"] == "2026-05-01T00:00:10.500Z"
    assert "src_hi" not in rows[0]
    icmp = json.loads(run("flows", "query", *FIVE_MINUTES, "--proto", "icmp", "--format", "json"))
    assert [(r["proto"], r["dst_port"]) for r in icmp] == [(1, 2048)]
    udp = json.loads(
        run("flows", "query", *FIVE_MINUTES, "--proto", "17", "--ip", "203.0.113.0/29", "--json")
    )
    assert {r["customer_id"] for r in udp} == {2} and len(udp) == 2
    assert json.loads(run("flows", "query", *FIVE_MINUTES, "--port", "8080", "--json")) == []


def test_query_writes_csv_to_stdout_or_a_file(sealed: Segment, tmp_path: Path) -> None:
    rows = list(
        csv.DictReader(io.StringIO(run("flows", "query", *FIVE_MINUTES, "--format", "csv")))
    )
    assert len(rows) == 6
    assert sum(int(r["bytes"]) for r in rows) == 33_900
    assert rows[5]["src"] == NOBODY and rows[5]["customer_id"] == "-1"
    target = tmp_path / "flows.csv"
    run("flows", "query", *FIVE_MINUTES, "--customer", "2", "--format", "csv", "-o", str(target))
    written = list(csv.DictReader(target.open()))
    assert [r["src"] for r in written] == [CUSTOMER_B, "198.51.100.2"]
    # Nothing matches: still the header, so the file loads as a table of no rows.
    run("flows", "query", *FIVE_MINUTES, "--port", "9", "--format", "csv", "-o", str(target))
    assert target.read_text().startswith('"start","end","src"')
    assert len(target.read_text().splitlines()) == 1


def test_query_writes_parquet_with_typed_times(sealed: Segment, tmp_path: Path) -> None:
    target = tmp_path / "flows.parquet"
    run("flows", "query", *FIVE_MINUTES, "--format", "parquet", "--output", str(target))
    table = pq.read_table(target)
    assert table.num_rows == 6
    assert table.schema.field("start").type == pa.timestamp("ms", tz="UTC")
    assert table.column("src").to_pylist()[0] == CUSTOMER_A
    assert sum(table.column("packets").to_pylist()) == 41
    run("flows", "query", *FIVE_MINUTES, "--port", "9", "--format", "parquet", "-o", str(target))
    assert pq.read_table(target).num_rows == 0


def test_a_failed_query_leaves_an_earlier_output_file_as_it_was(
    runtime: Runtime, sealed: Segment, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    target = exports / "flows.csv"
    target.write_text("yesterday's export\n")
    segment_file = runtime.settings.home / runtime.settings.flows.store_dir / sealed.name
    segment_file.write_bytes(segment_file.read_bytes()[:200])
    output = refused("flows", "query", *FIVE_MINUTES, "--format", "csv", "-o", str(target))
    assert f"flow segment {sealed.name} is corrupt" in output
    assert "logs verify" in output
    assert target.read_text() == "yesterday's export\n"
    assert [p.name for p in exports.iterdir()] == ["flows.csv"]  # no temporary file left


def test_top_talkers_in_the_shell(sealed: Segment) -> None:
    rows = json.loads(run("flows", "top", *FIVE_MINUTES, "--json"))
    assert [(r["key"], r["customer_id"], r["flows"], r["packets"], r["bytes"]) for r in rows] == [
        (NOBODY, -1, 1, 3, 30_000),
        (CUSTOMER_A, 1, 3, 35, 3_500),
        (CUSTOMER_B, 2, 2, 3, 400),
    ]
    by_flows = json.loads(
        run("flows", "top", *FIVE_MINUTES, "--by", "flows", "--group", "customer", "--json")
    )
    assert [(r["key"], r["flows"]) for r in by_flows] == [("1", 3), ("2", 2), ("-", 1)]
    shown = run("flows", "top", *FIVE_MINUTES, "--group", "customer", "--proto", "udp")
    assert "Top 1 customers by bytes" in shown and "400" in shown
    assert "30,000" in run("flows", "top", *FIVE_MINUTES, "--limit", "1")


def test_a_time_series_in_the_shell(sealed: Segment) -> None:
    rows = json.loads(run("flows", "series", *FIVE_MINUTES, "--step", "1m", "--json"))
    assert [r["bucket"] for r in rows][:2] == [
        "2026-05-01T00:00:00.000000Z",
        "2026-05-01T00:01:00.000000Z",
    ]
    assert [r["bytes"] for r in rows] == [3_000, 100, 300, 500, 30_000]
    assert [r["flows"] for r in rows] == [2, 1, 1, 1, 1]
    hourly = json.loads(
        run(
            "flows",
            "series",
            "--from",
            "2026-05-01T00:00Z",
            "--to",
            "2026-05-02T00:00Z",
            "--step",
            "1h",
            "--port",
            "53",
            "--json",
        )
    )
    assert len(hourly) == 24 and [r["flows"] for r in hourly[:2]] == [2, 0]
    assert "Every 5m" in run("flows", "series", *FIVE_MINUTES)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["query", *FIVE_MINUTES, "--format", "parquet"], "--format parquet needs --output"),
        (["query", *FIVE_MINUTES, "--format", "xml"], "Use one of: table, csv, json, parquet"),
        (["query", *FIVE_MINUTES, "--proto", "carrier-pigeon"], "neither a number nor"),
        (["query", *FIVE_MINUTES, "--port", "70000"], "port 70000 is outside 0–65535"),
        (["query", *FIVE_MINUTES, "--proto", "300"], "IP protocol 300 is outside 0–255"),
        (["query", *FIVE_MINUTES, "--ip", "203.0.113.300"], "203.0.113.300"),
        (["top", *FIVE_MINUTES, "--by", "octets"], "cannot rank by 'octets'"),
        (["top", *FIVE_MINUTES, "--group", "asn"], "cannot group by 'asn'"),
        (["series", *FIVE_MINUTES, "--step", "5 minutes"], "Write it like 30s, 5m, 1h or 1d"),
        (["series", *FIVE_MINUTES, "--step", "0s"], "shorter than the shortest, 1 s"),
        (
            ["series", "--from", "2026-05-01T00:00Z", "--to", "2026-05-02T00:00Z", "--step", "1s"],
            "10s or more",
        ),
        (["series", "--from", "2026-05-01T00:00", "--to", "2026-05-02T00:00Z"], "no time zone"),
    ],
)
def test_bad_query_requests_say_what_to_do(sealed: Segment, args: list[str], words: str) -> None:
    assert words in refused("flows", *args)


def test_a_bare_date_is_that_utc_day_as_in_legal_holds(sealed: Segment) -> None:
    (day,) = json.loads(
        run(
            "flows",
            "series",
            "--from",
            "2026-05-01",
            "--to",
            "2026-05-01",
            "--step",
            "1d",
            "--json",
        )
    )
    assert day["bucket"] == "2026-05-01T00:00:00.000000Z" and day["flows"] == 6
    explicit = ["--from", "2026-05-01T00:00:00Z", "--to", "2026-05-02T00:00:00Z"]
    assert json.loads(run("flows", "series", *explicit, "--step", "1d", "--json")) == [day]
