"""Threat-intelligence detector: contacts with listed addresses, by category and
direction, lists from files and a loopback URL, reloaded by wall time."""

from __future__ import annotations

from pathlib import Path

from hostwarden.core.config_detect import DetectSettings, ThreatIntelSettings, ThreatList
from hostwarden.detect.detectors.threatintel import ThreatIntelDetector, make
from tests.detect.support import Trace, of, run

BOT = "100.64.2.2"
VICTIM = "100.64.2.3"
C2_CSV = """\
ip,category,first_seen
198.51.100.9,c2,2026-04-30
203.0.113.0/24,malware,2026-05-01
2001:db8:c2::1,c2,2026-05-02
"""
SCANNERS = "# scanners\n192.0.2.0/25\n"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lists(tmp_path: Path) -> list[ThreatList]:
    (tmp_path / "c2.csv").write_text(C2_CSV, encoding="utf-8")
    (tmp_path / "scanners.netset").write_text(SCANNERS, encoding="utf-8")
    return [
        ThreatList(source="c2.csv", format="csv", category="malware", category_column="category"),
        ThreatList(source="scanners.netset", format="netset", category="scanner"),
    ]


def detector(
    tmp_path: Path, clock: Clock | None = None, **overrides: object
) -> ThreatIntelDetector:
    settings = ThreatIntelSettings(lists=lists(tmp_path), **overrides)
    return ThreatIntelDetector(settings, tmp_path, clock or Clock())


def test_a_customer_calling_a_c2_server_is_found_with_the_listed_entry(tmp_path: Path) -> None:
    trace = Trace().background(records=5000)
    trace.flows(
        local=BOT, remote="198.51.100.9", n=6, remote_port=443, customer_id=2, instance_id=20
    )
    trace.flows(
        local=BOT,
        remote="198.51.100.9",
        n=6,
        outbound=False,
        local_port=40000,
        remote_port=443,
        customer_id=2,
        instance_id=20,
    )
    findings = of(run(detector(tmp_path), trace), "threat-intel")
    assert len(findings) == 1
    found = findings[0]
    assert (found.ip, found.kind, found.direction, found.severity) == (
        BOT,
        "c2",
        "outbound",
        "high",
    )
    assert (found.customer_id, found.instance_id) == (2, 20)
    assert found.counts == {"peers": 1, "flows": 12, "bytes": 12 * 10 * 500}
    assert found.top_peers == [
        {
            "ip": "198.51.100.9",
            "flows": 12.0,
            "sent_to": True,
            "listed": "198.51.100.9",
            "list": f"{tmp_path / 'c2.csv'}:2",
        }
    ]
    assert found.top_ports == [{"port": 443, "flows": 12}]
    assert "sent to 1 address(es) listed as c2" in found.summary


def test_each_category_is_its_own_finding_and_ipv6_entries_match(tmp_path: Path) -> None:
    trace = Trace()
    trace.flows(local=BOT, remote=["203.0.113.5", "203.0.113.6"], n=4, remote_port=80)
    trace.flows(local=BOT, remote="2001:db8:c2::1", n=2, remote_port=8443)
    found = sorted(run(detector(tmp_path), trace), key=lambda f: f.kind)
    assert [(f.kind, f.counts["peers"]) for f in found] == [("c2", 1), ("malware", 2)]


def test_a_listed_scanner_only_knocking_is_inbound_and_low(tmp_path: Path) -> None:
    trace = Trace().flows(
        local=VICTIM,
        remote=[f"192.0.2.{i}" for i in range(1, 11)],
        n=10,
        outbound=False,
        local_port=22,
        remote_port=55000,
        packets=1,
        tcp_flags=0x02,
    )
    found = run(detector(tmp_path), trace)
    assert [(f.kind, f.direction, f.severity) for f in found] == [("scanner", "inbound", "low")]
    assert found[0].counts["peers"] == 10
    assert all(p["sent_to"] is False for p in found[0].top_peers)
    assert "no reply seen" in found[0].summary
    severe = run(detector(tmp_path, inbound_severity="medium"), trace)
    assert [f.severity for f in severe] == ["medium"]


def test_unlisted_neighbours_and_background_are_not_reported(tmp_path: Path) -> None:
    trace = Trace().background(records=20_000)
    trace.flows(local=BOT, remote=["198.51.100.8", "198.51.100.10", "192.0.2.128"], n=30)
    assert run(detector(tmp_path), trace) == []


def test_sampled_contacts_count_as_the_flows_they_stand_for(tmp_path: Path) -> None:
    trace = Trace().flows(local=BOT, remote="198.51.100.9", n=1, packets=1, sampling=512)
    trace.flows(local=BOT, remote="198.51.100.9", n=2, packets=3)
    found = run(detector(tmp_path), trace)
    assert [(f.kind, f.counts["flows"]) for f in found] == [("c2", 514)]


def test_a_list_from_a_url_is_reloaded_every_refresh_minutes_of_wall_time(
    served: tuple[str, Path],
) -> None:
    base, root = served
    (root / "drop.txt").write_text("; list\n192.0.2.0/24 ; SBL1\n", encoding="utf-8")
    clock = Clock()
    settings = ThreatIntelSettings(
        lists=[ThreatList(source=f"{base}/drop.txt", category="spam-source")], refresh_minutes=30
    )
    intel = ThreatIntelDetector(settings, root, clock)
    trace = Trace().flows(local=BOT, remote="198.51.100.200", n=3)
    assert run(intel, trace) == []
    (root / "drop.txt").write_text("192.0.2.0/24\n198.51.100.200\n", encoding="utf-8")
    clock.now += 29 * 60
    assert run(intel, trace) == []
    clock.now += 60
    assert [f.kind for f in run(intel, trace)] == ["spam-source"]
    # The server goes away: the last list stays in use.
    (root / "drop.txt").unlink()
    clock.now += 30 * 60
    assert [f.kind for f in run(intel, trace)] == ["spam-source"]


def test_it_runs_only_with_lists() -> None:
    settings = DetectSettings()
    assert make(settings, Path(".")) is None
    settings.threatintel.lists = [ThreatList(source="/nonexistent/list.txt")]
    settings.threatintel.enabled = False
    assert make(settings, Path(".")) is None
