"""Attribution: who held an address (and NAT port) at a moment, one at a time and in bulk."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.errors import ValidationFailed
from hostwarden.registry import attribution, inventory, netaddr
from tests.registry.inventory_support import at, make_customers, make_ranges

ACTOR = system_actor("test")


@pytest.fixture
def world(runtime: Runtime) -> dict[str, int]:
    """Alice held 203.0.113.7 in January and February (Beijing time), Bob since March;
    Alice's server holds a /32 inside her /28; Carol sits behind CGNAT; Dave has IPv6."""
    alice, bob, carol, dave = make_customers(runtime, "Alice", "Bob", "Carol", "Dave")
    make_ranges(runtime, "203.0.113.0/24", "100.64.0.0/10", "2001:db8::/32")
    with runtime.operation(ACTOR) as op:
        web = inventory.create_instance(op, "web-1", "vps", alice)
        dedi = inventory.create_instance(op, "dedi-1", "dedicated", alice)
        bob_vps = inventory.create_instance(op, "bob-vps", "vps", bob)
        inventory.assign(
            op, "203.0.113.7", alice, instance_id=web.id, valid_from="2026-01-01T00:00:00+08:00"
        )
        inventory.assign(
            op,
            "203.0.113.7",
            bob,
            instance_id=bob_vps.id,
            valid_from="2026-03-01T00:00:00+08:00",
            reassign=True,
        )
        inventory.assign(op, "203.0.113.16/28", alice, valid_from="2026-01-01T00:00:00Z")
        inventory.assign(
            op, "203.0.113.20", alice, instance_id=dedi.id, valid_from="2026-02-01T00:00:00Z"
        )
        inventory.assign(op, "100.64.0.10", carol, valid_from="2026-01-01T00:00:00Z")
        inventory.create_nat(
            op, "203.0.113.200", 40000, 40999, "100.64.0.10", valid_from="2026-01-01T00:00Z"
        )
        inventory.assign(op, "2001:db8:7::/48", dave, valid_from="2026-01-01T00:00:00Z")
        inventory.create_domain(
            op, "shop.example.com", alice, instance_id=web.id, valid_from="2026-01-01T00:00Z"
        )
        inventory.create_domain(op, "alice.example", alice, valid_from="2026-01-01T00:00Z")
        inventory.create_domain(
            op, "bob.example", bob, instance_id=bob_vps.id, valid_from="2026-03-05T00:00Z"
        )
        ids = {"web": web.id, "dedi": dedi.id, "bob_vps": bob_vps.id}
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, **ids}


def test_ip_is_attributed_to_the_customer_who_held_it_at_that_time(
    runtime: Runtime, world: dict[str, int]
) -> None:
    jan = attribution.attribute(runtime, "203.0.113.7", "2026-01-15T12:00:00+08:00")
    assert jan is not None
    assert (jan.customer_id, jan.instance_id) == (world["alice"], world["web"])
    assert jan.assignment.prefix == "203.0.113.7/32"
    assert jan.assignment.valid_to == at("2026-03-01T00:00:00+08:00")
    assert jan.domains == ("alice.example", "shop.example.com")
    now = attribution.attribute(runtime, "203.0.113.7", "2026-05-01T10:00:00+08:00")
    assert now is not None
    assert (now.customer_id, now.instance_id) == (world["bob"], world["bob_vps"])
    assert now.assignment.valid_to is None
    assert now.domains == ("bob.example",)
    assert attribution.attribute(runtime, "203.0.113.7", "2025-12-31T23:59:59+08:00") is None


def test_the_boundary_moment_belongs_to_the_new_holder(
    runtime: Runtime, world: dict[str, int]
) -> None:
    last_old = attribution.attribute(runtime, "203.0.113.7", "2026-02-28T15:59:59.999999Z")
    first_new = attribution.attribute(runtime, "203.0.113.7", "2026-03-01T00:00:00+08:00")
    assert last_old is not None and last_old.customer_id == world["alice"]
    assert first_new is not None and first_new.customer_id == world["bob"]


def test_the_same_clock_time_in_two_zones_is_two_moments(
    runtime: Runtime, world: dict[str, int]
) -> None:
    # Bob's interval began at 2026-03-01 00:00 Beijing time, 2026-02-28 16:00 UTC.
    beijing = attribution.attribute(runtime, "203.0.113.7", "2026-02-28T20:00:00+08:00")
    utc = attribution.attribute(runtime, "203.0.113.7", "2026-02-28T20:00:00Z")
    assert beijing is not None and beijing.customer_id == world["alice"]
    assert utc is not None and utc.customer_id == world["bob"]


