"""Brute-force detector: short flows to login services from flows, failed logins from
sshd logs, and the traffic and log lines that are not brute force."""

from __future__ import annotations

import io
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from hostwarden.core.config_detect import BruteForceSettings, DetectSettings
from hostwarden.detect.detectors.bruteforce import BruteForceDetector, make, ssh_findings
from hostwarden.flows import logformats
from hostwarden.flows.logformats import LogContext, ParseStats
from hostwarden.registry import attribution, netaddr
from tests.detect.support import T0, Trace, of, run

ATTACKER = "100.64.7.7"
SERVER = "100.64.8.8"


def detector(**overrides: object) -> BruteForceDetector:
    return BruteForceDetector(BruteForceSettings(**overrides))


def hosts(n: int, base: str = "203.0.113.") -> list[str]:
    return [f"{base}{i + 1}" for i in range(n)]


def test_a_customer_hammering_ssh_is_found_with_its_targets() -> None:
    trace = Trace().background(records=5000)
    trace.flows(
        local=ATTACKER,
        remote=hosts(3),
        n=30,
        remote_port=22,
        packets=14,
        spread_ms=50_000,
        customer_id=7,
        instance_id=70,
    )
    findings = of(run(detector(), trace), "bruteforce")
    assert len(findings) == 1
    found = findings[0]
    assert (found.ip, found.kind, found.direction) == (ATTACKER, "ssh", "outbound")
    assert found.severity == "medium"
    assert (found.customer_id, found.instance_id) == (7, 70)
    assert found.counts["flows"] == 30 and found.counts["targets"] == 3
    assert found.counts["flows_per_minute"] == 30
    assert sorted(p["ip"] for p in found.top_peers) == hosts(3)
    assert [p["flows"] for p in found.top_peers] == [10, 10, 10]
    assert found.top_ports == [{"port": 22, "flows": 30.0}]
    assert "30 short ssh connections (port 22) to 3 host(s)" in found.summary


def test_each_service_is_its_own_finding() -> None:
    trace = Trace()
    trace.flows(local=ATTACKER, remote=hosts(1), n=25, remote_port=3389, packets=20)
    trace.flows(local=ATTACKER, remote=hosts(2), n=25, remote_port=6379, packets=5)
    findings = of(run(detector(), trace), "bruteforce", ATTACKER)
    assert sorted(f.kind for f in findings) == ["rdp", "redis"]


def test_below_the_rate_and_spread_over_two_minutes_is_not_brute_force() -> None:
    trace = Trace().background(records=5000)
    # 19 a minute: one below the default 20.
    trace.flows(local=ATTACKER, remote=hosts(2), n=19, remote_port=22, packets=12)
    # 36 flows, but 18 in each of two minutes.
    trace.flows(
        local="100.64.7.8",
        remote=hosts(2),
        n=36,
        remote_port=22,
        packets=12,
        start_ms=T0 + 60_000,
        spread_ms=120_000,
    )
    assert run(detector(), trace) == []


def test_long_sessions_and_other_ports_are_not_login_attempts() -> None:
    trace = Trace()
    # An admin's deployment tool: 60 SSH sessions a minute, each hundreds of packets.
    trace.flows(local=ATTACKER, remote=hosts(20), n=60, remote_port=22, packets=400)
    # A busy HTTPS client: many short flows, but 443 is no login service.
    trace.flows(local="100.64.7.9", remote=hosts(5), n=200, remote_port=443, packets=8)
    # The customer's own SSH server answering: port 22 is on its side, so these
    # replies are never the customer attacking (at most someone attacking it).
    trace.flows(local=SERVER, remote=hosts(1), n=50, local_port=22, remote_port=50123, packets=12)
    assert run(detector(inbound=False), trace) == []
    assert [(f.ip, f.direction) for f in run(detector(), trace)] == [(SERVER, "inbound")]


