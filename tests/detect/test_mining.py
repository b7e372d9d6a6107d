"""Mining detector: contacts with pools from feed files, long-lived Stratum connections,
and the traffic that is neither."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hostwarden.core.config_detect import DetectSettings, MiningSettings
from hostwarden.detect.detectors.mining import MiningDetector, make
from hostwarden.errors import ConfigError
from tests.detect.support import T0, Trace, of, run

MINER = "100.64.4.4"
POOLS = """\
# Pools from incident reports.
198.51.100.7:3333
198.51.100.7:14444
203.0.113.64/28
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def detector(
    tmp_path: Path, text: str = POOLS, clock: Clock | None = None, **overrides: object
) -> MiningDetector:
    (tmp_path / "pools.txt").write_text(text, encoding="utf-8")
    settings = MiningSettings(feeds=[Path("pools.txt")], **overrides)
    return MiningDetector(settings, tmp_path, clock or Clock())


def stratum_session(
    trace: Trace, *, minutes: int, remote: str = "192.0.2.99", port: int = 3333, start_ms: int = T0
) -> Trace:
    """One miner connection exported as a record a minute (60 s active timeout)."""
    return trace.flows(
        local=MINER,
        remote=remote,
        n=minutes,
        remote_port=port,
        local_port=50505,
        packets=30,
        start_ms=start_ms,
        spread_ms=minutes * 60_000,
        duration_ms=60_000,
    )


def test_a_pool_from_the_feed_is_found_with_the_line_that_names_it(tmp_path: Path) -> None:
    trace = Trace().background(records=5000)
    trace.flows(
        local=MINER, remote="198.51.100.7", n=6, remote_port=3333, customer_id=4, instance_id=40
    )
    trace.flows(local=MINER, remote="203.0.113.70", n=2, remote_port=8080, customer_id=4)
    findings = of(run(detector(tmp_path), trace), "mining")
    assert len(findings) == 1
    found = findings[0]
    assert (found.ip, found.kind, found.severity, found.direction) == (
        MINER,
        "pool",
        "medium",
        "outbound",
    )
    assert (found.customer_id, found.instance_id) == (4, 40)
    assert found.counts["pools"] == 2 and found.counts["flows"] == 8
    feed = str(tmp_path / "pools.txt")
    assert found.top_peers == [
        {"ip": "198.51.100.7", "flows": 6.0, "listed": "198.51.100.7", "feed": f"{feed}:2"},
        {"ip": "203.0.113.70", "flows": 2.0, "listed": "203.0.113.64/28", "feed": f"{feed}:4"},
    ]
    assert found.top_ports == [{"port": 3333, "flows": 6}, {"port": 8080, "flows": 2}]


def test_a_listed_address_on_another_port_and_unlisted_neighbours_are_not_pools(
    tmp_path: Path,
) -> None:
    trace = Trace().background(records=5000)
    # The pool operator's web site on the same address.
    trace.flows(local=MINER, remote="198.51.100.7", n=20, remote_port=443)
    trace.flows(local=MINER, remote=["198.51.100.8", "203.0.113.80"], n=20, remote_port=3333)
    assert run(detector(tmp_path), trace) == []


def test_one_sampled_record_is_enough_and_counts_its_sampling(tmp_path: Path) -> None:
    trace = Trace().flows(
        local=MINER, remote="198.51.100.7", n=1, remote_port=14444, packets=1, sampling=1000
    )
    found = run(detector(tmp_path), trace)
    assert [(f.kind, f.counts["flows"]) for f in found] == [("pool", 1000)]


def test_replies_from_the_pool_count_too(tmp_path: Path) -> None:
    trace = Trace().flows(
        local=MINER,
        remote="198.51.100.7",
        n=3,
        outbound=False,
        local_port=50505,
        remote_port=3333,
    )
    assert [f.kind for f in run(detector(tmp_path), trace)] == ["pool"]


