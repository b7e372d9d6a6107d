"""The flow store's scheduled jobs, registered through the ``hostwarden.jobs`` entry point."""

from __future__ import annotations

import time

from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.scheduler import JobSpec
from hostwarden.flows.store import ExpiryReport, open_store

EXPIRE_SECONDS = 24 * 3600.0


def expire_segments(runtime: Runtime, now_ms: int | None = None) -> ExpiryReport:
    """Expire the segments past retention that no legal hold pins (audited, chained)."""
    store = open_store(runtime)
    try:
        with runtime.operation(system_actor("retention")) as op:
            return store.expire(op, int(time.time() * 1000) if now_ms is None else now_ms)
    finally:
        store.close()


def jobs(settings: Settings) -> list[JobSpec]:
    return [
        JobSpec(
            "flows.expire",
            expire_segments,
            EXPIRE_SECONDS,
            f"Expires flow segments older than {settings.flows.retention_days} days, "
            "except those a legal hold pins.",
        ),
    ]