def test_an_exporter_that_sees_only_the_replies_still_counts_each_connection_once() -> None:
    replies = Trace().flows(
        local=ATTACKER,
        remote=hosts(2),
        n=24,
        outbound=False,
        local_port=51000,
        remote_port=22,
        packets=10,
    )
    found = run(detector(), replies)
    assert [(f.direction, f.counts["flows"]) for f in found] == [("outbound", 24)]
    assert sorted(p["ip"] for p in found[0].top_peers) == hosts(2)
    # Both directions seen: 24 requests and their 24 replies are 24 connections.
    both = Trace().flows(local=ATTACKER, remote=hosts(2), n=24, remote_port=22, packets=10)
    both.parts += replies.parts
    found = run(detector(), both)
    assert [(f.direction, f.counts["flows"]) for f in found] == [("outbound", 24)]
    assert sum(p["flows"] for p in found[0].top_peers) == 24


def test_sampled_records_count_as_their_sampling_rate_in_flows() -> None:
    # Three records sampled 1:10 stand for 30 flows; each saw one packet (short).
    trace = Trace().flows(
        local=ATTACKER, remote=hosts(3), n=3, remote_port=22, packets=1, sampling=10
    )
    findings = of(run(detector(), trace), "bruteforce", ATTACKER)
    assert len(findings) == 1 and findings[0].counts["flows"] == 30


def test_mixed_sampling_rates_add_up_and_long_sampled_flows_stay_long() -> None:
    exactly = Trace()
    exactly.flows(local=ATTACKER, remote=hosts(1), n=1, remote_port=22, packets=2, sampling=10)
    exactly.flows(local=ATTACKER, remote=hosts(1), n=10, remote_port=22, packets=12)
    found = of(run(detector(), exactly), "bruteforce", ATTACKER)
    assert [f.counts["flows"] for f in found] == [20]
    short_of_it = Trace()
    short_of_it.flows(local=ATTACKER, remote=hosts(1), n=1, remote_port=22, packets=2, sampling=10)
    short_of_it.flows(local=ATTACKER, remote=hosts(1), n=9, remote_port=22, packets=12)
    # 1:100 sampled records that saw 50 packets each are long sessions, not attempts.
    short_of_it.flows(
        local=ATTACKER, remote=hosts(1), n=5, remote_port=22, packets=50, sampling=100
    )
    assert run(detector(), short_of_it) == []


def test_one_source_hammering_a_customer_is_an_inbound_finding() -> None:
    trace = Trace().flows(
        local=SERVER,
        remote="192.0.2.66",
        n=25,
        outbound=False,
        local_port=3389,
        remote_port=51000,
        packets=9,
        customer_id=3,
    )
    # Ten other sources, each below the rate: no single one is brute-forcing.
    trace.flows(
        local=SERVER,
        remote=hosts(10, "198.51.100."),
        n=50,
        outbound=False,
        local_port=3389,
        remote_port=51000,
        packets=9,
        customer_id=3,
    )
    findings = of(run(detector(), trace), "bruteforce", SERVER)
    assert len(findings) == 1
    found = findings[0]
    assert (found.kind, found.direction, found.severity) == ("rdp", "inbound", "low")
    assert found.counts["sources"] == 1 and found.counts["flows"] == 25
    assert found.top_peers == [{"ip": "192.0.2.66", "flows": 25.0}]
    assert found.customer_id == 3
    assert run(detector(inbound=False), trace) == []


def test_services_and_thresholds_come_from_the_settings() -> None:
    trace = Trace().flows(local=ATTACKER, remote=hosts(1), n=10, remote_port=2222, packets=5)
    assert run(detector(), trace) == []
    found = run(detector(services={2222: "ssh-alt"}, flows_per_minute=10), trace)
    assert [f.kind for f in found] == ["ssh-alt"]
    settings = DetectSettings()
    settings.bruteforce.enabled = False
    assert make(settings, Path(".")) is None


# --- sshd logs --------------------------------------------------------------------------


def parsed(lines: list[str], server_ip: str = SERVER) -> pa.Table:
    """sshd lines through the importer's own parser, as ``detect replay`` reads them."""
    context = LogContext(where="auth.log", server_ip=server_ip, zone=ZoneInfo("UTC"), year=2026)
    tables = list(logformats.read_ssh(io.StringIO("\n".join(lines) + "\n"), context, ParseStats()))
    return pa.concat_tables(tables)


