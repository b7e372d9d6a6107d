"""`hostwarden inventory …` and `hostwarden attribute` as an operator uses them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime
from tests.registry.inventory_support import make_customers

runner = CliRunner()


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def customers(initialised: object, settings: Settings) -> list[int]:
    runtime = Runtime.open(settings)
    try:
        return make_customers(runtime, "Alice", "Bob")
    finally:
        runtime.close()


def test_an_operator_records_inventory_and_attributes_an_address(customers: list[int]) -> None:
    alice, bob = customers
    steps = [
        ("inventory", "room", "add", "BJ-01", "--licence", "B1-20190001", "--reason", "new site"),
        ("inventory", "range", "add", "203.0.113.0/24", "--room", "BJ-01", "--purpose", "vps"),
        ("inventory", "instance", "add", "vps-1", "--customer", str(alice), "--room", "BJ-01"),
        (
            "inventory",
            "assign",
            "203.0.113.7",
            "--customer",
            str(alice),
            "--instance",
            "1",
            "--from",
            "2026-01-01T00:00:00+08:00",
            "--reason",
            "order 1001",
        ),
        ("inventory", "domain", "add", "shop.example.com", "--customer", str(alice)),
    ]
    for step in steps:
        code, out, err = hw(*step)
        assert code == 0, (step, out, err)
    code, _, err = hw(
        "inventory", "assign", "203.0.113.7", "--customer", str(bob), "--from", "2026-03-01T00:00Z"
    )
    assert code == 1 and "currently held" in err and "--reassign" in err
    code, out, err = hw(
        "inventory",
        "assign",
        "203.0.113.7",
        "--customer",
        str(bob),
        "--from",
        "2026-03-01T00:00Z",
        "--reassign",
    )
    assert code == 0, err
    code, out, _ = hw("attribute", "203.0.113.7", "--at", "2026-02-01T10:00:00+08:00", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["customer_id"] == alice and answer["instance_id"] == 1
    assert answer["assignment"]["valid_to"] == "2026-03-01T00:00:00.000000Z"
    assert answer["domains"] == []  # the domain record began "now", after that moment
    code, out, _ = hw("attribute", "203.0.113.7", "--at", "2026-05-01T10:00:00+08:00")
    assert code == 0 and "203.0.113.7/32" in out
    code, out, _ = hw("inventory", "assignments", "--ip", "203.0.113.7", "--json")
    assert [a["customer_id"] for a in json.loads(out)] == [bob, alice]
    code, out, _ = hw("inventory", "release", "203.0.113.7", "--at", "2026-06-01T00:00Z")
    assert code == 0 and "ended at 2026-06-01" in out
    for listing in ("room", "range", "instance", "nat", "domain"):
        code, out, err = hw("inventory", listing, "list", "--json")
        assert code == 0, (listing, err)
        assert isinstance(json.loads(out), list)


def test_attribute_exits_1_when_nobody_held_it_or_the_time_is_naive(
    customers: list[int],
) -> None:
    code, _, err = hw("attribute", "203.0.113.7", "--at", "2026-05-01T10:00:00+08:00")
    assert code == 1 and "nobody held 203.0.113.7" in err
    code, _, err = hw("attribute", "203.0.113.7", "--at", "2026-05-01T10:00:00")
    assert code == 1 and "no time zone" in err and "+08:00" in err
    code, _, err = hw("inventory", "assign", "198.51.100.1", "--customer", str(customers[0]))
    assert code == 1 and "outside every known range" in err


def test_nat_blocks_from_the_shell(customers: list[int]) -> None:
    alice, _ = customers
    for step in (
        ("inventory", "range", "add", "203.0.113.0/24"),
        ("inventory", "range", "add", "100.64.0.0/10", "--purpose", "cgnat-inside"),
        (
            "inventory",
            "assign",
            "100.64.1.2",
            "--customer",
            str(alice),
            "--from",
            "2026-01-01T00:00Z",
        ),
        (
            "inventory",
            "nat",
            "add",
            "203.0.113.1",
            "40000-40999",
            "100.64.1.2",
            "--from",
            "2026-01-01T00:00Z",
        ),
    ):
        code, out, err = hw(*step)
        assert code == 0, (step, out, err)
    code, out, _ = hw(
        "attribute", "203.0.113.1", "--at", "2026-02-01T00:00Z", "--port", "40500", "--json"
    )
    assert code == 0 and json.loads(out)["customer_id"] == alice
    code, _, err = hw("attribute", "203.0.113.1", "--at", "2026-02-01T00:00Z")
    assert code == 1 and "--port" not in err and "give the port" in err
    code, _, err = hw(
        "inventory",
        "nat",
        "add",
        "203.0.113.1",
        "40900-41000",
        "100.64.1.3",
        "--from",
        "2026-01-02T00:00Z",
    )
    assert code == 1 and "overlaps NAT mapping #1" in err
    code, out, _ = hw("inventory", "nat", "list")
    assert code == 0 and "40000-40999" in out
