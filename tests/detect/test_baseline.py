"""Hour-of-week EWMA baselines: slots, weights, keys, bounds and the state file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from hostwarden.detect.baseline import (
    NO_INSTANCE,
    SLOTS,
    Baselines,
    Keys,
    hour_of_week,
    slot_text,
    window_share,
    window_weight,
)
from hostwarden.detect.frame import Frame
from tests.detect.support import T0

HOUR = 3_600_000
METRICS = ("pps", "bps", "fps", "peers")


def keys(*numbers: int, instance: int = NO_INSTANCE) -> Keys:
    """IPv4-mapped words of 10.0.x.y for each number, all with ``instance``."""
    lo = np.array([0xFFFF_0A00_0000 + n for n in numbers], np.uint64)
    return Keys(np.zeros(len(lo), np.uint64), lo, np.full(len(lo), instance, np.int64))


def values(*rows: float) -> np.ndarray:
    """One row per key, the same value in every metric."""
    return np.repeat(np.array(rows, np.float64)[:, None], len(METRICS), axis=1)


def baselines(path: Path | None = None, **overrides: object) -> Baselines:
    options: dict[str, object] = {"window_seconds": 300, "alpha": 0.2, "capacity": 1000}
    options.update(overrides)
    return Baselines(METRICS, path=path, **options)  # type: ignore[arg-type]


def test_slots_are_hours_of_the_week_from_monday_utc() -> None:
    # T0 is Monday 2026-05-04 12:00 UTC.
    assert hour_of_week(T0) == 12
    assert hour_of_week(T0 - 12 * HOUR) == 0
    assert hour_of_week(T0 + (6 * 24 + 11) * HOUR + 59 * 60_000) == SLOTS - 1
    assert hour_of_week(T0 + 7 * 24 * HOUR) == 12
    assert slot_text(12) == "Monday 12:00 UTC"
    assert slot_text(167) == "Sunday 23:00 UTC"


def test_an_hour_of_windows_weighs_alpha_whatever_the_window_length() -> None:
    for seconds in (10, 60, 300):
        w = window_weight(0.2, seconds)
        assert 1 - (1 - w) ** (3600 // seconds) == pytest.approx(0.2)


def test_a_new_slot_is_the_plain_mean_until_the_ewma_weight_takes_over() -> None:
    b = baselines()
    for value in (10.0, 20.0, 30.0):
        b.update(keys(1), 12, values(value), T0)
    seen = b.expected(keys(1), 12)
    assert seen.values[0].tolist() == pytest.approx([20.0] * 4)
    assert seen.observations.tolist() == [3]
    # Other slots and unknown keys know nothing.
    assert b.expected(keys(1), 13).observations.tolist() == [0]
    unknown = b.expected(keys(2), 12)
    assert unknown.observations.tolist() == [0] and unknown.values.sum() == 0


def test_after_warm_up_one_window_moves_the_slot_by_its_weight() -> None:
    b = baselines(window_seconds=3600, alpha=0.5)
    b.update(keys(1), 0, values(100.0), T0)
    b.update(keys(1), 0, values(100.0), T0)
    # The mean weight (1/3) and the EWMA weight (0.5): the larger one applies.
    b.update(keys(1), 0, values(400.0), T0)
    assert b.expected(keys(1), 0).values[0, 0] == pytest.approx(250.0)


def test_a_reported_window_is_learnt_slowly_and_not_counted() -> None:
    b = baselines(window_seconds=10)
    for _ in range(30):
        b.update(keys(1), 12, values(200.0), T0)
    attack = np.array([True])
    b.update(keys(1), 12, values(6000.0), T0, flagged=attack)
    seen = b.expected(keys(1), 12)
    # The steady weight (0.06 %), not the mean's 1/31.
    assert seen.values[0, 0] == pytest.approx(200 + window_weight(0.2, 10) * 5800)
    assert seen.observations.tolist() == [30]
    # A slot with nothing yet is not started from an attack.
    b.update(keys(2), 12, values(6000.0), T0, flagged=attack)
    assert b.expected(keys(2), 12).observations.tolist() == [0]
    assert b.expected(keys(2), 12).values.sum() == 0


def test_the_same_address_under_another_instance_has_its_own_baseline() -> None:
    b = baselines()
    b.update(keys(1, instance=70), 12, values(1000.0), T0)
    b.update(keys(1, instance=71), 12, values(5.0), T0)
    assert b.expected(keys(1, instance=70), 12).values[0, 0] == 1000.0
    assert b.expected(keys(1, instance=71), 12).values[0, 0] == 5.0
    assert b.expected(keys(1), 12).observations.tolist() == [0]
    assert len(b) == 2


def test_growing_past_the_first_allocation_keeps_every_value() -> None:
    b = baselines(capacity=5000)
    numbers = list(range(3000))
    for start in range(0, 3000, 700):
        chunk = numbers[start : start + 700]
        b.update(keys(*chunk), 5, values(*map(float, chunk)), T0)
    assert len(b) == 3000
    seen = b.expected(keys(*numbers), 5)
    assert seen.values[:, 2].tolist() == [float(n) for n in numbers]


def test_when_full_the_least_recently_seen_tenth_is_dropped() -> None:
    b = baselines(capacity=100)
    for n in range(100):
        b.update(keys(n), 1, values(float(n)), T0 + n)
    # Two new keys: a tenth of the capacity goes, the oldest (0 … 9).
    b.update(keys(500, 501), 1, values(1.0, 2.0), T0 + 1000)
    assert len(b) == 92
    assert (b.rows(keys(*range(10))) == -1).all()
    survivors = b.expected(keys(*range(10, 100)), 1)
    assert survivors.values[:, 0].tolist() == [float(n) for n in range(10, 100)]
    assert b.expected(keys(500, 501), 1).values[:, 0].tolist() == [1.0, 2.0]


def test_keys_seen_in_the_update_that_fills_the_table_are_not_evicted() -> None:
    b = baselines(capacity=100)
    for n in range(100):
        b.update(keys(n), 1, values(1.0), T0 + n)
    # Key 0 is the oldest but is in this update: it stays, 1 … 10 go.
    b.update(keys(0, 900), 1, values(3.0, 3.0), T0 + 1000)
    assert (b.rows(keys(0, 900)) >= 0).all()
    assert (b.rows(keys(*range(1, 11))) == -1).all()
    assert b.expected(keys(0), 1).observations.tolist() == [2]


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "detect" / "baselines.npz"
    b = baselines(path)
    b.update(keys(1, 2, instance=7), 40, values(10.0, 20.0), T0)
    b.update(keys(3), 41, values(30.0), T0 + 5)
    assert b.save()
    assert path.exists() and not path.with_name("baselines.npz.tmp").exists()
    again = baselines(path)
    assert len(again) == 3
    seen = again.expected(keys(1, 2, instance=7), 40)
    assert seen.values[:, 1].tolist() == [10.0, 20.0]
    assert seen.observations.tolist() == [1, 1]
    assert again.expected(keys(3), 41).values[0, 3] == 30.0
    # It goes on learning where it stopped.
    again.update(keys(3), 41, values(60.0), T0 + 10)
    assert again.expected(keys(3), 41).values[0, 0] == pytest.approx(45.0)


def test_a_smaller_capacity_at_load_keeps_the_most_recently_seen(tmp_path: Path) -> None:
    path = tmp_path / "baselines.npz"
    b = baselines(path)
    for n in range(300):
        b.update(keys(n), 0, values(float(n)), T0 + n)
    b.save()
    small = baselines(path, capacity=200)
    assert len(small) == 200
    assert (small.rows(keys(*range(100))) == -1).all()
    assert small.expected(keys(299), 0).values[0, 0] == 299.0


@pytest.mark.parametrize(
    "content",
    [b"not a zip file at all", b"PK\x03\x04truncated", b""],
    ids=["garbage", "truncated-zip", "empty"],
)
def test_a_corrupt_file_is_reported_set_aside_and_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "baselines.npz"
    path.write_bytes(content)
    with capture_logs() as logs:
        b = baselines(path)
    assert len(b) == 0
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert "could not be read" in logs[0]["event"]
    assert path.with_name("baselines.npz.corrupt").read_bytes() == content
    assert not path.exists()
    b.update(keys(1), 0, values(5.0), T0)
    assert b.save()
    assert baselines(path).expected(keys(1), 0).values[0, 0] == 5.0


def test_a_file_of_other_metrics_is_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "baselines.npz"
    b = baselines(path)
    b.update(keys(1), 0, values(5.0), T0)
    b.save()
    with capture_logs() as logs:
        other = Baselines(
            ("pps", "bps", "fps"), window_seconds=10, alpha=0.2, capacity=10, path=path
        )
    assert len(other) == 0
    assert "metrics" in logs[0]["error"]


def test_a_failed_save_is_logged_and_the_state_kept(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    b = baselines(blocker / "baselines.npz")
    b.update(keys(1), 0, values(5.0), T0)
    with capture_logs() as logs:
        assert b.save() is False
    assert logs[0]["log_level"] == "error"
    assert b.expected(keys(1), 0).values[0, 0] == 5.0


def test_saves_are_spaced_by_the_interval(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "baselines.npz"
    b = baselines(path, save_every_seconds=300.0, clock=lambda: now[0])
    b.update(keys(1), 0, values(5.0), T0)
    now[0] = 299.0
    b.maybe_save()
    assert not path.exists()
    now[0] = 300.0
    b.maybe_save()
    assert path.exists()


def test_a_record_longer_than_the_window_counts_its_share() -> None:
    columns = {
        "start": np.array([0, 0, 55_000], np.int64),
        "end": np.array([60_000, 5_000, 60_000], np.int64),
    }
    frame = Frame(seconds=10, start_ms=50_000, columns=columns)
    assert window_share(frame).tolist() == pytest.approx([10 / 60, 1.0, 1.0])