def failed_passwords(source: str, n: int, *, pid: int = 2000, minute: str = "10:02") -> list[str]:
    users = ["root", "admin", "ubuntu", "test", "oracle"]
    return [
        f"May  1 {minute}:{10 + i % 40:02d} web01 sshd[{pid + i // 3}]: Failed password for "
        f"{'' if users[i % 5] == 'root' else 'invalid user '}{users[i % 5]} from {source} "
        f"port {40000 + i // 3} ssh2"
        for i in range(n)
    ]


def test_failed_ssh_logins_from_one_source_are_found() -> None:
    lines = failed_passwords("198.51.100.23", 12)
    lines += [
        "May  1 10:02:55 web01 sshd[3000]: Accepted publickey for deploy from 192.0.2.5 port "
        "50022 ssh2: ED25519 SHA256:Yx2cAbGqzm3uU0tN7T3p9r2m5g8k6Ew1iRrBvC0dQ4s",
    ]
    findings = ssh_findings(parsed(lines), BruteForceSettings())
    assert len(findings) == 1
    found = findings[0]
    assert (found.ip, found.category, found.kind) == (SERVER, "bruteforce", "ssh")
    assert (found.direction, found.severity) == ("inbound", "low")
    assert found.counts == {"failures": 12, "logins": 0, "sources": 1}
    assert found.top_peers == [{"ip": "198.51.100.23", "failures": 12, "logins": 0}]
    assert found.window_seconds == 60
    assert found.as_dict()["window_start"].startswith("2026-05-01T10:02:00")
    assert found.detector == "bruteforce"


def test_nine_failures_or_failures_split_over_two_windows_are_not_enough() -> None:
    nine = failed_passwords("198.51.100.23", 9)
    split = failed_passwords("198.51.100.24", 6, minute="10:03") + failed_passwords(
        "198.51.100.24", 6, pid=2100, minute="10:04"
    )
    assert ssh_findings(parsed(nine + split), BruteForceSettings()) == []
    # A five-minute window joins the split attempts (nine stay nine).
    found = ssh_findings(parsed(nine + split), BruteForceSettings(), window_seconds=300)
    assert [(f.window_seconds, f.top_peers) for f in found] == [
        (300, [{"ip": "198.51.100.24", "failures": 12, "logins": 0}])
    ]


def test_invalid_user_then_failed_password_is_one_attempt_and_key_only_servers_count() -> None:
    # Each connection: "Invalid user", "Failed password for invalid user", closed: 1 try.
    lines: list[str] = []
    for i in range(10):
        pid, port = 4000 + i, 41000 + i
        lines += [
            f"May  1 11:00:{i * 2:02d} web01 sshd[{pid}]: Invalid user guest from "
            f"203.0.113.9 port {port}",
            f"May  1 11:00:{i * 2:02d} web01 sshd[{pid}]: Failed password for invalid user "
            f"guest from 203.0.113.9 port {port} ssh2",
            f"May  1 11:00:{i * 2 + 1:02d} web01 sshd[{pid}]: Connection closed by invalid "
            f"user guest 203.0.113.9 port {port} [preauth]",
        ]
    # A server that takes keys only: no "Failed" line, the client gives up pre-auth.
    for i in range(10):
        lines.append(
            f"May  1 11:00:{30 + i:02d} web01 sshd[{5000 + i}]: Connection closed by "
            f"authenticating user root 203.0.113.10 port {42000 + i} [preauth]"
        )
    findings = ssh_findings(parsed(lines), BruteForceSettings())
    assert len(findings) == 1
    peers = {p["ip"]: p["failures"] for p in findings[0].top_peers}
    assert peers == {"203.0.113.9": 10, "203.0.113.10": 10}
    assert findings[0].counts["sources"] == 2


