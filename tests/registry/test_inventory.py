"""Inventory operations: what is recorded, what is refused, and that history is kept."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.errors import Conflict, NotFound, ValidationFailed
from hostwarden.registry import inventory
from hostwarden.registry.models import IpAssignment, RegistryGeneration
from tests.registry.inventory_support import at, make_customers, make_ranges

ACTOR = system_actor("test")


def counts(runtime: Runtime) -> tuple[int, int]:
    with runtime.reading() as session:
        assignments = session.scalar(select(func.count()).select_from(IpAssignment)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    return assignments, audit


def generation(runtime: Runtime) -> int:
    with runtime.reading() as session:
        return int(session.scalar(select(RegistryGeneration.value)) or 0)


def test_rooms_and_ranges_are_recorded_and_audited(runtime: Runtime) -> None:
    with runtime.operation(ACTOR) as op:
        room = inventory.create_room(
            op, "BJ-YZ-01", address="北京市亦庄", licences=["B1-20190001", "A2.B1-20200002"]
        )
        inventory.create_range(op, "203.0.113.0/24", room_id=room.id, purpose="vps")
        inventory.create_range(op, "2001:db8::/32", room_id=room.id, purpose="vps")
    with runtime.reading() as session:
        # ordered by key: IPv4 lives in ::ffff:0:0/96, below 2001:db8::
        assert [r.cidr for r in inventory.list_ranges(session)] == [
            "203.0.113.0/24",
            "2001:db8::/32",
        ]
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
        assert inventory.get_room(session, "BJ-YZ-01").licences == "B1-20190001,A2.B1-20200002"
    assert actions[-3:] == ["room.create", "ip_range.create", "ip_range.create"]
    assert generation(runtime) == 3


def test_overlapping_ranges_are_refused(runtime: Runtime) -> None:
    make_ranges(runtime, "203.0.113.0/24")
    with (
        pytest.raises(Conflict, match=r"overlaps the registered range 203\.0\.113\.0/24"),
        runtime.operation(ACTOR) as op,
    ):
        inventory.create_range(op, "203.0.113.128/25")
    with pytest.raises(Conflict, match="overlaps"), runtime.operation(ACTOR) as op:
        inventory.create_range(op, "203.0.112.0/23")


def test_an_address_outside_every_range_is_refused_naming_the_nearest(runtime: Runtime) -> None:
    (alice,) = make_customers(runtime, "Alice Hosting")
    with (
        pytest.raises(ValidationFailed, match="no IP range is registered yet"),
        runtime.operation(ACTOR) as op,
    ):
        inventory.assign(op, "198.51.100.7", alice, valid_from=at("2026-01-01T00:00Z"))
    make_ranges(runtime, "203.0.113.0/24", "192.0.2.0/24")
    with pytest.raises(ValidationFailed) as caught, runtime.operation(ACTOR) as op:
        inventory.assign(op, "198.51.100.7", alice, valid_from=at("2026-01-01T00:00Z"))
    assert "outside every known range" in caught.value.message
    assert "203.0.113.0/24" in caught.value.message
    with (
        pytest.raises(ValidationFailed, match="covers only part"),
        runtime.operation(ACTOR) as op,
    ):
        inventory.assign(op, "203.0.112.0/23", alice, valid_from=at("2026-01-01T00:00Z"))
    assert counts(runtime)[0] == 0


def test_naive_times_are_refused_with_a_hint_to_add_a_zone(runtime: Runtime) -> None:
    (alice,) = make_customers(runtime, "Alice")
    make_ranges(runtime, "203.0.113.0/24")
    for naive in ("2026-05-01T10:00:00", "2026-05-01"):
        with pytest.raises(ValidationFailed) as caught, runtime.operation(ACTOR) as op:
            inventory.assign(op, "203.0.113.7", alice, valid_from=naive)
        assert "no time zone" in caught.value.message
        assert "+08:00" in str(caught.value.hint)
    with pytest.raises(ValidationFailed, match="not an ISO 8601"):
        inventory.aware_time("yesterday")
    assert inventory.aware_time("2026-05-01T10:00:00+08:00") == at("2026-05-01T02:00:00Z")


def test_overlapping_intervals_are_refused_naming_the_assignment_and_nothing_is_written(
    runtime: Runtime,
) -> None:
    alice, bob = make_customers(runtime, "Alice", "Bob")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(ACTOR) as op:
        first = inventory.assign(
            op,
            "203.0.113.7",
            alice,
            valid_from=at("2026-01-01T00:00:00+08:00"),
            valid_to=at("2026-03-01T00:00:00+08:00"),
        )
        first_id = first.id
    before = counts(runtime), generation(runtime)
    with pytest.raises(Conflict) as caught, runtime.operation(ACTOR) as op:
        inventory.create_room(op, "written then rolled back")
        inventory.assign(op, "203.0.113.7", bob, valid_from=at("2026-02-01T00:00:00+08:00"))
    assert f"assignment #{first_id}" in caught.value.message
    assert "overlaps" in caught.value.message
    assert (counts(runtime), generation(runtime)) == before
    with runtime.reading() as session:
        assert inventory.list_rooms(session) == []
    # Reassign cannot fix a clash with a closed interval: history is not rewritten.
    with pytest.raises(Conflict, match=f"#{first_id}"), runtime.operation(ACTOR) as op:
        inventory.assign(
            op, "203.0.113.7", bob, valid_from=at("2026-02-01T00:00+08:00"), reassign=True
        )
    # Right after the end is fine (intervals are half-open).
    with runtime.operation(ACTOR) as op:
        inventory.assign(op, "203.0.113.7", bob, valid_from=at("2026-03-01T00:00:00+08:00"))


def test_current_holder_blocks_another_customer_unless_reassigned_and_history_is_kept(
    runtime: Runtime,
) -> None:
    alice, bob = make_customers(runtime, "Alice", "Bob")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(ACTOR) as op:
        old = inventory.assign(op, "203.0.113.7", alice, valid_from=at("2026-01-01T00:00Z"))
        old_id = old.id
    with pytest.raises(Conflict) as caught, runtime.operation(ACTOR) as op:
        inventory.assign(op, "203.0.113.7", bob, valid_from=at("2026-04-01T00:00Z"))
    assert "currently held" in caught.value.message and f"#{old_id}" in caught.value.message
    assert "reassign" in str(caught.value.hint)
    with runtime.operation(ACTOR) as op:
        new = inventory.assign(
            op, "203.0.113.7", bob, valid_from=at("2026-04-01T00:00Z"), reassign=True
        )
        new_id = new.id
    with runtime.reading() as session:
        history = inventory.list_assignments(session, ip="203.0.113.7")
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    assert [(h.id, h.customer_id) for h in history] == [(new_id, bob), (old_id, alice)]
    assert history[1].valid_to == at("2026-04-01T00:00Z")
    assert history[0].valid_to is None
    assert actions[-2:] == ["ip_assignment.close", "ip_assignment.create"]


def test_the_same_holder_twice_is_refused_as_already_held(runtime: Runtime) -> None:
    (alice,) = make_customers(runtime, "Alice")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(ACTOR) as op:
        inventory.assign(op, "203.0.113.7", alice, valid_from=at("2026-01-01T00:00Z"))
    with pytest.raises(Conflict, match="already held"), runtime.operation(ACTOR) as op:
        inventory.assign(
            op, "203.0.113.7", alice, valid_from=at("2026-02-01T00:00Z"), reassign=True
        )


def test_nested_prefixes_only_for_the_same_customer_and_reassign_never_splits(
    runtime: Runtime,
) -> None:
    alice, bob = make_customers(runtime, "Alice", "Bob")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(ACTOR) as op:
        server = inventory.create_instance(op, "dedi-7", "dedicated", alice)
        inventory.assign(op, "203.0.113.0/28", alice, valid_from=at("2026-01-01T00:00Z"))
        inventory.assign(
            op, "203.0.113.5", alice, instance_id=server.id, valid_from=at("2026-01-02T00:00Z")
        )
    with (
        pytest.raises(Conflict, match=r"currently held|overlaps"),
        runtime.operation(ACTOR) as op,
    ):
        inventory.assign(op, "203.0.113.6", bob, valid_from=at("2026-02-01T00:00Z"))
    with pytest.raises(Conflict, match="never splits"), runtime.operation(ACTOR) as op:
        inventory.assign(op, "203.0.113.6", bob, valid_from=at("2026-02-01T00:00Z"), reassign=True)
    # Taking the whole /28 over ends both of Alice's assignments inside it.
    with runtime.operation(ACTOR) as op:
        inventory.assign(
            op, "203.0.113.0/28", bob, valid_from=at("2026-03-01T00:00Z"), reassign=True
        )
    with runtime.reading() as session:
        rows = inventory.list_assignments(session, customer_id=alice)
    assert {r.valid_to for r in rows} == {at("2026-03-01T00:00Z")}


def test_an_instance_must_belong_to_the_customer(runtime: Runtime) -> None:
    alice, bob = make_customers(runtime, "Alice", "Bob")
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(ACTOR) as op:
        vps = inventory.create_instance(op, "vps-1", "vps", alice)
        vps_id = vps.id
    with pytest.raises(Conflict, match="belongs to customer"), runtime.operation(ACTOR) as op:
        inventory.assign(op, "203.0.113.9", bob, instance_id=vps_id)
    with (
        pytest.raises(ValidationFailed, match="not an instance kind"),
        runtime.operation(ACTOR) as op,
    ):
        inventory.create_instance(op, "x", "container", alice)
    with pytest.raises(NotFound, match="no customer"), runtime.operation(ACTOR) as op:
        inventory.create_instance(op, "x", "vps", 424242)


def test_release_and_termination_close_intervals(runtime: Runtime) -> None:
    (alice,) = make_customers(runtime, "Alice")
    make_ranges(runtime, "203.0.113.0/24", "2001:db8::/32")
    with runtime.operation(ACTOR) as op:
        vps = inventory.create_instance(op, "vps-1", "vps", alice)
        a = inventory.assign(
            op, "203.0.113.7", alice, instance_id=vps.id, valid_from=at("2026-01-01T00:00Z")
        )
        b = inventory.assign(
            op, "2001:db8:7::/64", alice, instance_id=vps.id, valid_from=at("2026-01-01T00:00Z")
        )
        c = inventory.assign(op, "203.0.113.8", alice, valid_from=at("2026-01-01T00:00Z"))
        ids = a.id, b.id, c.id, vps.id
    with runtime.operation(ACTOR) as op:
        inventory.release(op, ids[2], at="2026-02-01T00:00:00+08:00", reason="cancelled")
    with pytest.raises(Conflict, match="already ended"), runtime.operation(ACTOR) as op:
        inventory.release(op, ids[2], at="2026-03-01T00:00:00Z")
    with pytest.raises(Conflict, match="begins at or after"), runtime.operation(ACTOR) as op:
        inventory.terminate_instance(op, ids[3], at="2025-12-01T00:00:00Z")
    with runtime.operation(ACTOR) as op:
        inventory.terminate_instance(op, ids[3], at="2026-04-01T00:00:00Z")
    with runtime.reading() as session:
        ended = {r.id: r.valid_to for r in inventory.list_assignments(session)}
        instance = inventory.get_instance(session, ids[3])
    assert ended == {
        ids[0]: at("2026-04-01T00:00Z"),
        ids[1]: at("2026-04-01T00:00Z"),
        ids[2]: at("2026-01-31T16:00Z"),
    }
    assert instance.status == "terminated"
    with pytest.raises(Conflict, match="terminated"), runtime.operation(ACTOR) as op:
        inventory.assign(op, "203.0.113.9", alice, instance_id=ids[3])


def test_nat_blocks_on_one_public_address_may_not_overlap(runtime: Runtime) -> None:
    make_ranges(runtime, "203.0.113.0/24", "100.64.0.0/10")
    with runtime.operation(ACTOR) as op:
        block = inventory.create_nat(
            op, "203.0.113.50", 40000, 40999, "100.64.0.10", valid_from=at("2026-01-01T00:00Z")
        )
        block_id = block.id
        # the same ports on another public address, or adjacent ports, are fine
        inventory.create_nat(
            op, "203.0.113.51", 40000, 40999, "100.64.0.11", valid_from=at("2026-01-01T00:00Z")
        )
        inventory.create_nat(
            op, "203.0.113.50", 41000, 41999, "100.64.0.12", valid_from=at("2026-01-01T00:00Z")
        )
    with pytest.raises(Conflict) as caught, runtime.operation(ACTOR) as op:
        inventory.create_nat(
            op, "203.0.113.50", 40500, 40600, "100.64.0.13", valid_from="2026-02-01T00:00Z"
        )
    assert f"NAT mapping #{block_id}" in caught.value.message
    with runtime.operation(ACTOR) as op:
        inventory.release_nat(op, block_id, at="2026-02-01T00:00:00Z")
        inventory.create_nat(
            op, "203.0.113.50", 40500, 40600, "100.64.0.13", valid_from="2026-02-01T00:00Z"
        )
    for first, last in ((0, 10), (100, 65536), (500, 400)):
        with (
            pytest.raises(ValidationFailed, match="1–65535"),
            runtime.operation(ACTOR) as op,
        ):
            inventory.create_nat(op, "203.0.113.50", first, last, "100.64.0.14")
    with (
        pytest.raises(ValidationFailed, match="outside every known range"),
        runtime.operation(ACTOR) as op,
    ):
        inventory.create_nat(op, "198.51.100.1", 1, 100, "100.64.0.14")
    assert inventory.parse_ports("40000-40999") == (40000, 40999)
    assert inventory.parse_ports("443") == (443, 443)


def test_domains_have_intervals_and_do_not_overlap(runtime: Runtime) -> None:
    alice, bob = make_customers(runtime, "Alice", "Bob")
    with runtime.operation(ACTOR) as op:
        row = inventory.create_domain(
            op, "Shop.Example.COM.", alice, valid_from="2026-01-01T00:00Z"
        )
        row_id = row.id
        assert row.name == "shop.example.com"
        assert inventory.create_domain(op, "例子.中国", bob).name == "xn--fsqu00a.xn--fiqs8s"
    with pytest.raises(Conflict, match=f"domain #{row_id}"), runtime.operation(ACTOR) as op:
        inventory.create_domain(op, "shop.example.com", bob, valid_from="2026-02-01T00:00Z")
    with runtime.operation(ACTOR) as op:
        inventory.release_domain(op, row_id, at="2026-02-01T00:00Z")
        inventory.create_domain(op, "shop.example.com", bob, valid_from="2026-02-01T00:00Z")
    with pytest.raises(ValidationFailed, match="not a domain name"):
        inventory.normalise_domain("not a domain")


def test_every_inventory_write_bumps_the_generation(runtime: Runtime) -> None:
    (alice,) = make_customers(runtime, "Alice")
    start = generation(runtime)
    make_ranges(runtime, "203.0.113.0/24")
    with runtime.operation(ACTOR) as op:
        row = inventory.assign(op, "203.0.113.7", alice, valid_from="2026-01-01T00:00Z")
        inventory.release(op, row.id, at="2026-02-01T00:00Z")
    assert generation(runtime) == start + 3
