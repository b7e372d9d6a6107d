"""The flow store's scheduled jobs, registered through the ``hostwarden.jobs`` entry point."""

from __future__ import annotations

import time

from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.scheduler import JobSpec
from hostwarden.flows.store import ExpiryReport, open_store

EXPIRE_SECONDS = 24 * 3600.0


def expire_segments(runtime: Runtime, now_ms: int | None = None) -> ExpiryReport:
    """Expire the flow and log segments past retention that no legal hold pins (audited,
    chained), in one transaction; one report for both."""
    from hostwarden.flows.store.datasets import LogStore

    now = int(time.time() * 1000) if now_ms is None else now_ms
    store = open_store(runtime)
    logs = LogStore(runtime)
    try:
        with runtime.operation(system_actor("retention")) as op:
            report = store.expire(op, now)
            of_logs = logs.expire(op, now)
    finally:
        logs.close()
        store.close()
    report.expired += of_logs.expired
    report.rows_expired += of_logs.rows_expired
    report.bytes_expired += of_logs.bytes_expired
    report.pinned.update(of_logs.pinned)
    report.damaged.update(of_logs.damaged)
    return report


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