def test_logins_that_succeed_are_not_attempts_but_a_success_after_failures_is_told() -> None:
    lines: list[str] = []
    for i in range(15):
        pid = 6000 + i
        lines += [
            f"May  1 12:00:{i * 3:02d} web01 sshd[{pid}]: Accepted publickey for deploy from "
            f"192.0.2.5 port {43000 + i} ssh2",
            f"May  1 12:00:{i * 3 + 1:02d} web01 sshd[{pid}]: Disconnected from user deploy "
            f"192.0.2.5 port {43000 + i}",
        ]
    assert ssh_findings(parsed(lines), BruteForceSettings()) == []
    lines = [
        *failed_passwords("198.51.100.23", 10, minute="12:00"),
        "May  1 12:00:58 web01 sshd[7000]: Accepted password for root from 198.51.100.23 "
        "port 44000 ssh2",
    ]
    found = ssh_findings(parsed(lines), BruteForceSettings())
    assert [f.counts["logins"] for f in found] == [1]
    assert "then logged in" in found[0].summary


def test_attributed_tables_name_the_servers_customer() -> None:
    table = parsed(failed_passwords("198.51.100.23", 10))
    n = len(table)
    table = table.append_column("customer_id", pa.array(np.full(n, 42), pa.int64()))
    table = table.append_column("instance_id", pa.array(np.full(n, 420), pa.int64()))
    found = ssh_findings(table, BruteForceSettings())
    assert [(f.customer_id, f.instance_id) for f in found] == [(42, 420)]
    assert ssh_findings(table, BruteForceSettings(enabled=False)) == []
    assert ssh_findings(table, BruteForceSettings(inbound=False)) == []


def index_holding(prefix: str, customer: int, instance: int) -> attribution.AttributionIndex:
    start, end = netaddr.prefix_keys(prefix)
    levels = attribution._levels(
        np.array([1], np.int64),
        *netaddr.keys_to_hilo([start]),
        *netaddr.keys_to_hilo([end]),
        np.array([customer], np.int64),
        np.array([instance], np.int64),
        np.array([0], np.int64),
        np.array([np.iinfo(np.int64).max], np.int64),
    )
    return attribution.AttributionIndex(1, levels)


def test_a_customer_attacking_a_server_whose_log_is_imported_is_an_outbound_finding() -> None:
    lines = failed_passwords("100.64.5.5", 11) + failed_passwords("198.51.100.23", 11, pid=9000)
    index = index_holding("100.64.5.0/24", 5, 55)
    found = ssh_findings(parsed(lines, "192.0.2.200"), BruteForceSettings(), index=index)
    inbound = [f for f in found if f.direction == "inbound"]
    outbound = [f for f in found if f.direction == "outbound"]
    assert [(f.ip, f.counts["sources"]) for f in inbound] == [("192.0.2.200", 2)]
    assert inbound[0].customer_id is None
    assert len(outbound) == 1
    assert (outbound[0].ip, outbound[0].severity) == ("100.64.5.5", "medium")
    assert (outbound[0].customer_id, outbound[0].instance_id) == (5, 55)
    assert outbound[0].top_peers == [{"ip": "192.0.2.200", "failures": 11, "logins": 0}]


def test_the_shipped_auth_log_fixture_is_below_the_threshold() -> None:
    fixture = Path(__file__).parent.parent / "fixtures" / "logs" / "auth.log"
    table = parsed(fixture.read_text(encoding="utf-8").splitlines())
    assert len(table) == 9
    assert ssh_findings(table, BruteForceSettings()) == []
    # Two connections with failures in the same minute from 198.51.100.23.
    found = ssh_findings(table, BruteForceSettings(auth_failures=2))
    assert [(f.top_peers[0]["ip"], f.counts["failures"]) for f in found] == [("198.51.100.23", 2)]


def test_one_try_per_host_is_a_scan_not_password_guessing() -> None:
    # 40 hosts once each on port 22 in a minute: the scan detector's, not this one's.
    sweep = Trace().flows(local=ATTACKER, remote=hosts(40), n=40, remote_port=22, packets=3)
    assert of(run(detector(), sweep), "bruteforce") == []
    # 10 hosts, 4 tries each: guessing, spread over hosts.
    spray = Trace().flows(local=ATTACKER, remote=hosts(10), n=40, remote_port=22, packets=12)
    (found,) = of(run(detector(), spray), "bruteforce")
    assert found.counts["targets"] == 10 and found.counts["flows"] == 40
    # The threshold is a setting.
    assert of(run(detector(min_attempts_per_target=5), spray), "bruteforce") == []