def test_a_naive_time_is_refused(runtime: Runtime, world: dict[str, int]) -> None:
    with pytest.raises(ValidationFailed, match="no time zone") as caught:
        attribution.attribute(runtime, "203.0.113.7", "2026-05-01T10:00:00")
    assert "+08:00" in str(caught.value)


def test_longest_prefix_wins_when_prefixes_nest(runtime: Runtime, world: dict[str, int]) -> None:
    inside = attribution.attribute(runtime, "203.0.113.20", "2026-03-01T00:00:00Z")
    assert inside is not None
    assert inside.assignment.prefix == "203.0.113.20/32"
    assert inside.instance_id == world["dedi"]
    # before the /32 began, the /28 answers
    before = attribution.attribute(runtime, "203.0.113.20", "2026-01-20T00:00:00Z")
    assert before is not None and before.assignment.prefix == "203.0.113.16/28"
    assert before.instance_id is None
    neighbour = attribution.attribute(runtime, "203.0.113.21", "2026-03-01T00:00:00Z")
    assert neighbour is not None and neighbour.assignment.prefix == "203.0.113.16/28"


def test_a_nat_port_resolves_to_the_private_address_and_its_holder(
    runtime: Runtime, world: dict[str, int]
) -> None:
    found = attribution.attribute(runtime, "203.0.113.200", "2026-04-01T08:00:00+08:00", 40123)
    assert found is not None
    assert found.customer_id == world["carol"]
    assert found.nat is not None and found.nat.private_ip == "100.64.0.10"
    assert (found.nat.port_start, found.nat.port_end) == (40000, 40999)
    assert found.assignment.prefix == "100.64.0.10/32"
    outside_block = attribution.attribute(runtime, "203.0.113.200", "2026-04-01T00:00Z", 50000)
    assert outside_block is None
    no_port = attribution.attribute(runtime, "203.0.113.200", "2026-04-01T00:00Z")
    assert no_port is None
    hint = attribution.nobody_hint(runtime, "203.0.113.200", "2026-04-01T00:00Z", None)
    assert "give the port" in hint
    with pytest.raises(ValidationFailed, match="out of range"):
        attribution.attribute(runtime, "203.0.113.200", "2026-04-01T00:00Z", 70000)


def test_ipv6_addresses_are_attributed(runtime: Runtime, world: dict[str, int]) -> None:
    found = attribution.attribute(runtime, "2001:db8:7:42::1", "2026-06-01T00:00:00Z")
    assert found is not None
    assert found.customer_id == world["dave"]
    assert found.assignment.prefix == "2001:db8:7::/48"
    assert attribution.attribute(runtime, "2001:db8:8::1", "2026-06-01T00:00:00Z") is None


def test_the_index_sees_changes_made_by_another_runtime(
    runtime: Runtime, settings: Settings, world: dict[str, int]
) -> None:
    other = Runtime.open(settings)
    try:
        before = attribution.current_index(runtime)
        with other.operation(ACTOR) as op:
            inventory.assign(op, "203.0.113.99", world["carol"], valid_from="2026-01-01T00:00Z")
        # Within the refresh interval the old index may still answer …
        assert attribution.current_index(runtime) is before
        # … and a check on demand (or the interval passing) sees the new generation.
        fresh = attribution.current_index(runtime, check=True)
        assert fresh.generation > before.generation
        found = attribution.attribute(runtime, "203.0.113.99", "2026-02-01T00:00Z")
        assert found is not None and found.customer_id == world["carol"]
    finally:
        other.close()


