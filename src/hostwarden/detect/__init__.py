"""Abuse detection on the provider's own network (docs/detect.md).

Attributed flow batches (from the collectors, a stored range or an imported file) go
through one ``engine.Engine``: it keeps tumbling windows of 10 s, 60 s and 5 min per
provider-side address, and when a window closes it hands the window's records
(``frame.Frame``) to every detector plugin that asked for that length. Detectors return
``findings.Finding``s; the alert store (``alerts``) deduplicates them into alerts,
applies suppressions and delivers them.
"""
