"""The flow store's scheduled jobs, registered through the ``hostwarden.jobs`` entry point."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.scheduler import JobSpec
from hostwarden.flows.store import ExpiryReport, open_store

if TYPE_CHECKING:
    from hostwarden.flows.store.parquet import CompactionReport

EXPIRE_SECONDS = 24 * 3600.0
COMPACT_SECONDS = 24 * 3600.0


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


def compact_days(runtime: Runtime, now_ms: int | None = None) -> list[CompactionReport]:
    """Compact every finished day that is due (Parquet store; ClickHouse merges its
    parts itself), one transaction and one audit entry per day, so that a day that
    fails leaves the others compacted."""
    from hostwarden.flows.store.parquet import ParquetStore

    if not runtime.settings.flows.compact or runtime.settings.flows.store != "parquet":
        return []
    now = int(time.time() * 1000) if now_ms is None else now_ms
    store = ParquetStore(runtime)
    reports: list[CompactionReport] = []
    try:
        with runtime.reading() as session:
            days = store.days_to_compact(session, now)
        for day in days:
            with runtime.operation(system_actor("compaction")) as op:
                reports.append(store.compact(op, day))
    finally:
        store.close()
    return reports


def jobs(settings: Settings) -> list[JobSpec]:
    specs = [
        JobSpec(
            "flows.expire",
            expire_segments,
            EXPIRE_SECONDS,
            f"Expires flow segments older than {settings.flows.retention_days} days, "
            "except those a legal hold pins.",
        ),
    ]
    if settings.flows.compact and settings.flows.store == "parquet":
        specs.append(
            JobSpec(
                "flows.compact",
                compact_days,
                COMPACT_SECONDS,
                "Rewrites each finished day of flow records as one segment plus a companion "
                f"ordered by the remote address, {settings.flows.compact_after_hours} hours "
                "after the day's end; days a legal hold pins are left alone.",
            )
        )
    return specs
