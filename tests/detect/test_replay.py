"""``hostwarden detect replay``: a file or a stored range through the real readers,
attribution and engine, findings as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.registry import inventory
from tests.registry.inventory_support import make_customers, make_ranges

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows"
runner = CliRunner()
SCANNER = "203.0.113.9"


@pytest.fixture
def scanner_customer(runtime: Runtime) -> int:
    (acme,) = make_customers(runtime, "Scanning Customer")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(system_actor("test")) as op:
        inventory.assign(op, SCANNER, acme, valid_from="2026-01-01T00:00:00Z")
        inventory.assign(op, "203.0.113.5", acme, valid_from="2023-01-01T00:00:00Z")
    return acme


def scan_lines(hosts: int, start: str = "2026-05-04T12:00") -> list[str]:
    lines = []
    for i in range(hosts):
        lines.append(
            json.dumps(
                {
                    "start": f"{start}:{i % 60:02d}Z",
                    "src": SCANNER,
                    "dst": f"198.51.100.{i + 1}",
                    "src_port": 40000 + i,
                    "dst_port": 22,
                    "proto": "tcp",
                    "tcp_flags": 2,
                    "packets": 1,
                    "bytes": 60,
                }
            )
        )
    # Ordinary traffic of the same customer: not a scan.
    for i in range(30):
        lines.append(
            json.dumps(
                {
                    "start": f"{start}:{i:02d}Z",
                    "src": "203.0.113.5",
                    "dst": "192.0.2.80",
                    "src_port": 443,
                    "dst_port": 50000 + i,
                    "proto": 6,
                    "tcp_flags": 27,
                    "packets": 40,
                    "bytes": 40000,
                }
            )
        )
    return lines


def findings_of(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_a_scan_in_a_json_lines_file_is_reported_with_its_customer(
    runtime: Runtime, env_for_home: dict[str, str], scanner_customer: int, tmp_path: Path
) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text("\n".join(scan_lines(40)) + "\n")
    result = runner.invoke(app, ["detect", "replay", str(path)])
    assert result.exit_code == 0, result.output
    found = findings_of(result.stdout)
    assert [(f["ip"], f["category"], f["kind"]) for f in found] == [(SCANNER, "scan", "horizontal")]
    assert found[0]["customer_id"] == scanner_customer
    assert found[0]["counts"]["hosts"] == 40  # type: ignore[index]
    assert "70 records, 1 finding(s)" in result.stderr


def test_replay_stores_nothing_unless_asked_to_record(
    runtime: Runtime, env_for_home: dict[str, str], scanner_customer: int, tmp_path: Path
) -> None:
    from hostwarden.flows.store import open_store

    path = tmp_path / "flows.jsonl"
    path.write_text("\n".join(scan_lines(40)) + "\n")
    assert runner.invoke(app, ["detect", "replay", str(path)]).exit_code == 0
    store = open_store(runtime)
    try:
        assert store.query(start_ms=0, end_ms=2**62, limit=None).num_rows == 0
    finally:
        store.close()


def test_a_stored_range_replays_like_the_file(
    runtime: Runtime, env_for_home: dict[str, str], scanner_customer: int, tmp_path: Path
) -> None:
    path = tmp_path / "flows.jsonl"
    path.write_text("\n".join(scan_lines(40)) + "\n")
    imported = runner.invoke(app, ["flows", "import", str(path)])
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(app, ["detect", "replay", "--from", "2026-05-04", "--to", "2026-05-04"])
    assert result.exit_code == 0, result.output
    found = findings_of(result.stdout)
    assert [(f["ip"], f["category"]) for f in found] == [(SCANNER, "scan")]


def test_a_real_exporter_capture_replays(
    runtime: Runtime, env_for_home: dict[str, str], scanner_customer: int
) -> None:
    # softflowd's NetFlow v9 export of the traffic generator's capture: ordinary traffic,
    # so the real decode → attribution → engine path runs and finds nothing.
    result = runner.invoke(app, ["detect", "replay", str(FIXTURES / "softflowd-v9.pcap")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ""
    assert " records, 0 finding(s)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "either a FILE or --from and --to"),
        (["x.jsonl", "--from", "2026-05-04", "--to", "2026-05-05"], "not both"),
        (["--from", "2026-05-04"], "needs both --from and --to"),
        (["/nonexistent/flows.pcap"], "does not exist"),
        (["--from", "2026-05-05", "--to", "2026-05-04"], "is not after its start"),
    ],
)
def test_bad_replay_requests_say_what_to_do(
    runtime: Runtime, env_for_home: dict[str, str], args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["detect", "replay", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_a_log_format_no_detector_reads_is_refused(
    runtime: Runtime, env_for_home: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "access.log"
    path.write_text(
        '192.0.2.7 - - [04/May/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8"\n'
    )
    result = runner.invoke(app, ["detect", "replay", str(path)])
    assert result.exit_code != 0
    assert "which no detector reads" in result.output