def test_the_index_checks_the_generation_after_the_refresh_interval(
    runtime: Runtime, settings: Settings, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Runtime.open(settings)
    try:
        attribution.current_index(runtime)
        with other.operation(ACTOR) as op:
            inventory.assign(op, "203.0.113.98", world["carol"], valid_from="2026-01-01T00:00Z")
        monkeypatch.setattr(attribution, "REFRESH_SECONDS", 0.0)
        assert attribution.attribute(runtime, "203.0.113.98", "2026-02-01T00:00Z") is not None
    finally:
        other.close()


def test_a_change_in_this_process_is_seen_on_the_next_lookup(
    runtime: Runtime, world: dict[str, int]
) -> None:
    assert attribution.attribute(runtime, "203.0.113.97", "2026-02-01T00:00Z") is None
    with runtime.operation(ACTOR) as op:
        inventory.assign(op, "203.0.113.97", world["dave"], valid_from="2026-01-01T00:00Z")
    found = attribution.attribute(runtime, "203.0.113.97", "2026-02-01T00:00Z")
    assert found is not None and found.customer_id == world["dave"]


def test_a_failed_write_leaves_the_index_as_it_was(runtime: Runtime, world: dict[str, int]) -> None:
    before = attribution.current_index(runtime)
    with pytest.raises(ValidationFailed), runtime.operation(ACTOR) as op:
        inventory.assign(op, "198.51.100.1", world["dave"])
    assert attribution.current_index(runtime).generation == before.generation


# --- bulk -------------------------------------------------------------------------------


@pytest.fixture
def busy(runtime: Runtime) -> Iterator[list[int]]:
    """Many customers over 192.0.2.0/24 and 2001:db8:1::/48 with reassignments, nested
    prefixes and gaps, so that bulk answers can be compared with single ones."""
    rng = np.random.default_rng(20261123)
    customers = make_customers(runtime, *(f"c{i}" for i in range(12)))
    make_ranges(runtime, "192.0.2.0/24", "2001:db8:1::/48")
    month = [f"2026-{m:02d}-01T00:00:00+08:00" for m in range(1, 13)]
    with runtime.operation(ACTOR) as op:
        for block in range(4):  # /28 parents, each refined by /32s of the same customer
            owner = customers[block]
            inventory.assign(op, f"192.0.2.{block * 16}/28", owner, valid_from=month[0])
            for host in rng.choice(16, size=5, replace=False):
                start = month[int(rng.integers(0, 6))]
                end = month[int(rng.integers(6, 12))]
                inventory.assign(
                    op,
                    f"192.0.2.{block * 16 + int(host)}",
                    owner,
                    valid_from=start,
                    valid_to=end,
                )
        for host in range(64, 128):  # single addresses changing hands
            owners = rng.choice(customers, size=3, replace=False)
            cuts = sorted(rng.choice(range(12), size=3, replace=False))
            for i, owner in enumerate(owners):
                end = month[cuts[i + 1]] if i + 1 < len(cuts) else None
                inventory.assign(
                    op,
                    f"192.0.2.{host}",
                    int(owner),
                    valid_from=month[cuts[i]],
                    valid_to=end,
                )
        for net in range(8):
            inventory.assign(
                op, f"2001:db8:1:{net}::/64", customers[8 + net % 4], valid_from=month[2]
            )
        # a /128 refining the /64 of the same customer
        inventory.assign(op, "2001:db8:1:3::7", customers[11], valid_from=month[4])
        for host in (1, 2, 3):  # several /128s under one high word, beside the IPv4 /32s
            inventory.assign(
                op, f"2001:db8:1:5::{host}", customers[9], valid_from=month[host], valid_to=month[9]
            )
    return customers


@pytest.mark.parametrize("dense", [True, False], ids=["slot-tables", "binary-search"])
def test_bulk_attribution_equals_single_lookups_on_a_random_sample(
    runtime: Runtime, busy: list[int], dense: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not dense:  # every level too wide for a slot table: the search path answers
        monkeypatch.setattr(attribution, "DENSE_SLOTS", 1)
    rng = np.random.default_rng(4)
    n = 3000
    # Mostly inside the assigned ranges, some just outside and far away (remote peers),
    # on both sides of each level's first and last prefix.
    third = rng.choice([1, 2, 2, 2, 3], size=n)
    v4 = [f"192.0.{int(c)}.{int(x)}" for c, x in zip(third, rng.integers(0, 256, n), strict=True)]
    v4[:6] = ["192.0.2.0", "192.0.2.255", "192.0.1.255", "192.0.3.0", "0.0.0.1", "10.1.2.3"]
    group = rng.choice([0, 1, 1, 1, 2], size=n)
    v6 = [
        f"2001:db8:{int(c)}:{int(a)}::{int(b)}"
        for c, (a, b) in zip(group, rng.integers(0, 10, (n, 2)), strict=True)
    ]
    v6[:4] = ["2001:db8:1::", "2001:db8:1:7:ffff:ffff:ffff:ffff", "::1", "ffff::"]
    texts = v4 + v6
    start = int(at("2025-12-01T00:00:00Z").timestamp() * 1000)
    end = int(at("2027-01-01T00:00:00Z").timestamp() * 1000)
    times = rng.integers(start, end, size=len(texts), dtype=np.int64)
    index = attribution.current_index(runtime)
    customers, instances = attribution.attribute_many(index, netaddr.texts_to_hilo(texts), times)
    hits = 0
    for i, text in enumerate(texts):
        single = attribution.lookup(
            index,
            netaddr.parse_address(text),
            attribution.from_epoch_us(int(times[i]) * 1000),
            None,
        )
        expected = (single.customer_id, single.instance_id or -1) if single else (-1, -1)
        assert (int(customers[i]), int(instances[i])) == expected, (text, int(times[i]))
        hits += single is not None
    assert 0.2 * len(texts) < hits < len(texts)  # the sample has both hits and misses
    # IPv4 as uint32 gives the same answers as the text form
    as_u32 = np.array([int(ipaddress.IPv4Address(t)) for t in v4], dtype=np.uint32)
    c32, _ = attribution.attribute_many(index, as_u32, times[:n])
    assert np.array_equal(c32, customers[:n])


def test_bulk_refuses_times_without_a_zone_or_of_the_wrong_type(
    runtime: Runtime, busy: list[int]
) -> None:
    index = attribution.current_index(runtime)
    ips = np.array([int(ipaddress.IPv4Address("192.0.2.1"))], dtype=np.uint32)
    with pytest.raises(ValidationFailed, match="no time zone"):
        attribution.attribute_many(index, ips, np.array(["2026-05-01T10:00"], "datetime64[ms]"))
    with pytest.raises(ValidationFailed, match="epoch milliseconds"):
        attribution.attribute_many(index, ips, np.array([1.5]))
    with pytest.raises(ValidationFailed, match="not understood"):
        attribution.attribute_many(index, np.array([1], dtype=np.int16), np.array([1]))


def test_bulk_on_an_empty_registry_answers_nobody(runtime: Runtime) -> None:
    index = attribution.current_index(runtime)
    ips = np.array([1, 2, 3], dtype=np.uint32)
    customers, instances = attribution.attribute_many(index, ips, np.zeros(3, dtype=np.int64))
    assert customers.tolist() == [-1, -1, -1] and instances.tolist() == [-1, -1, -1]


# --- API --------------------------------------------------------------------------------


def test_attribution_api_answers_and_refuses_a_naive_time(
    client: TestClient, admin_token: str, world: dict[str, int]
) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    ok = client.get(
        "/api/v1/attribution",
        params={"ip": "203.0.113.200", "at": "2026-04-01T08:00:00+08:00", "port": 40001},
        headers=headers,
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["customer_id"] == world["carol"]
    assert body["nat"]["private_ip"] == "100.64.0.10"
    assert body["assignment"]["prefix"] == "100.64.0.10/32"
    naive = client.get(
        "/api/v1/attribution",
        params={"ip": "203.0.113.7", "at": "2026-04-01T08:00:00"},
        headers=headers,
    )
    assert naive.status_code == 422
    assert naive.headers["content-type"].startswith("application/problem+json")
    assert "no time zone" in naive.json()["detail"]
    assert "+08:00" in naive.json()["detail"]
    nobody = client.get(
        "/api/v1/attribution",
        params={"ip": "203.0.113.200", "at": "2026-04-01T08:00:00Z"},
        headers=headers,
    )
    assert nobody.status_code == 404
    assert "give the port" in nobody.json()["detail"]


def test_inventory_api_creates_lists_and_releases(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    (alice, bob) = make_customers(runtime, "Alice", "Bob")
    headers = {"Authorization": f"Bearer {admin_token}"}
    room = client.post(
        "/api/v1/rooms", json={"name": "SH-01", "licences": ["B1-20190001"]}, headers=headers
    )
    assert room.status_code == 201, room.text
    rng = client.post(
        "/api/v1/ip-ranges",
        json={"cidr": "203.0.113.0/24", "room_id": room.json()["id"]},
        headers=headers,
    )
    assert rng.status_code == 201, rng.text
    vps = client.post(
        "/api/v1/instances",
        json={"hostname": "vps-9", "kind": "vps", "customer_id": alice},
        headers=headers,
    )
    assert vps.status_code == 201, vps.text
    first = client.post(
        "/api/v1/assignments",
        json={
            "prefix": "203.0.113.9",
            "customer_id": alice,
            "instance_id": vps.json()["id"],
            "valid_from": "2026-01-01T00:00:00+08:00",
        },
        headers=headers,
    )
    assert first.status_code == 201, first.text
    clash = client.post(
        "/api/v1/assignments",
        json={"prefix": "203.0.113.9", "customer_id": bob, "valid_from": "2026-02-01T00:00Z"},
        headers=headers,
    )
    assert clash.status_code == 409
    assert f"#{first.json()['id']}" in clash.json()["detail"]
    outside = client.post(
        "/api/v1/assignments",
        json={"prefix": "198.51.100.9", "customer_id": bob, "valid_from": "2026-02-01T00:00Z"},
        headers=headers,
    )
    assert outside.status_code == 422 and "outside every known range" in outside.json()["detail"]
    naive = client.post(
        "/api/v1/assignments",
        json={"prefix": "203.0.113.10", "customer_id": bob, "valid_from": "2026-02-01T00:00"},
        headers=headers,
    )
    assert naive.status_code == 422 and "no time zone" in naive.json()["detail"]
    moved = client.post(
        "/api/v1/assignments",
        json={
            "prefix": "203.0.113.9",
            "customer_id": bob,
            "valid_from": "2026-02-01T00:00Z",
            "reassign": True,
        },
        headers=headers,
    )
    assert moved.status_code == 201, moved.text
    history = client.get("/api/v1/assignments", params={"ip": "203.0.113.9"}, headers=headers)
    assert [a["customer_id"] for a in history.json()] == [bob, alice]
    released = client.post(
        f"/api/v1/assignments/{moved.json()['id']}/release",
        json={"at": "2026-03-01T00:00:00Z", "reason": "contract ended"},
        headers=headers,
    )
    assert released.status_code == 200 and released.json()["valid_to"].startswith("2026-03-01")
    nat = client.post(
        "/api/v1/nat-mappings",
        json={
            "public_ip": "203.0.113.250",
            "port_start": 1024,
            "port_end": 2047,
            "private_ip": "10.0.0.5",
        },
        headers=headers,
    )
    assert nat.status_code == 201, nat.text
    dom = client.post(
        "/api/v1/domains", json={"name": "bob.example", "customer_id": bob}, headers=headers
    )
    assert dom.status_code == 201, dom.text
    for path in ("/api/v1/rooms", "/api/v1/ip-ranges", "/api/v1/instances", "/api/v1/nat-mappings"):
        listed = client.get(path, headers=headers)
        assert listed.status_code == 200 and len(listed.json()) == 1, path
    ended = client.post(f"/api/v1/instances/{vps.json()['id']}/terminate", headers=headers)
    assert ended.status_code == 200 and ended.json()["status"] == "terminated"


def test_api_lookups_on_a_current_and_a_stale_index_agree_and_see_changes(
    client: TestClient, admin_token: str, runtime: Runtime, world: dict[str, int]
) -> None:
    """The route answers on the event loop while the index is current and in a worker
    thread when it must be checked or rebuilt; both paths give the same answer, and a
    change committed meanwhile is seen by the next request."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    query = {"ip": "203.0.113.7", "at": "2026-06-01T00:00:00Z"}
    cold = client.get("/api/v1/attribution", params=query, headers=headers)
    assert cold.status_code == 200, cold.text
    assert attribution.index_is_current(runtime)
    warm = client.get("/api/v1/attribution", params=query, headers=headers)
    assert warm.json() == cold.json()
    assert warm.json()["customer_id"] == world["bob"]
    with runtime.operation(ACTOR) as op:
        inventory.assign(
            op, "203.0.113.7", world["alice"], valid_from="2026-05-01T00:00:00Z", reassign=True
        )
    assert not attribution.index_is_current(runtime), "a local commit marks the index stale"
    moved = client.get("/api/v1/attribution", params=query, headers=headers)
    assert moved.json()["customer_id"] == world["alice"]
    assert moved.json()["assignment"]["valid_from"] == "2026-05-01T00:00:00.000000Z"


def test_a_revoked_token_is_refused_at_once_on_the_cached_path(
    client: TestClient, admin_token: str, world: dict[str, int]
) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    made = client.post("/api/v1/tokens", json={"name": "short", "days": 1}, headers=headers)
    assert made.status_code == 201, made.text
    own = {"Authorization": f"Bearer {made.json()['token']}"}
    query = {"ip": "203.0.113.7", "at": "2026-06-01T00:00:00Z"}
    assert client.get("/api/v1/attribution", params=query, headers=own).status_code == 200
    assert client.get("/api/v1/attribution", params=query, headers=own).status_code == 200
    revoked = client.delete(f"/api/v1/tokens/{made.json()['id']}", headers=headers)
    assert revoked.status_code == 200, revoked.text
    refused = client.get("/api/v1/attribution", params=query, headers=own)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]


def test_warming_builds_the_index_and_a_failure_is_logged_not_raised(
    runtime: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from structlog.testing import capture_logs

    assert not attribution.index_is_current(runtime)
    with capture_logs() as logs:
        attribution.warm(runtime)
    assert attribution.index_is_current(runtime)
    assert [e["assignments"] for e in logs if e["event"] == "attribution.warm"] == [6]

    def broken(session: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(attribution, "build_index", broken)
    with runtime.operation(ACTOR) as op:  # a change, so the next build is due
        inventory.assign(op, "203.0.113.99", world["bob"], valid_from="2026-01-01T00:00Z")
    with capture_logs() as logs:
        attribution.warm(runtime)  # must not raise
    failed = [e for e in logs if e["event"] == "attribution.warm_failed"]
    assert failed and failed[0]["detail"] == "disk on fire"


def test_lookups_answer_from_the_previous_index_while_another_thread_rebuilds(
    runtime: Runtime, settings: Settings, world: dict[str, int]
) -> None:
    """A rebuild takes seconds on a large registry: other threads keep answering from the
    snapshot they have, except after a change committed in this process, which they wait
    for (read-your-writes)."""
    import threading

    first = attribution.current_index(runtime, check=True)
    holder = attribution._holder(runtime)
    # Another process changes the registry; this process will notice on its next check.
    other = Runtime.open(settings)
    try:
        with other.operation(ACTOR) as op:
            inventory.assign(op, "203.0.113.50", world["bob"], valid_from="2026-01-01T00:00Z")
    finally:
        other.close()
    holder.checked_at = 0.0  # the refresh interval has passed
    holder.lock.acquire()  # as if a rebuild were running in another thread
    try:
        assert attribution.current_index(runtime) is first, "does not queue behind it"
        # A change committed here: the next lookup must wait for an index holding it.
        with runtime.operation(ACTOR) as op:
            inventory.assign(op, "203.0.113.51", world["bob"], valid_from="2026-01-01T00:00Z")
        got: list[attribution.AttributionIndex] = []
        waiter = threading.Thread(target=lambda: got.append(attribution.current_index(runtime)))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), "waits for the rebuild instead of answering stale"
    finally:
        holder.lock.release()
    waiter.join(10)
    assert got and got[0].generation > first.generation
    found = attribution.attribute(runtime, "203.0.113.51", "2026-06-01T00:00:00Z", index=got[0])
    assert found is not None and found.customer_id == world["bob"]
    assert attribution.attribute(runtime, "203.0.113.50", "2026-06-01T00:00:00Z") is not None


def test_keeping_warm_picks_up_changes_made_elsewhere_without_a_lookup(
    runtime: Runtime, settings: Settings, world: dict[str, int]
) -> None:
    import threading
    import time

    stop = threading.Event()
    keeper = threading.Thread(target=attribution.keep_warm, args=(runtime, stop), daemon=True)
    keeper.start()
    try:
        deadline = time.monotonic() + 10
        while not attribution.index_is_current(runtime) and time.monotonic() < deadline:
            time.sleep(0.05)
        first = attribution._holder(runtime).index
        assert first is not None
        other = Runtime.open(settings)
        try:
            with other.operation(ACTOR) as op:
                inventory.assign(op, "203.0.113.60", world["bob"], valid_from="2026-01-01T00:00Z")
        finally:
            other.close()
        while time.monotonic() < deadline:
            now = attribution._holder(runtime).index
            if now is not None and now.generation > first.generation:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the kept index did not pick up the change within 10 s")
        assert attribution.index_is_current(runtime)
    finally:
        stop.set()
        keeper.join(5)
    assert not keeper.is_alive()