def test_a_long_stratum_connection_to_an_unlisted_host_is_the_weaker_signal(
    tmp_path: Path,
) -> None:
    trace = stratum_session(Trace().background(records=5000), minutes=15)
    findings = of(run(detector(tmp_path), trace), "mining", MINER)
    # Ten minutes of conversation are reached with the record ending at T0 + 600 s.
    assert [f.window_start_ms - T0 for f in findings] == [600_000 + 60_000 * i for i in range(6)]
    assert {(f.kind, f.severity) for f in findings} == {("stratum-port", "low")}
    assert findings[0].counts == {"connections": 1, "seconds": 600}
    assert findings[-1].counts == {"connections": 1, "seconds": 900}
    assert findings[0].top_peers[0]["ip"] == "192.0.2.99"
    assert findings[0].top_ports == [{"port": 3333}]


def test_short_visits_to_stratum_ports_and_long_flows_elsewhere_are_not_mining(
    tmp_path: Path,
) -> None:
    trace = Trace()
    stratum_session(trace, minutes=9)  # one minute short
    # A developer's service on 4444, visited in 30 s connections for an hour.
    trace.flows(
        local="100.64.4.5",
        remote="192.0.2.50",
        n=60,
        remote_port=4444,
        local_port=np.arange(40000, 40060),
        duration_ms=30_000,
        spread_ms=3_600_000,
    )
    # An hour-long download on 443.
    stratum_session(trace, minutes=60, port=443, remote="192.0.2.98")
    assert run(detector(tmp_path), trace) == []


def test_a_pause_longer_than_the_gap_starts_a_new_connection(tmp_path: Path) -> None:
    trace = stratum_session(Trace(), minutes=6)
    # Silent for ten minutes, then six more minutes on the same 5-tuple.
    stratum_session(trace, minutes=6, start_ms=T0 + 16 * 60_000)
    assert run(detector(tmp_path), trace) == []
    joined = stratum_session(Trace(), minutes=6)
    stratum_session(joined, minutes=6, start_ms=T0 + 8 * 60_000)  # a two-minute pause
    found = run(detector(tmp_path), joined)
    assert [f.counts["seconds"] for f in found] == [600, 660, 720, 780, 840]


def test_an_address_with_a_pool_finding_gets_no_second_port_finding(tmp_path: Path) -> None:
    trace = stratum_session(Trace(), minutes=12)
    trace.flows(local=MINER, remote="203.0.113.65", n=3, remote_port=3333, start_ms=T0 + 660_000)
    found = run(detector(tmp_path), trace)
    assert [(f.window_start_ms - T0, f.kind) for f in found] == [
        (600_000, "stratum-port"),
        (660_000, "pool"),
        (720_000, "stratum-port"),
    ]
    assert run(detector(tmp_path, stratum_ports=[]), trace)[0].kind == "pool"


def test_feeds_are_reread_when_the_file_changes_and_kept_when_it_breaks(tmp_path: Path) -> None:
    clock = Clock()
    mining = detector(tmp_path, clock=clock)
    first = Trace().flows(local=MINER, remote="192.0.2.10", n=3, remote_port=3333)
    assert run(mining, first) == []
    (tmp_path / "pools.txt").write_text(POOLS + "192.0.2.10\n", encoding="utf-8")
    clock.now += 30  # checked once a minute of wall time
    assert run(mining, first) == []
    clock.now += 30
    assert [f.kind for f in run(mining, first)] == ["pool"]
    (tmp_path / "pools.txt").write_text("192.0.2.10\npool.example.net\n", encoding="utf-8")
    clock.now += 60
    assert [f.kind for f in run(mining, first)] == ["pool"]


def test_settings_decide_whether_it_runs_and_a_broken_feed_stops_it_at_start(
    tmp_path: Path,
) -> None:
    settings = DetectSettings()
    assert make(settings, tmp_path) is not None  # the port signal needs no feed
    settings.mining.stratum_ports = []
    assert make(settings, tmp_path) is None
    settings.mining.enabled = False
    assert make(settings, tmp_path) is None
    with pytest.raises(ConfigError, match=r"pools.txt:2: 'pool.example.net' is a host name"):
        detector(tmp_path, "192.0.2.1\npool.example.net:3333\n")
