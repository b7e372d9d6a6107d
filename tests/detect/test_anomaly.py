"""Anomaly detector: an instance far from its own hour-of-week baseline, and the many
ways of being busy that are not that."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hostwarden.core.config_detect import AnomalySettings, DetectSettings
from hostwarden.detect.baseline import Baselines
from hostwarden.detect.detectors.anomaly import (
    BASELINE_FILE,
    METRICS,
    AnomalyDetector,
    _distinct_peers,
    make,
)
from hostwarden.detect.engine import Engine
from hostwarden.detect.frame import group_by
from tests.detect.support import T0, Trace, run

WINDOW_MS = 300_000
WEB1, WEB2 = "100.64.30.1", "100.64.30.2"


def detector(**overrides: object) -> AnomalyDetector:
    settings = AnomalySettings(**overrides)
    baselines = Baselines(
        METRICS,
        window_seconds=settings.window_seconds,
        alpha=settings.alpha,
        capacity=settings.max_baselines,
    )
    return AnomalyDetector(settings, baselines)


def traffic(
    trace: Trace,
    *,
    local: str,
    pps: int,
    window: int,
    peers: int = 20,
    records: int = 60,
    sampling: int = 1,
    instance_id: int = 70,
    bytes_per_packet: int = 500,
) -> Trace:
    """``pps`` outbound from ``local`` during the ``window``-th 5-minute window from T0,
    to ``peers`` distinct hosts, in ``records`` records."""
    remotes = [f"198.51.{i // 250}.{i % 250 + 1}" for i in range(peers)]
    return trace.flows(
        local=local,
        remote=remotes,
        n=records,
        packets=pps * 300 // records // sampling,
        bytes_per_packet=bytes_per_packet,
        start_ms=T0 + window * WINDOW_MS + 1000,
        spread_ms=WINDOW_MS - 10_000,
        sampling=sampling,
        customer_id=7,
        instance_id=instance_id,
    )


def usual_weeks(trace: Trace, windows: int = 3, **options: object) -> Trace:
    """The instance's usual traffic: 1,000 pps from each of its two addresses."""
    for window in range(windows):
        traffic(trace, local=WEB1, pps=1000, window=window, **options)  # type: ignore[arg-type]
        traffic(trace, local=WEB2, pps=1000, window=window, **options)  # type: ignore[arg-type]
    return trace


def test_an_instance_far_above_its_usual_packet_rate_is_found() -> None:
    trace = usual_weeks(Trace().background(records=5000, seconds=1200))
    traffic(trace, local=WEB1, pps=1000, window=3)
    # Small packets: the bandwidth stays near its usual level, only pps is far off.
    traffic(trace, local=WEB2, pps=24_000, window=3, bytes_per_packet=40)
    findings = run(detector(), trace)
    assert [(f.category, f.kind, f.ip, f.window_start_ms) for f in findings] == [
        ("anomaly", "pps", WEB2, T0 + 3 * WINDOW_MS)
    ]
    found = findings[0]
    assert (found.customer_id, found.instance_id, found.direction) == (7, 70, "outbound")
    assert found.counts["pps"] == 25_000
    assert found.counts["baseline_pps"] == 2000
    assert found.counts["ratio"] == 12.5
    assert found.counts["addresses"] == 2
    assert found.top_peers[0]["ip"].startswith("198.51.0.")
    assert "instance 70 (100.64.30.2) carried 25,000 pps" in found.summary
    assert "12.5× its usual 2,000 pps for Monday 12:00 UTC" in found.summary


def test_an_instance_suddenly_talking_to_many_peers_is_found() -> None:
    trace = usual_weeks(Trace())
    traffic(trace, local=WEB1, pps=2000, window=3, peers=3000, records=3000)
    findings = run(detector(), trace)
    assert [(f.kind, f.counts["peers"], f.counts["baseline_peers"]) for f in findings] == [
        ("peers", 3000, 20)
    ]


def test_usual_traffic_and_background_raise_nothing() -> None:
    trace = usual_weeks(Trace().background(records=5000, seconds=1200), windows=4)
    assert run(detector(), trace) == []


def test_nothing_before_the_slot_has_its_observations() -> None:
    trace = usual_weeks(Trace(), windows=2)
    traffic(trace, local=WEB2, pps=30_000, window=2)
    assert run(detector(), trace) == []


