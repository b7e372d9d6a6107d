"""Volumetric detector: floods out of and into customer addresses, per address and per
customer, against thresholds and against the address's own baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hostwarden.core.config_detect import DetectSettings, VolumetricSettings
from hostwarden.detect.baseline import Baselines
from hostwarden.detect.detectors.volumetric import (
    BASELINE_FILE,
    BASELINE_METRICS,
    VolumetricDetector,
    make,
)
from hostwarden.detect.engine import Engine
from hostwarden.detect.findings import Finding
from hostwarden.detect.frame import Frame, project
from tests.detect.support import T0, Trace, run

ATTACKER = "100.64.9.9"
VICTIM = "203.0.113.77"
#: Records spread over 9 s of the first 10 s window (they end 0.1 s after they start).
IN_WINDOW = 9000


def detector(**overrides: object) -> VolumetricDetector:
    settings = VolumetricSettings(**overrides)
    baselines = Baselines(
        BASELINE_METRICS,
        window_seconds=settings.window_seconds,
        alpha=settings.baseline_alpha,
        capacity=settings.baseline_max_addresses,
    )
    return VolumetricDetector(settings, baselines)


def flood(trace: Trace, *, pps: int, records: int = 1000, **options: object) -> Trace:
    """``pps`` packets per second from ATTACKER over one 10 s window, in ``records``
    records (unsampled packets per record: pps × 10 ÷ records ÷ sampling)."""
    sampling = int(options.get("sampling", 1))  # type: ignore[call-overload]
    per_record = pps * 10 // records // sampling
    options.setdefault("local", ATTACKER)
    options.setdefault("remote", VICTIM)
    options.setdefault("spread_ms", IN_WINDOW)
    options.setdefault("customer_id", 7)
    options.setdefault("instance_id", 70)
    return trace.flows(n=records, packets=per_record, **options)  # type: ignore[arg-type]


# --- outbound floods, by kind ----------------------------------------------------------------


def test_outbound_syn_flood_is_found_with_its_target() -> None:
    trace = Trace().background(records=4000, seconds=60)
    flood(trace, pps=60_000, tcp_flags=0x02, remote_port=80, bytes_per_packet=60)
    findings = run(detector(), trace)
    assert [(f.category, f.ip, f.kind) for f in findings] == [("ddos-out", ATTACKER, "syn-flood")]
    found = findings[0]
    assert found.direction == "outbound"
    assert (found.customer_id, found.instance_id) == (7, 70)
    assert found.counts["pps"] == 60_000
    assert found.counts["fps"] == 100
    assert found.counts["peers"] == 1
    assert found.top_peers == [{"ip": VICTIM, "packets": 600_000}]
    assert found.top_ports == [{"port": 80, "packets": 600_000}]
    assert found.suggested_action is None
    assert "SYN flood" in found.summary and "over the 50,000 pps threshold" in found.summary


def test_outbound_udp_flood_over_the_bandwidth_threshold() -> None:
    trace = Trace().background(records=2000, seconds=30)
    # 20,000 pps of 1,400-byte datagrams: 224 Mbit/s … below; 40,000 pps: 448 … below;
    # 45,000 pps of 1,400 bytes is 504 Mbit/s: over 500 Mbit/s, under 50,000 pps.
    flood(trace, pps=45_000, proto=17, tcp_flags=0, remote_port=27015, bytes_per_packet=1400)
    findings = run(detector(), trace)
    assert [(f.kind, f.ip) for f in findings] == [("udp-flood", ATTACKER)]
    assert findings[0].counts["mbps"] == 504
    assert "over the 500 Mbit/s threshold" in findings[0].summary
    assert "pps threshold" not in findings[0].summary


def test_outbound_icmp_flood() -> None:
    trace = flood(Trace(), pps=55_000, proto=1, tcp_flags=0, local_port=0, remote_port=0x0800)
    findings = run(detector(), trace)
    assert [f.kind for f in findings] == ["icmp-flood"]


def test_many_new_flows_alone_are_a_flood() -> None:
    # 6,000 flows/s of one small packet each: under the pps and Mbit/s thresholds.
    trace = flood(
        Trace(),
        pps=6_000,
        records=60_000,
        tcp_flags=0x1B,
        remote=[f"198.51.100.{i}" for i in (1, 2)],
    )
    findings = run(detector(), trace)
    assert [(f.kind, f.counts["fps"]) for f in findings] == [("volumetric", 6000)]
    assert findings[0].counts["peers"] == 2
    assert "over the 5,000 flows/s threshold" in findings[0].summary


def test_a_customer_running_an_abused_reflector_is_named_with_the_victim() -> None:
    trace = Trace().background(records=2000, seconds=30)
    # NTP monlist answers from port 123 to the spoofed source: the victim.
    flood(
        trace,
        pps=80_000,
        proto=17,
        tcp_flags=0,
        local_port=123,
        remote_port=np.arange(1000) % 50 + 40000,
        bytes_per_packet=468,
    )
    findings = run(detector(), trace)
    assert [(f.category, f.kind) for f in findings] == [("ddos-out", "reflection")]
    found = findings[0]
    assert found.top_ports[0]["port"] == 123
    assert found.top_peers[0]["ip"] == VICTIM
    assert "abused reflector" in found.summary and "UDP port 123" in found.summary


def test_inbound_reflection_attack_suggests_a_blackhole() -> None:
    target = "100.64.5.5"
    reflectors = [f"192.0.2.{i}" for i in range(1, 201)]
    trace = Trace().background(records=2000, seconds=30)
    flood(
        trace,
        pps=150_000,
        local=target,
        remote=reflectors,
        outbound=False,
        proto=17,
        tcp_flags=0,
        local_port=np.arange(1000) % 1000 + 20000,
        remote_port=53,
        bytes_per_packet=3000,
        customer_id=5,
        instance_id=50,
    )
    findings = run(detector(), trace)
    assert [(f.category, f.ip, f.kind) for f in findings] == [("ddos-in", target, "reflection")]
    found = findings[0]
    assert found.direction == "inbound"
    assert found.suggested_action == "blackhole 100.64.5.5/32"
    assert found.counts["peers"] == 200
    assert found.top_ports[0]["port"] == 53
    assert "target of a reflection attack" in found.summary


def test_inbound_syn_flood_against_an_ipv6_customer_suggests_a_128() -> None:
    target = "2001:db8:5::10"
    trace = flood(
        Trace(),
        pps=120_000,
        local=target,
        remote=[f"2001:db8:ffff::{i:x}" for i in range(1, 500)],
        outbound=False,
        tcp_flags=0x02,
        local_port=443,
        remote_port=np.arange(1000) + 1024,
    )
    findings = run(detector(), trace)
    assert [(f.category, f.kind) for f in findings] == [("ddos-in", "syn-flood")]
    assert findings[0].suggested_action == f"blackhole {target}/128"
    assert findings[0].top_ports == [{"port": 443, "packets": 1_200_000}]


# --- what is not an attack --------------------------------------------------------------------


def test_background_traffic_alone_raises_nothing() -> None:
    assert run(detector(), Trace().background(records=20_000, seconds=120)) == []


def test_just_below_every_threshold_raises_nothing() -> None:
    """Floods just under each threshold, evenly over the window, fed in batches as they
    end: nothing at close, and nothing early either (arrival rates included)."""
    trace = Trace().background(records=2000, seconds=30)
    even = {"spread_ms": 10_000, "duration_ms": 0}
    flood(trace, pps=49_000, tcp_flags=0x02, bytes_per_packet=60, **even)
    flood(
        trace,
        pps=35_000,
        local="100.64.9.10",
        proto=17,
        tcp_flags=0,
        bytes_per_packet=1400,
        **even,
    )
    flood(trace, pps=4_900, records=49_000, local="100.64.9.11", **even)
    flood(trace, pps=99_000, local="100.64.9.12", outbound=False, bytes_per_packet=1000, **even)
    assert run(detector(), trace, early=True) == []


def test_a_long_transfer_reported_on_its_active_timeout_is_not_a_flood() -> None:
    # A 30-minute backup at 80 Mbit/s, reported once as it ends inside the window: counting
    # all its bytes in 10 s would read 14 Gbit/s and 10,000 pps x 180.
    trace = Trace().flows(
        local="100.64.9.20",
        remote=VICTIM,
        n=1,
        packets=18_000_000,
        bytes_per_packet=1000,
        start_ms=T0 + 5000 - 1_800_000,
        duration_ms=1_800_000,
    )
    assert run(detector(), trace) == []
    # The same packets in a 10 s record are a flood.
    short = Trace().flows(local="100.64.9.20", remote=VICTIM, n=1, packets=1_800_000, start_ms=T0)
    assert [f.counts["pps"] for f in run(detector(), short)] == [180_000]


def test_a_busy_dns_server_below_the_thresholds_is_not_a_reflector() -> None:
    clients = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(2000)]
    trace = flood(
        Trace(), pps=30_000, records=4000, remote=clients, proto=17, tcp_flags=0, local_port=53
    )
    assert run(detector(), trace) == []


# --- sampling ---------------------------------------------------------------------------------


def test_mixed_sampling_rates_give_the_same_rates() -> None:
    # Two exporters see the attacker: one unsampled, one 1:1000; 30,000 pps each.
    mixed = Trace()
    flood(mixed, pps=30_000, records=1000, tcp_flags=0x02)
    flood(mixed, pps=30_000, records=10, sampling=1000, tcp_flags=0x02)
    plain = flood(Trace(), pps=60_000, records=1000, tcp_flags=0x02)
    found = run(detector(), mixed)
    assert [(f.kind, f.counts["pps"]) for f in found] == [("syn-flood", 60_000)]
    assert found[0].counts["flows"] == 1000 + 10 * 1000
    assert [f.counts["pps"] for f in run(detector(), plain)] == [60_000]
    # Just under: 24,500 + 24,500 pps.
    under = Trace()
    flood(under, pps=24_500, records=1000, tcp_flags=0x02)
    flood(under, pps=24_500, records=10, sampling=1000, tcp_flags=0x02)
    assert run(detector(), under) == []


def test_an_exporter_changing_its_sampling_rate_changes_nothing() -> None:
    trace = Trace()
    flood(trace, pps=70_000, records=70, sampling=100, start_ms=T0, proto=17, tcp_flags=0)
    flood(trace, pps=70_000, records=7, sampling=1000, start_ms=T0 + 10_000, proto=17, tcp_flags=0)
    findings = run(detector(), trace)
    assert [(f.window_start_ms, f.counts["pps"]) for f in findings] == [
        (T0, 70_000),
        (T0 + 10_000, 70_000),
    ]
    assert [f.kind for f in findings] == ["udp-flood", "udp-flood"]


# --- per customer -----------------------------------------------------------------------------


def customer_spread(trace: Trace, addresses: int, pps: int, customer_id: int = 8) -> Trace:
    """``addresses`` addresses of one customer, each sending ``pps`` (the first 10% more)."""
    for i in range(addresses):
        flood(
            trace,
            pps=pps + (pps // 10 if i == 0 else 0),
            records=50,
            local=f"100.64.20.{i + 1}",
            remote=VICTIM,
            tcp_flags=0x02,
            customer_id=customer_id,
            instance_id=800 + i,
        )
    return trace


def test_a_customer_attacking_from_many_small_addresses_is_found() -> None:
    trace = customer_spread(Trace().background(records=2000, seconds=30), 30, 4000)
    findings = run(detector(), trace)
    assert [(f.category, f.kind, f.ip) for f in findings] == [
        ("ddos-out", "syn-flood", "100.64.20.1")
    ]
    found = findings[0]
    assert (found.customer_id, found.instance_id) == (8, 800)
    assert found.counts["addresses"] == 30
    assert found.counts["pps"] == 30 * 4000 + 400
    assert found.counts["busiest_pps"] == 4400
    assert "customer 8's 30 addresses together" in found.summary
    assert "100.64.20.1" in found.summary
    assert "over the customer 100,000 pps threshold" in found.summary


def test_a_customer_just_under_its_threshold_is_not_found() -> None:
    trace = customer_spread(Trace(), 24, 4000)  # 96,400 pps
    assert run(detector(), trace) == []


def test_a_customer_with_an_address_already_reported_gets_no_second_finding() -> None:
    trace = customer_spread(Trace(), 30, 4000)
    flood(trace, pps=60_000, local="100.64.20.200", customer_id=8, instance_id=899)
    findings = run(detector(), trace)
    assert [f.ip for f in findings] == ["100.64.20.200"]


# --- the address's own baseline ---------------------------------------------------------------


def usual(trace: Trace, local: str, pps: int, windows: int) -> Trace:
    """One record a window for ``windows`` windows of 10 s from T0 at ``pps``."""
    return trace.flows(
        local=local, remote=VICTIM, n=windows, packets=pps * 10, spread_ms=windows * 10_000
    )


def spike(trace: Trace, local: str, pps: int, window: int) -> Trace:
    return trace.flows(
        local=local, remote=VICTIM, n=1, packets=pps * 10, start_ms=T0 + window * 10_000 + 500
    )


def test_an_address_far_above_its_own_baseline_is_found() -> None:
    trace = Trace()
    usual(trace, ATTACKER, 200, 30)
    spike(trace, ATTACKER, 6000, 30)
    # Always at 6,000 pps: its normal.
    usual(trace, "100.64.9.30", 6000, 31)
    # New, no baseline yet: only the absolute thresholds apply.
    spike(trace, "100.64.9.31", 6000, 30)
    findings = run(detector(), trace)
    assert [(f.ip, f.window_start_ms, f.kind) for f in findings] == [
        (ATTACKER, T0 + 300_000, "volumetric")
    ]
    assert findings[0].counts["baseline_pps"] == 200
    assert findings[0].counts["baseline_ratio"] == 30
    assert "30× its usual 200 pps for Monday 12:00 UTC" in findings[0].summary


def test_an_attack_does_not_become_the_addresses_normal() -> None:
    trace = Trace()
    usual(trace, ATTACKER, 200, 30)
    for window in (30, 31, 32):
        spike(trace, ATTACKER, 6000, window)
    findings = run(detector(), trace)
    assert [f.window_start_ms for f in findings] == [T0 + w * 10_000 for w in (30, 31, 32)]
    assert [f.counts["baseline_ratio"] for f in findings] == [30, 29.5, 29.0]


def test_the_baseline_needs_its_observations_and_the_pps_floor() -> None:
    trace = Trace()
    usual(trace, ATTACKER, 200, 29)  # one window short of 30
    spike(trace, ATTACKER, 6000, 29)
    usual(trace, "100.64.9.30", 100, 30)
    spike(trace, "100.64.9.30", 4900, 30)  # 49 ×, under the 5,000 pps floor
    assert run(detector(), trace) == []


def test_the_baseline_is_saved_on_flush_and_read_by_the_next_run(tmp_path: Path) -> None:
    settings = DetectSettings()
    first = make(settings, tmp_path)
    assert first is not None
    engine = Engine(settings, [first], strict=True)
    assert engine.feed_all(usual(Trace(), ATTACKER, 200, 30).batches()) == []
    path = tmp_path / "detect" / BASELINE_FILE
    assert path.exists()
    second = make(settings, tmp_path)
    assert second is not None and len(second.baselines) == 1
    found = run(second, spike(Trace(), ATTACKER, 6000, 40), settings)
    assert [(f.ip, f.counts["baseline_pps"]) for f in found] == [(ATTACKER, 200)]


def test_disabled_by_its_settings() -> None:
    settings = DetectSettings()
    settings.volumetric.enabled = False
    assert make(settings, Path(".")) is None


@pytest.mark.parametrize("field", ["out_pps", "out_mbps", "out_fps"])
def test_thresholds_come_from_the_settings(field: str) -> None:
    trace = flood(Trace(), pps=1000, records=100, bytes_per_packet=100)
    # 1,000 pps, 0.8 Mbit/s, 10 flows/s: each alone is enough when lowered to that.
    limit = {"out_pps": 1000, "out_mbps": 0.8, "out_fps": 10}[field]
    assert len(run(detector(**{field: limit}), trace)) == 1
    assert run(detector(), trace) == []


def test_a_window_cut_short_because_it_was_full_still_alerts_but_is_not_learnt() -> None:
    trace = flood(Trace(), pps=60_000, tcp_flags=0x02)
    frame = Frame(seconds=10, start_ms=T0, columns=project(trace.batch()), early=True)
    found = detector()
    assert [f.kind for f in found.evaluate(frame)] == ["syn-flood"]
    assert len(found.baselines) == 0
    frame.early = False
    found.evaluate(frame)
    assert len(found.baselines) == 1


# --- early findings, while the window is open ---------------------------------------------


def test_a_flood_is_reported_while_its_window_is_still_open() -> None:
    """120,000 pps over the whole window, fed as records arrive (0.5 s a batch): the
    arrival rate shows it at the second look, 1 s in, long before the window closes (its
    end plus 30 s lateness)."""
    trace = Trace().background(records=2000, seconds=20)
    flood(trace, pps=120_000, records=2000, tcp_flags=0x02, spread_ms=10_000, duration_ms=0)
    engine = Engine(DetectSettings(), [detector()], strict=True)
    early: list[tuple[int, Finding]] = []
    closed: list[Finding] = []
    for batch in trace.batches(100):
        newest = int(batch["end"].max())
        for f in engine.feed(batch):
            if f.early:
                early.append((newest, f))
            else:
                closed.append(f)
    closed += engine.flush()
    assert [f.ip for _, f in early] == [ATTACKER]
    seen_by, first = early[0]
    assert (first.kind, first.category, first.window_start_ms) == ("syn-flood", "ddos-out", T0)
    assert seen_by - T0 < 3_000
    assert "arrived over the last" in first.summary
    assert "window still open" in first.summary
    assert first.as_dict()["early"] is True
    assert 1 <= first.counts["recent_seconds"] <= 3
    assert first.counts["pps"] == pytest.approx(120_000, rel=0.05)
    assert first.top_peers[0]["ip"] == VICTIM
    final = [f for f in closed if f.ip == ATTACKER]
    assert len(final) == 1 and not final[0].early
    assert final[0].counts["pps"] == 120_000


def test_an_ongoing_attack_is_reported_early_once_a_minute_and_at_every_close() -> None:
    # 200,000 pps for 80 s: 200 records a second of 1,000 packets each.
    trace = Trace().flows(
        local=ATTACKER,
        remote=VICTIM,
        n=16_000,
        packets=1000,
        spread_ms=80_000,
        duration_ms=0,
        remote_port=27015,
        proto=17,
    )
    findings = run(detector(), trace, size=200, early=True)
    early = [(f.window_start_ms - T0, f.ip) for f in findings if f.early]
    assert early == [(0, ATTACKER), (60_000, ATTACKER)]
    closes = [(f.window_start_ms - T0, f.ip) for f in findings if not f.early]
    assert closes == [(w * 10_000, ATTACKER) for w in range(8)]


def test_early_findings_come_inbound_too() -> None:
    trace = Trace().background(records=3000, seconds=30)
    flood(trace, pps=150_000, outbound=False, tcp_flags=0x02, spread_ms=10_000, duration_ms=0)
    findings = run(detector(), trace, size=100, early=True)
    assert [(f.category, f.ip, f.early) for f in findings] == [
        ("ddos-in", ATTACKER, True),
        ("ddos-in", ATTACKER, False),
    ]
    assert (
        findings[0].suggested_action == findings[1].suggested_action == (f"blackhole {ATTACKER}/32")
    )


def big_records(
    trace: Trace, count: int, *, end_ms: int, mbps: float, local: str = ATTACKER
) -> Trace:
    """``count`` records of 10 s each at ``mbps``, ending together at ``end_ms``: a
    backup's streams reported on their 10 s active timeout."""
    packets = int(mbps * 1e6 * 10 / 8 / 1400)
    return trace.flows(
        local=local,
        remote=VICTIM,
        n=count,
        packets=packets,
        bytes_per_packet=1400,
        start_ms=end_ms - 10_000,
        spread_ms=count,
        duration_ms=10_000,
        proto=6,
        remote_port=873,
    )


