"""Hour-of-week EWMA baselines of traffic rates, per provider-side address or instance.

A baseline is kept per *key*: an address together with the instance that held it (so an
address handed to a new customer starts afresh), or an instance on its own (the anomaly
detector follows an instance across its addresses). Each key has 168 slots, one per
hour of the week (UTC; Monday 00:00 is slot 0), and in each slot an exponentially
weighted moving average of each metric (pps, bps, flows/s, distinct peers, whichever the
detector asks for) and how many windows it has seen.

Why the weight is per *hour* and not per window: a slot receives every window of its
hour (360 windows of 10 s), so a per-window weight of 0.2 would forget last week's
Monday 12:00 within a minute of this week's, and the hour-of-week slots would be no
better than one running average. Each window gets ``1 - (1 - alpha) ** (window / 3600)``
instead, so one hour of traffic moves the slot by ``alpha``; until a slot has seen
``1 / weight`` windows it is the plain mean of all of them (no bias towards the zero it
started from). Windows in which a key was reported are folded in at the steady weight
only and do not count as observations, so an attack moves its slot by ``alpha`` of the
gap per hour at most and keeps standing out while it lasts.

Only keys present in a window are observed; a silent hour is not counted as a zero. The
baseline of an address that sends now and then is therefore its rate *when it sends*,
which is higher than its average: the conservative side for an alerting ratio.

Lookups go through a dict from the key (one Python int) to its row: one entry per key
in the window, not per record; everything per record is numpy, everything per slot is
a fancy-indexed update. Memory is bounded by ``capacity`` keys; when it is reached the
least recently seen tenth is dropped at once (so the dict is rebuilt rarely).

The state is written to an ``.npz`` file (a temporary name, then renamed, so a crash
mid-write leaves the previous file) at most every ``save_every_seconds`` and when the
engine flushes; it is read back at start. A file that cannot be read is logged, set aside
as ``<name>.corrupt`` and replaced by the next save: detection goes on with empty
baselines rather than not at all.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.logs import get_logger
from hostwarden.detect.frame import Frame

log = get_logger("hostwarden.detect.baseline")

SLOTS = 168
HOUR_MS = 3_600_000
#: 1970-01-01 was a Thursday: the epoch's hour 0 is hour 72 of a week starting Monday.
_EPOCH_HOUR_OF_WEEK = 72
#: Instance column value of a key that is not an instance's (no instance on record).
NO_INSTANCE = -1
FILE_FORMAT = 1
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_COUNT_MAX = np.iinfo(np.uint16).max


def hour_of_week(ms: int) -> int:
    """The slot (0 = Monday 00:00–01:00 UTC) of a time in epoch milliseconds."""
    return (ms // HOUR_MS + _EPOCH_HOUR_OF_WEEK) % SLOTS


def slot_text(slot: int) -> str:
    return f"{_DAYS[slot // 24]} {slot % 24:02d}:00 UTC"


def window_weight(alpha: float, window_seconds: int) -> float:
    """The EWMA weight of one window such that an hour of windows weighs ``alpha``."""
    return float(1.0 - (1.0 - alpha) ** (window_seconds / 3600.0))


def window_share(frame: Frame) -> NDArray[np.float64]:
    """Per record, the share of its packets and bytes that counts in this window: all of
    it for a record no longer than the window, ``window / duration`` for a longer one.
    The volumetric module explains why."""
    window_ms = frame.seconds * 1000
    duration = (frame["end"] - frame["start"]).astype(np.float64)
    share: NDArray[np.float64] = window_ms / np.maximum(duration, window_ms)
    return share


def figure(value: float) -> str:
    """A rate or ratio for a summary: separators, one decimal below 100 (so 0.1 flows/s
    and 12.5× show as such), none above."""
    if abs(value) < 100 and not float(value).is_integer():
        return f"{value:,.1f}"
    return f"{value:,.0f}"


@dataclass(frozen=True)
class Keys:
    """Distinct baseline keys, one per row: an address's two words and an instance id
    (``NO_INSTANCE`` when none); an instance's own key has address words 0, 0."""

    hi: NDArray[np.uint64]
    lo: NDArray[np.uint64]
    instance: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.hi)

    @cached_property
    def ids(self) -> list[bytes]:
        """Each key as the dict's key: its three words as 24 bytes, made by numpy in one
        call (computed once: a window's keys are looked up before judging and again to
        update). Building a Python int per key was a tenth of the volumetric detector's
        time in bench/detect.py."""
        words = np.empty((len(self.hi), 3), np.uint64)
        words[:, 0] = self.hi
        words[:, 1] = self.lo
        words[:, 2] = self.instance.astype(np.int64).view(np.uint64)
        return cast(list[bytes], words.view(np.dtype((np.void, 24))).ravel().tolist())


@dataclass(frozen=True)
class Expected:
    """What the baselines say for some keys in one slot: ``values[i, m]`` of metric m and
    ``observations[i]`` windows behind it (0: nothing known, values are 0)."""

    values: NDArray[np.float64]
    observations: NDArray[np.int64]


