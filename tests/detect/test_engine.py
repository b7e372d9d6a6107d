"""The engine: windows by end time, the watermark, late records, full windows, flush,
transit records, and a detector that fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hostwarden.core.config_detect import DetectSettings
from hostwarden.detect.engine import Engine
from hostwarden.detect.findings import Finding
from hostwarden.detect.frame import Frame, group_by, top_per_group
from hostwarden.detect.plugins import load_detectors
from hostwarden.errors import ConfigError
from hostwarden.flows.schema import LOCAL_NONE, LOCAL_SRC
from tests.detect.support import T0, Trace


class Recorder:
    """A detector that keeps every frame it is given."""

    name = "recorder"

    def __init__(self, window_seconds: int = 10) -> None:
        self.window_seconds = window_seconds
        self.frames: list[Frame] = []

    def evaluate(self, frame: Frame) -> list[Finding]:
        self.frames.append(frame)
        return []


def settings(**overrides: object) -> DetectSettings:
    return DetectSettings(**overrides)  # type: ignore[arg-type]


def test_records_go_to_the_window_of_their_end_time_and_windows_close_on_the_watermark() -> None:
    recorder = Recorder(10)
    engine = Engine(settings(lateness_seconds=4), [recorder])
    # 2,000 records ending over 30 s (T0 is a whole 10 s): windows T0, T0+10, T0+20.
    trace = Trace().flows(
        local="100.64.0.1", remote="192.0.2.1", n=2000, spread_ms=30_000, duration_ms=0
    )
    batches = trace.batches(500)
    engine.feed(batches[0])  # ends up to T0+7.5 s: watermark T0+3.5 s, nothing closed
    assert recorder.frames == []
    engine.feed(batches[1])  # up to T0+15 s: watermark T0+11 s closes [T0, T0+10)
    assert [(f.start_ms - T0, len(f)) for f in recorder.frames] == [(0, 667)]
    engine.feed(batches[2])
    engine.feed(batches[3])
    assert [f.start_ms - T0 for f in recorder.frames] == [0, 10_000]
    engine.flush()
    assert [(f.start_ms - T0, len(f)) for f in recorder.frames] == [
        (0, 667),
        (10_000, 667),
        (20_000, 666),
    ]
    assert sum(len(f) for f in recorder.frames) == 2000
    assert all(f.seconds == 10 and not f.early for f in recorder.frames)


def test_a_record_for_a_closed_window_is_counted_late_and_left_out() -> None:
    recorder = Recorder(10)
    engine = Engine(settings(lateness_seconds=0), [recorder])
    engine.feed(
        Trace().flows(local="100.64.0.1", remote="192.0.2.1", n=10, start_ms=T0 + 25_000).batch()
    )
    late = Trace().flows(local="100.64.0.1", remote="192.0.2.1", n=3, start_ms=T0 + 1_000).batch()
    engine.feed(late)
    engine.flush()
    assert engine.stats.late == 3
    assert sum(len(f) for f in recorder.frames) == 10


def test_windows_of_each_length_are_kept_apart() -> None:
    short, long_ = Recorder(10), Recorder(300)
    engine = Engine(settings(), [short, long_])
    engine.feed_all(
        Trace().flows(local="100.64.0.1", remote="192.0.2.1", n=600, spread_ms=600_000).batches(50)
    )
    assert len(short.frames) == 60
    # T0 is 12:00:00, a whole 5 minutes: two 300 s windows.
    assert [len(f) for f in long_.frames] == [300, 300]


def test_a_full_window_is_judged_early_and_nothing_is_lost() -> None:
    recorder = Recorder(300)
    engine = Engine(settings(max_window_records=1000), [recorder])
    engine.feed_all(
        Trace().flows(local="100.64.0.1", remote="192.0.2.1", n=2500, spread_ms=60_000).batches(400)
    )
    assert sum(len(f) for f in recorder.frames) == 2500
    assert [f.early for f in recorder.frames] == [True, True, False]
    assert engine.stats.early == 2


def test_transit_records_are_not_judged_and_frames_are_turned_to_the_provider_side() -> None:
    recorder = Recorder(10)
    trace = Trace()
    trace.flows(local="100.64.0.1", remote="192.0.2.1", n=5, local_port=40000, remote_port=443)
    trace.flows(
        local="100.64.0.2",
        remote="192.0.2.2",
        n=7,
        outbound=False,
        local_port=22,
        remote_port=50000,
    )
    batch = trace.batch()
    outbound_rows = np.flatnonzero(batch["local_side"] == LOCAL_SRC)
    batch.columns["local_side"][outbound_rows[:2]] = LOCAL_NONE
    engine = Engine(settings(), [recorder])
    engine.feed_all([batch])
    (frame,) = recorder.frames
    assert engine.stats.transit == 2 and len(frame) == 10
    inbound = ~frame["outbound"]
    assert int(inbound.sum()) == 7
    assert set(frame["local_port"][inbound].tolist()) == {22}
    assert set(frame["remote_port"][inbound].tolist()) == {50000}
    assert set(frame["local_port"][~inbound].tolist()) == {40000}
    assert int((~inbound).sum()) == 3


def test_a_record_stands_for_its_sampling_rate_in_flows() -> None:
    recorder = Recorder(10)
    trace = Trace()
    trace.flows(local="100.64.0.1", remote="192.0.2.1", n=4, sampling=1, packets=3)
    trace.flows(local="100.64.0.1", remote="192.0.2.1", n=4, sampling=1000, packets=3)
    Engine(settings(), [recorder]).feed_all([trace.batch()])
    (frame,) = recorder.frames
    assert int(frame["flows"].sum()) == 4 + 4000
    assert int(frame["packets"].sum()) == 12 + 12_000


class Failing(Recorder):
    name = "failing"

    def evaluate(self, frame: Frame) -> list[Finding]:
        raise RuntimeError("broken plugin")


def test_a_failing_detector_is_counted_and_the_others_still_run() -> None:
    recorder = Recorder(10)
    engine = Engine(settings(), [Failing(10), recorder])
    engine.feed_all([Trace().flows(local="100.64.0.1", remote="192.0.2.1", n=5).batch()])
    assert engine.stats.errors == 1 and len(recorder.frames) == 1
    strict = Engine(settings(), [Failing(10)], strict=True)
    with pytest.raises(RuntimeError, match="broken plugin"):
        strict.feed_all([Trace().flows(local="100.64.0.1", remote="192.0.2.1", n=5).batch()])


def test_group_helpers_count_sum_distinct_and_top() -> None:
    local = np.array([5, 5, 5, 9, 9, 5], np.uint64)
    peer = np.array([1, 1, 2, 3, 3, 4], np.uint64)
    weight = np.array([10, 20, 5, 1, 1, 7], np.uint64)
    groups = group_by(local)
    assert groups.size.tolist() == [4, 2]
    assert groups.sum(weight).tolist() == [42.0, 2.0]
    assert groups.distinct(peer).tolist() == [3, 1]
    assert groups.distinct(peer, mask=weight > 5).tolist() == [2, 0]
    top = top_per_group(groups, np.array([0]), [peer], weight, 2)
    assert top == {0: [((1,), 30.0), ((4,), 7.0)]}


def test_builtin_detectors_load_and_a_wrong_window_is_refused(tmp_path: Path) -> None:
    names = {d.name for d in load_detectors(DetectSettings(), tmp_path)}
    assert "scan" in names
    off = DetectSettings()
    off.scan.enabled = False
    assert "scan" not in {d.name for d in load_detectors(off, tmp_path)}
    with pytest.raises(ValueError, match="window_seconds"):
        DetectSettings.model_validate({"scan": {"window_seconds": 42}})
    with pytest.raises(ValueError, match="unknown kind"):
        DetectSettings.model_validate({"tunnels": {"kinds": ["carrier-pigeon"]}})
    assert ConfigError  # the plugin path's error type, raised for a bad plugin


@pytest.mark.parametrize("wide", [False, True])
def test_group_by_agrees_with_a_plain_sort_packed_or_not(wide: bool) -> None:
    rng = np.random.default_rng(3)
    n = 5000
    hi = rng.integers(0, 2**63, n, dtype=np.uint64) if wide else np.zeros(n, np.uint64)
    lo = rng.integers(0, 50, n).astype(np.uint64) | np.uint64(0xFFFF << 32)
    port = rng.integers(0, 4, n).astype(np.uint16)
    owner = rng.integers(-1, 3, n).astype(np.int64)
    groups = group_by(hi, lo, port, owner)
    keys = list(zip(hi.tolist(), lo.tolist(), port.tolist(), owner.tolist(), strict=True))
    assert len(groups) == len(set(keys))
    # Rows of one group share the key; the group's first row is where the key first occurs.
    first_seen: dict[tuple[int, ...], int] = {}
    for row, key in enumerate(keys):
        first_seen.setdefault(key, row)
    assert sorted(groups.first.tolist()) == sorted(first_seen.values())
    for row in range(0, n, 97):
        assert keys[groups.first[groups.inverse[row]]] == keys[row]
    assert groups.size.sum() == n


class Peeker(Recorder):
    """A detector that also looks at open windows: keeps what each look showed."""

    name = "peeker"

    def __init__(self, window_seconds: int = 10) -> None:
        super().__init__(window_seconds)
        self.looks: list[tuple[int, int, int]] = []

    def peek(self, new: Frame, so_far: Frame) -> list[Finding]:
        self.looks.append((new.start_ms - T0, len(new), len(so_far)))
        assert new.early and so_far.early
        return []


def test_open_windows_are_shown_their_new_records_every_peek_seconds() -> None:
    peeker = Peeker(10)
    engine = Engine(settings(lateness_seconds=30, peek_seconds=2), [peeker])
    # One record every 10 ms over 10 s, fed 0.5 s at a time: a look every 2 s of stream.
    trace = Trace().flows(
        local="100.64.0.1", remote="192.0.2.1", n=1000, spread_ms=10_000, duration_ms=0
    )
    for batch in trace.batches(50):
        engine.feed(batch)
    # The first batch is looked at at once, then every 2 s of newest end time.
    assert [look[0] for look in peeker.looks] == [0] * len(peeker.looks)
    assert len(peeker.looks) == 5
    assert sum(look[1] for look in peeker.looks) <= 1000
    assert [look[2] for look in peeker.looks] == sorted(look[2] for look in peeker.looks)
    assert all(new <= so_far for _, new, so_far in peeker.looks)
    assert engine.stats.peeks == 5
    assert peeker.frames == []  # the window is still open (lateness 30 s)
    engine.flush()
    assert [len(f) for f in peeker.frames] == [1000]


def test_a_closed_or_full_window_is_not_peeked_at_and_peeks_can_be_turned_off() -> None:
    trace = Trace().flows(
        local="100.64.0.1", remote="192.0.2.1", n=3000, spread_ms=60_000, duration_ms=0
    )
    peeker = Peeker(10)
    engine = Engine(settings(lateness_seconds=0, peek_seconds=1), [peeker])
    engine.feed_all(trace.batches(100))
    # Every look is at a window not yet closed when it was made: its records so far are
    # fewer than the window's whole.
    whole = {f.start_ms - T0: len(f) for f in peeker.frames}
    assert peeker.looks and all(so_far <= whole[start] for start, _, so_far in peeker.looks)

    off = Peeker(10)
    engine = Engine(settings(peek_seconds=0), [off])
    engine.feed_all(trace.batches(100))
    assert off.looks == [] and engine.stats.peeks == 0 and len(off.frames) == 6


class FailingPeeker(Peeker):
    def peek(self, new: Frame, so_far: Frame) -> list[Finding]:
        raise RuntimeError("broken peek")


def test_a_failing_peek_is_counted_and_the_window_is_still_judged_at_close() -> None:
    failing = FailingPeeker(10)
    engine = Engine(settings(), [failing])
    engine.feed_all(
        Trace().flows(local="100.64.0.1", remote="192.0.2.1", n=100, spread_ms=5000).batches(10)
    )
    assert engine.stats.errors >= 1
    assert [len(f) for f in failing.frames] == [100]


def test_of_addresses_picks_the_records_of_those_addresses_from_every_piece() -> None:
    from hostwarden.detect.frame import Columns, project
    from tests.detect.support import hilo

    addresses = ["100.64.0.1", "100.64.0.2", "2001:db8::1", "2001:db8::2"]
    trace = Trace().flows(local=addresses, remote="192.0.2.1", n=400, spread_ms=9000)
    pieces = [project(batch) for batch in trace.batches(150)]
    frame = Frame(10, T0, Columns(pieces), early=True, looked_ms=T0 + 5000)
    hi, lo = hilo(["100.64.0.2", "2001:db8::1"])
    mine = frame.of_addresses(hi, lo)
    assert len(mine) == 200
    assert (mine.seconds, mine.start_ms, mine.early, mine.looked_ms) == (10, T0, True, T0 + 5000)
    picked = set(zip(mine["local_hi"].tolist(), mine["local_lo"].tolist(), strict=True))
    assert picked == set(zip(hi.tolist(), lo.tolist(), strict=True))
    # The same low word under another high word (an IPv4 address and an IPv6 one that
    # ends alike) is not taken.
    hi_v6, lo_v6 = hilo(["2001:db8::1"])
    only_v6 = frame.of_addresses(hi_v6, lo_v6)
    assert len(only_v6) == 100 and set(only_v6["local_hi"].tolist()) == {int(hi_v6[0])}
    assert len(frame.of_addresses(*hilo(["203.0.113.9"]))) == 0
