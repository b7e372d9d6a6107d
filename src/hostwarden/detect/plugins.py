"""The detector plugin protocol, and how the engine finds its detectors.

A detector is any object with a ``name``, the ``window_seconds`` it wants (one of the
engine's windows: 10, 60 or 300) and ``evaluate(frame) -> list[Finding]``; it may keep
state between windows (baselines, loaded feeds), and if it has a ``save_state()`` method
the engine calls it on ``flush`` (end of a replay, shutdown). A detector that can judge
a window before it closes has ``peek(new, so_far) -> list[Finding]``: every
``[detect] peek_seconds`` it gets a frame of the records that arrived in an open window
since its last look and one of all the window's records so far; it must report only what
the window's close would report too (the findings are marked ``early``). Built-in detectors are
listed in ``BUILTIN``; other packages add theirs through the entry point group
``hostwarden.detectors``, each entry a factory ``(settings: DetectSettings, home: Path)
-> Detector | None`` (None: disabled by its settings).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from hostwarden.core.config_detect import WINDOWS, DetectSettings
from hostwarden.detect.findings import Finding
from hostwarden.detect.frame import Frame
from hostwarden.errors import ConfigError

ENTRY_POINT_GROUP = "hostwarden.detectors"


@runtime_checkable
class Detector(Protocol):
    name: str
    window_seconds: int

    def evaluate(self, frame: Frame) -> list[Finding]: ...


Factory = Callable[[DetectSettings, Path], "Detector | None"]

#: Built-in detectors: ``module:factory`` under ``hostwarden.detect.detectors``.
BUILTIN = (
    "volumetric:make",
    "scan:make",
    "bruteforce:make",
    "spam:make",
    "mining:make",
    "tunnels:make",
    "threatintel:make",
    "anomaly:make",
)


def _builtin_factories() -> list[tuple[str, Factory]]:
    found: list[tuple[str, Factory]] = []
    for spec in BUILTIN:
        module_name, attribute = spec.split(":")
        module = importlib.import_module(f"hostwarden.detect.detectors.{module_name}")
        found.append((module_name, getattr(module, attribute)))
    return found


def load_detectors(settings: DetectSettings, home: Path) -> list[Detector]:
    """Every enabled detector, built-in first, then plugins in entry point name order."""
    factories = _builtin_factories()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        factories.append((ep.name, ep.load()))
    detectors: list[Detector] = []
    for name, factory in factories:
        detector = factory(settings, home)
        if detector is None:
            continue
        if not isinstance(detector, Detector):
            raise ConfigError(
                f"detector plugin '{name}' did not return a detector "
                "(needs name, window_seconds and evaluate(frame))."
            )
        if detector.window_seconds not in WINDOWS:
            raise ConfigError(
                f"detector '{detector.name}' asks for a {detector.window_seconds} s window; "
                f"the engine keeps {', '.join(str(w) for w in WINDOWS)} s windows."
            )
        detectors.append(detector)
    return detectors