def test_a_rise_within_the_factor_or_under_the_floors_is_not_an_anomaly() -> None:
    trace = usual_weeks(Trace())
    traffic(trace, local=WEB1, pps=14_000, window=3)  # 7.5 × its 2,000 pps
    # A quiet instance: 5 pps to 900 pps, 180 ×, but under the 1,000 pps floor.
    for window in range(3):
        traffic(trace, local="100.64.31.1", pps=5, window=window, instance_id=71, records=3)
    traffic(trace, local="100.64.31.1", pps=900, window=3, instance_id=71, bytes_per_packet=40)
    assert run(detector(), trace) == []


def test_the_baseline_is_the_instances_across_its_addresses() -> None:
    trace = Trace()
    for window in range(3):
        traffic(trace, local=WEB1, pps=2000, window=window)
        traffic(trace, local="100.64.32.1", pps=2000, window=window, instance_id=72)
    # Instance 70 moved its traffic to its other address: nothing unusual for it.
    traffic(trace, local=WEB2, pps=2000, window=3)
    # Instance 72's new address sends 15 × its usual.
    traffic(trace, local="100.64.32.2", pps=30_000, window=3, instance_id=72)
    findings = run(detector(), trace)
    assert [(f.instance_id, f.ip, f.counts["addresses"]) for f in findings] == [
        (72, "100.64.32.2", 1)
    ]


def test_an_address_without_an_instance_has_its_own_baseline() -> None:
    trace = Trace()
    for window in range(3):
        traffic(trace, local="100.64.40.4", pps=1500, window=window, instance_id=-1)
    traffic(trace, local="100.64.40.4", pps=20_000, window=3, instance_id=-1)
    findings = run(detector(), trace)
    assert [(f.ip, f.instance_id, f.kind) for f in findings] == [("100.64.40.4", None, "pps")]
    assert findings[0].summary.startswith("100.64.40.4 carried 20,000 pps")


def test_a_new_sampling_rate_is_not_an_anomaly_but_a_sampled_spike_is() -> None:
    trace = usual_weeks(Trace())
    for window in range(3):
        traffic(trace, local="100.64.33.1", pps=2000, window=window, instance_id=73)
    # The exporter now samples 1:1000: the same rates in a tenth of the records.
    traffic(trace, local=WEB1, pps=2000, window=3, records=6, sampling=1000)
    traffic(
        trace, local="100.64.33.1", pps=40_000, window=3, records=6, sampling=1000, instance_id=73
    )
    findings = run(detector(), trace)
    assert [(f.instance_id, f.kind, f.counts["pps"]) for f in findings] == [(73, "pps", 40_000)]


def test_the_baseline_is_kept_in_its_own_file_across_runs(tmp_path: Path) -> None:
    settings = DetectSettings()
    first = make(settings, tmp_path)
    assert first is not None
    assert Engine(settings, [first], strict=True).feed_all(usual_weeks(Trace()).batches()) == []
    assert (tmp_path / "detect" / BASELINE_FILE).exists()
    assert BASELINE_FILE != "baselines.npz"
    second = make(settings, tmp_path)
    assert second is not None
    spike = traffic(Trace(), local=WEB2, pps=30_000, window=2016)  # a week later
    findings = run(second, spike, settings)
    assert [(f.kind, f.counts["baseline_pps"]) for f in findings] == [("pps", 2000)]


def test_disabled_by_its_settings() -> None:
    settings = DetectSettings()
    settings.anomaly.enabled = False
    assert make(settings, Path(".")) is None


def test_distinct_peers_are_counted_exactly_on_mixed_families() -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    owner = rng.integers(0, 300, n)
    v4 = rng.random(n) < 0.7
    hi = np.where(v4, 0, rng.integers(0, 4, n) + 0x20010DB8_00000000).astype(np.uint64)
    lo = np.where(v4, 0xFFFF_0000_0000 + rng.integers(0, 2000, n), rng.integers(0, 2000, n)).astype(
        np.uint64
    )
    groups = group_by(owner)
    assert _distinct_peers(groups, hi, lo).tolist() == groups.distinct(hi, lo).tolist()
