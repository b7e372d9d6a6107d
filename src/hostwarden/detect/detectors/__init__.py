"""The built-in detectors (docs/detect.md); each module has a ``make`` factory."""
