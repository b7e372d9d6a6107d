"""Bulk import and export of customers, ranges, instances and assignments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core import audit
from hostwarden.core.runtime import Runtime
from hostwarden.registry import attribution
from hostwarden.registry.models import Customer, Instance, IpAssignment
from tests.registry.customer_fixtures import assert_loaded_and_attributed, count

runner = CliRunner()

CUSTOMERS = """external_id,kind,name,email,phone,risk_tier
C-1,organisation,Example Ltd,ops@example.com,13812345678,low
C-2,individual,李娜,li.na@example.cn,,medium
"""
RANGES = "cidr,purpose\n203.0.113.0/24,VPS\n2001:db8::/48,VPS v6\n"
INSTANCES = """external_id,hostname,kind,customer_external_id,created_at
vm-1,vps-1.example.net,vps,C-1,2026-01-01T00:00:00+08:00
vm-2,dedi-2.example.net,dedicated,C-2,2026-01-02T00:00:00+08:00
"""
ASSIGNMENTS = """ip,customer_external_id,instance_external_id,valid_from,valid_to
203.0.113.7,C-1,vm-1,2026-01-01T00:00:00+08:00,2026-02-01T00:00:00+08:00
203.0.113.7,C-2,vm-2,2026-02-01T00:00:00+08:00,
2001:db8::/64,C-2,,2026-01-01T00:00:00Z,
"""


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def loaded(runtime: Runtime, tmp_path: Path) -> Runtime:
    for kind, text in (
        ("customers", CUSTOMERS),
        ("ranges", RANGES),
        ("instances", INSTANCES),
        ("assignments", ASSIGNMENTS),
    ):
        code, out, err = hw("import", kind, write(tmp_path, f"{kind}.csv", text))
        assert code == 0, out + err
    return runtime


def test_a_provider_loads_its_registry_from_files_and_attribution_works(
    loaded: Runtime,
) -> None:
    assert_loaded_and_attributed(loaded, assignments=3)
    with loaded.reading() as session:
        phone = session.scalar(select(Customer.phone_enc).where(Customer.external_id == "C-1"))
    assert phone is not None and b"13812345678" not in phone, "phones are encrypted at rest"
    assert audit.verify(loaded).ok


def test_importing_the_same_files_again_changes_nothing(loaded: Runtime, tmp_path: Path) -> None:
    entries = audit.verify(loaded).entries
    code, out, _ = hw("import", "assignments", write(tmp_path, "again.csv", ASSIGNMENTS), "--json")
    assert code == 0
    assert json.loads(out)["unchanged"] == 3
    code, out, _ = hw("import", "customers", write(tmp_path, "c.csv", CUSTOMERS), "--json")
    assert json.loads(out)["unchanged"] == 2
    assert audit.verify(loaded).entries == entries


def test_a_later_file_closes_an_open_interval(loaded: Runtime, tmp_path: Path) -> None:
    closing = (
        "ip,customer_external_id,valid_from,valid_to\n"
        "203.0.113.7,C-2,2026-02-01T00:00:00+08:00,2026-03-01T00:00:00+08:00\n"
    )
    code, out, _ = hw("import", "assignments", write(tmp_path, "close.csv", closing), "--json")
    assert code == 0
    assert json.loads(out)["updated"] == 1
    assert attribution.attribute(loaded, "203.0.113.7", "2026-03-02T00:00:00+08:00") is None


def test_an_unknown_customer_stops_the_import_naming_row_and_column(
    loaded: Runtime, tmp_path: Path
) -> None:
    bad = INSTANCES.replace(
        "vm-2,dedi-2.example.net,dedicated,C-2", "vm-3,dedi-3.example.net,dedicated,C-404"
    )
    bad = bad.replace("vm-1,", "vm-9,")
    code, _, err = hw("import", "instances", write(tmp_path, "bad.csv", bad))
    assert code == 1
    assert "row 2, column customer_external_id: no customer with external id 'C-404'" in err
    assert "Nothing was written" in err
    assert count(loaded, Instance) == 2, "vm-9 of row 1 was not written either"


def test_skip_invalid_writes_the_good_rows(loaded: Runtime, tmp_path: Path) -> None:
    mixed = (
        "external_id,hostname,kind,customer_external_id\n"
        "vm-9,vps-9,vps,C-1\nvm-10,vps-10,spaceship,C-1\n"
    )
    code, _, err = hw("import", "instances", write(tmp_path, "m.csv", mixed), "--skip-invalid")
    assert code == 1
    assert "row 2, column kind: 'spaceship' is not one of vps, dedicated, colocation" in err
    assert count(loaded, Instance) == 3


def test_an_overlapping_interval_in_a_file_is_refused(loaded: Runtime, tmp_path: Path) -> None:
    overlap = "ip,customer_external_id,valid_from\n203.0.113.7,C-1,2026-02-15T00:00:00+08:00\n"
    code, _, err = hw("import", "assignments", write(tmp_path, "o.csv", overlap))
    assert code == 1
    assert "row 1" in err
    assert count(loaded, IpAssignment) == 3


def test_a_dry_run_reports_and_writes_nothing(runtime: Runtime, tmp_path: Path) -> None:
    code, out, _ = hw(
        "import", "customers", write(tmp_path, "c.csv", CUSTOMERS), "--dry-run", "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert (report["created"], report["written"]) == (2, False)
    assert count(runtime, Customer) == 0


def test_naive_times_are_refused_with_a_hint(runtime: Runtime, tmp_path: Path) -> None:
    hw("import", "customers", write(tmp_path, "c.csv", CUSTOMERS))
    naive = (
        "external_id,hostname,kind,customer_external_id,created_at\n"
        "vm-1,h,vps,C-1,2026-01-01 10:00\n"
    )
    code, _, err = hw("import", "instances", write(tmp_path, "n.csv", naive))
    assert code == 1
    assert "column created_at" in err
    assert "+08:00" in err


def test_exports_read_back_as_imports(loaded: Runtime, tmp_path: Path) -> None:
    for kind in ("customers", "ranges", "instances", "assignments"):
        for fmt in ("csv", "json"):
            target = tmp_path / f"{kind}.{fmt}"
            code, _, _ = hw("export", kind, "--format", fmt, "-o", str(target))
            assert code == 0
            code, out, err = hw("import", kind, str(target), "--json")
            assert code == 0, err
            assert json.loads(out)["created"] == 0, f"{kind} {fmt} round trip"
    exported = (tmp_path / "customers.csv").read_text(encoding="utf-8")
    assert "13812345678" not in exported
    assert "phone" not in exported.splitlines()[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("import", "planets", "x.csv"), "not something to import"),
        (("import", "customers", "/nonexistent/file.csv"), "does not exist"),
        (("export", "customers", "--format", "xml"), "not an export format"),
    ],
)
def test_bad_commands_say_what_to_do(runtime: Runtime, args: tuple[str, ...], message: str) -> None:
    code, _, err = hw(*args)
    assert code == 1
    assert message in err
