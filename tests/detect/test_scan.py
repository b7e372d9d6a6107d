"""Scan detector: horizontal and vertical scans in a trace, and traffic that is not one."""

from __future__ import annotations

import numpy as np

from hostwarden.core.config_detect import DetectSettings, ScanSettings
from hostwarden.detect.detectors.scan import ScanDetector, make
from tests.detect.support import T0, Trace, of, run

SCANNER = "100.64.9.9"


def detector(**overrides: object) -> ScanDetector:
    return ScanDetector(ScanSettings(**overrides))  # type: ignore[arg-type]


def targets(n: int, base: str = "203.0.113.") -> list[str]:
    return [
        f"{base}{i % 250 + 1}" if i < 250 else f"198.51.{i // 250}.{i % 250 + 1}" for i in range(n)
    ]


def test_horizontal_scan_is_found_with_its_port_and_targets() -> None:
    trace = Trace().background(records=5000)
    trace.flows(
        local=SCANNER,
        remote=targets(40),
        n=40,
        remote_port=22,
        tcp_flags=0x02,
        packets=1,
        start_ms=T0 + 30_000,
        spread_ms=60_000,
        customer_id=7,
        instance_id=70,
    )
    findings = of(run(detector(), trace), "scan", SCANNER)
    assert len(findings) == 1
    found = findings[0]
    assert found.kind == "horizontal"
    assert found.counts["hosts"] == 40 and found.counts["port"] == 22
    assert (found.customer_id, found.instance_id) == (7, 70)
    assert found.direction == "outbound"
    assert len(found.top_peers) == 10
    assert "port 22 on 40 hosts" in found.summary


def test_vertical_scan_is_found() -> None:
    trace = Trace().flows(
        local=SCANNER,
        remote="203.0.113.5",
        n=100,
        remote_port=np.arange(1, 101),
        tcp_flags=0x02,
        packets=1,
        spread_ms=120_000,
    )
    findings = of(run(detector(), trace), "scan", SCANNER)
    assert [f.kind for f in findings] == ["vertical"]
    assert findings[0].counts["ports"] == 100
    assert findings[0].top_peers[0]["ip"] == "203.0.113.5"


def test_below_threshold_and_established_traffic_are_not_scans() -> None:
    trace = Trace().background(records=20_000)
    # 24 hosts: one below Zeek's 25.
    trace.flows(local=SCANNER, remote=targets(24), n=24, remote_port=22, tcp_flags=0x02, packets=1)
    # A busy client: 400 hosts on 443, but real conversations (ACK, many packets).
    trace.flows(local="100.64.9.10", remote=targets(400), n=400, remote_port=443, packets=30)
    assert run(detector(), trace) == []


def test_sampled_records_count_as_probes_by_packets_per_record() -> None:
    # 1:100 sampling: 100 packets per record are one sampled packet, a probe.
    trace = Trace().flows(
        local=SCANNER,
        remote=targets(30),
        n=30,
        remote_port=3389,
        tcp_flags=0,
        packets=1,
        sampling=100,
    )
    findings = of(run(detector(), trace), "scan", SCANNER)
    assert [f.kind for f in findings] == ["horizontal"]


def test_thresholds_come_from_the_settings_and_can_be_disabled() -> None:
    trace = Trace().flows(
        local=SCANNER, remote=targets(10), n=10, remote_port=22, tcp_flags=2, packets=1
    )
    assert of(run(detector(hosts=10), trace), "scan")
    settings = DetectSettings()
    settings.scan.enabled = False
    assert make(settings, __import__("pathlib").Path(".")) is None


def test_inbound_scans_are_not_the_customers_doing() -> None:
    trace = Trace().flows(
        local=targets(40, "100.64.1."),
        remote="192.0.2.66",
        n=40,
        outbound=False,
        local_port=22,
        remote_port=50000,
        tcp_flags=2,
        packets=1,
    )
    assert run(detector(), trace) == []


def test_a_server_answering_many_clients_is_not_scanning() -> None:
    # A DNS server's replies: one packet each from port 53 to 60 clients' ephemeral
    # ports, 30 ports of one busy resolver among them.
    trace = Trace()
    trace.flows(
        local="100.64.5.53",
        remote=targets(60),
        n=60,
        proto=17,
        local_port=53,
        remote_port=np.arange(40000, 40060),
        tcp_flags=0,
        packets=1,
    )
    trace.flows(
        local="100.64.5.53",
        remote="192.0.2.53",
        n=30,
        proto=17,
        local_port=53,
        remote_port=np.arange(50000, 50030),
        tcp_flags=0,
        packets=1,
    )
    assert run(detector(), trace) == []


def test_icmp_replies_are_not_probes_but_an_echo_sweep_is_a_scan() -> None:
    replies = Trace().flows(
        local=SCANNER,
        remote=targets(40),
        n=40,
        proto=1,
        local_port=0,
        remote_port=0,
        tcp_flags=0,
        packets=1,
    )
    unreachable = Trace().flows(
        local=SCANNER,
        remote=targets(40),
        n=40,
        proto=1,
        local_port=0,
        remote_port=(3 << 8) | 3,
        tcp_flags=0,
        packets=1,
    )
    assert run(detector(), replies) == [] and run(detector(), unreachable) == []
    sweep = Trace().flows(
        local=SCANNER,
        remote=targets(40),
        n=40,
        proto=1,
        local_port=0,
        remote_port=8 << 8,
        tcp_flags=0,
        packets=1,
    )
    (found,) = run(detector(), sweep)
    assert (found.kind, found.counts["port"], found.counts["hosts"]) == ("horizontal", 2048, 40)