def test_a_few_big_records_arriving_together_are_not_a_burst() -> None:
    """Two 10 s records of a 200 Mbit/s transfer each arrive together: about 700 Mbit/s
    over the last 4 to 6 s of arrivals, 400 Mbit/s over their window. Too few records for
    an arrival rate (FastNetMon bans such hosts); with the guards lowered, it would be."""
    trace = Trace().background(records=4000, seconds=20, seed=3)
    big_records(trace, 2, end_ms=T0 + 6_000, mbps=200)
    # The same beside 150 small records: one big record holds most of the packets.
    other = "100.64.9.10"
    trace.flows(local=other, remote=VICTIM, n=150, packets=2, spread_ms=4000, start_ms=T0 + 2000)
    big_records(trace, 2, end_ms=T0 + 6_000, mbps=200, local=other)
    assert run(detector(), trace, size=200, early=True) == []
    loose = detector(recent_min_records=1)
    found = run(loose, trace, size=200, early=True)
    assert {(f.ip, f.category, f.early) for f in found} == {
        (ATTACKER, "ddos-out", True),
        ("100.64.9.10", "ddos-out", True),
    }
    assert all(f.counts["mbps"] > 500 for f in found)


def test_arrival_rates_can_be_turned_off_and_then_only_the_window_so_far_is_judged() -> None:
    trace = flood(Trace(), pps=120_000, records=2000, spread_ms=10_000, duration_ms=0)
    findings = run(detector(recent_seconds=0), trace, size=100, early=True)
    early = [f for f in findings if f.early]
    assert len(early) == 1 and "recent_seconds" not in early[0].counts
    # Its totals so far reach 50,000 pps × 10 s once about 4.2 s have arrived.
    assert 50_000 <= early[0].counts["pps"] < 60_000


def test_no_early_findings_when_peeks_are_off() -> None:
    trace = flood(Trace(), pps=120_000, records=2000, spread_ms=10_000)
    findings = run(detector(), trace, DetectSettings(peek_seconds=0), size=100, early=True)
    assert [f.early for f in findings] == [False]