class Baselines:
    """Hour-of-week EWMA baselines of ``metrics`` for up to ``capacity`` keys."""

    def __init__(
        self,
        metrics: Sequence[str],
        *,
        window_seconds: int,
        alpha: float,
        capacity: int,
        path: Path | None = None,
        save_every_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = tuple(metrics)
        self.weight = window_weight(alpha, window_seconds)
        self.capacity = capacity
        self.path = path
        self.save_every_seconds = save_every_seconds
        self._clock = clock
        self._last_save = clock()
        self._dirty = False
        self._size = 0
        self._index: dict[bytes, int] = {}
        #: Bumped whenever rows are added or moved (the cached lookup is then stale).
        self._generation = 0
        self._last_lookup: tuple[Keys, int, NDArray[np.intp]] | None = None
        self._allocate(min(1024, capacity))
        if path is not None:
            self.load()

    def __len__(self) -> int:
        return self._size

    # --- queries and updates -------------------------------------------------------------

    def rows(self, keys: Keys) -> NDArray[np.intp]:
        """Each key's row, -1 for keys without a baseline."""
        # A detector looks the same keys up to judge and then to update: the second
        # time is free unless rows were added or moved in between.
        last = self._last_lookup
        if last is not None and last[0] is keys and last[1] == self._generation:
            return last[2].copy()
        found = np.fromiter(map(self._index.get, keys.ids, repeat(-1)), np.intp, len(keys))
        self._last_lookup = (keys, self._generation, found.copy())
        return found

    def expected(self, keys: Keys, slot: int) -> Expected:
        rows = self.rows(keys)
        known = rows >= 0
        values = np.zeros((len(keys), len(self.metrics)), np.float64)
        observations = np.zeros(len(keys), np.int64)
        values[known] = self._mean[rows[known], slot]
        observations[known] = self._count[rows[known], slot]
        return Expected(values, observations)

    def update(
        self,
        keys: Keys,
        slot: int,
        values: NDArray[Any],
        now_ms: int,
        flagged: NDArray[np.bool_] | None = None,
    ) -> None:
        """Fold one window's ``values`` (one row per key, one column per metric) into the
        keys' ``slot``. Keys must be distinct. New keys get a row (evicting the least
        recently seen when full).

        ``flagged`` keys (reported in this window) are learnt from slowly: with the
        steady per-window weight, never the warm-up mean's, and without counting as an
        observation; a slot with nothing yet is not started from them. So an attack
        does not become the address's normal within a few windows (a young slot's
        mean would otherwise take in a third of a 10-window attack after 30 quiet
        windows), while a lasting legitimate change is still learnt at the hourly pace.
        """
        if not len(keys):
            return
        rows = self.rows(keys)
        known = rows >= 0
        self._last[rows[known]] = now_ms
        new = np.flatnonzero(~known)
        if len(new):
            room = self.capacity - self._size
            if len(new) > room:
                self._evict(len(new) - room, protect=rows[known])
                rows = self.rows(keys)
            new = new[: self.capacity - self._size]
            rows[new] = self._append(Keys(keys.hi[new], keys.lo[new], keys.instance[new]), now_ms)
        tracked = rows >= 0
        r = rows[tracked]
        slow = np.zeros(len(r), bool) if flagged is None else np.asarray(flagged, bool)[tracked]
        seen = self._count[r, slot].astype(np.int64)
        count = np.where(slow, seen, np.minimum(seen + 1, _COUNT_MAX))
        self._count[r, slot] = count
        weight = np.where(
            slow,
            np.where(seen > 0, self.weight, 0.0),
            np.maximum(self.weight, 1.0 / np.maximum(count, 1)),
        )[:, None]
        mean = self._mean[r, slot].astype(np.float64)
        observed = np.asarray(values, np.float64)[tracked]
        self._mean[r, slot] = mean + weight * (observed - mean)
        self._dirty = True

    # --- persistence ---------------------------------------------------------------------

    def maybe_save(self) -> None:
        """Save if something changed and ``save_every_seconds`` have passed."""
        if self._dirty and self._clock() - self._last_save >= self.save_every_seconds:
            self.save()

    def save(self) -> bool:
        """Write the state (temporary file, then rename). False when it could not be."""
        if self.path is None:
            return False
        if not self._dirty and self.path.exists():
            return True
        n = self._size
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as fh:
                np.savez(
                    fh,
                    format=np.array(FILE_FORMAT),
                    metrics=np.array(self.metrics),
                    hi=self._hi[:n],
                    lo=self._lo[:n],
                    instance=self._inst[:n],
                    last_seen=self._last[:n],
                    mean=self._mean[:n],
                    count=self._count[:n],
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            log.error(
                "could not save detection baselines; they are kept in memory and the "
                "save is retried later. Check that the directory is writable and has room.",
                path=str(self.path),
                error=str(exc),
            )
            self._last_save = self._clock()
            return False
        self._dirty = False
        self._last_save = self._clock()
        return True

    def load(self) -> bool:
        """Read the saved state if there is one. A file that cannot be read is logged and
        set aside; the baselines then start empty. True when a state was read."""
        path = self.path
        if path is None or not path.exists():
            return False
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            self._restore(arrays)
        except Exception as exc:
            aside = path.with_name(path.name + ".corrupt")
            log.warning(
                "detection baselines could not be read; starting with empty baselines "
                "(they fill again from the traffic). The file was moved aside.",
                path=str(path),
                moved_to=str(aside),
                error=f"{type(exc).__name__}: {exc}",
            )
            self._size = 0
            self._index = {}
            self._allocate(min(1024, self.capacity))
            # If it cannot even be moved, the next save overwrites it: same outcome.
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            return False
        return True

    def _restore(self, arrays: dict[str, NDArray[Any]]) -> None:
        if int(arrays["format"]) != FILE_FORMAT:
            raise ValueError(f"file format {int(arrays['format'])}, expected {FILE_FORMAT}")
        metrics = tuple(str(m) for m in arrays["metrics"].tolist())
        if metrics != self.metrics:
            raise ValueError(f"metrics {metrics}, expected {self.metrics}")
        hi, lo, inst, last = arrays["hi"], arrays["lo"], arrays["instance"], arrays["last_seen"]
        mean, count = arrays["mean"], arrays["count"]
        n = len(hi)
        if not (
            hi.shape == lo.shape == inst.shape == last.shape == (n,)
            and mean.shape == (n, SLOTS, len(self.metrics))
            and count.shape == (n, SLOTS)
            and bool(np.isfinite(mean).all())
        ):
            raise ValueError("arrays of inconsistent shapes or values")
        keep = np.arange(n)
        if n > self.capacity:
            keep = np.sort(np.argsort(-last.astype(np.int64), kind="stable")[: self.capacity])
        n = len(keep)
        self._allocate(max(n, min(1024, self.capacity)))
        self._hi[:n] = hi[keep]
        self._lo[:n] = lo[keep]
        self._inst[:n] = inst[keep]
        self._last[:n] = last[keep]
        self._mean[:n] = mean[keep]
        self._count[:n] = count[keep]
        self._size = n
        self._reindex()
        if len(self._index) != n:
            raise ValueError("the same key appears twice")

    # --- storage -------------------------------------------------------------------------

    def _allocate(self, rows: int) -> None:
        self._generation += 1
        self._hi = np.zeros(rows, np.uint64)
        self._lo = np.zeros(rows, np.uint64)
        self._inst = np.zeros(rows, np.int64)
        self._last = np.zeros(rows, np.int64)
        self._mean = np.zeros((rows, SLOTS, len(self.metrics)), np.float32)
        self._count = np.zeros((rows, SLOTS), np.uint16)

    def _arrays(self) -> list[NDArray[Any]]:
        return [self._hi, self._lo, self._inst, self._last, self._mean, self._count]

    def _grow(self, needed: int) -> None:
        allocated = len(self._hi)
        if needed <= allocated:
            return
        rows = min(max(needed, 2 * allocated), self.capacity)
        n = self._size
        old = self._arrays()
        self._allocate(rows)
        for src, dst in zip(old, self._arrays(), strict=True):
            dst[:n] = src[:n]

    def _append(self, keys: Keys, now_ms: int) -> NDArray[np.intp]:
        n, k = self._size, len(keys)
        self._grow(n + k)
        end = n + k
        self._hi[n:end] = keys.hi
        self._lo[n:end] = keys.lo
        self._inst[n:end] = keys.instance
        self._last[n:end] = now_ms
        self._mean[n:end] = 0
        self._count[n:end] = 0
        for offset, key in enumerate(keys.ids):
            self._index[key] = n + offset
        self._generation += 1
        self._size = end
        return np.arange(n, end, dtype=np.intp)

    def _evict(self, needed: int, protect: NDArray[np.intp]) -> None:
        """Drop the least recently seen rows: at least ``needed``, a tenth of the
        capacity when that is more (fewer dict rebuilds), never a ``protect`` row."""
        n = self._size
        last = self._last[:n].copy()
        last[protect] = np.iinfo(np.int64).max
        drop = min(n - len(protect), max(needed, self.capacity // 10))
        if drop <= 0:
            return
        victims = np.argpartition(last, drop - 1)[:drop]
        keep = np.ones(n, bool)
        keep[victims] = False
        m = int(keep.sum())
        for array in self._arrays():
            array[:m] = array[:n][keep]
        self._size = m
        self._reindex()

    def _reindex(self) -> None:
        self._generation += 1
        n = self._size
        keys = Keys(self._hi[:n], self._lo[:n], self._inst[:n])
        self._index = {key: row for row, key in enumerate(keys.ids)}
