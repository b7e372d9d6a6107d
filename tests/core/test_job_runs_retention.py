"""The daily purge of job runs: old runs go, each job's last run stays, one audit entry."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from hostwarden.core.config import SchedulerSettings, Settings
from hostwarden.core.models import AuditEntry, JobRun
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.scheduler import load_jobs, purge_job_runs
from hostwarden.core.timeutil import utcnow


def add_runs(runtime: Runtime, runs: list[tuple[str, int]]) -> None:
    """One finished run per (job, days ago), oldest first as the scheduler would write them."""
    now = utcnow()
    with runtime.operation(system_actor("test")) as op:
        for job, days_ago in sorted(runs, key=lambda run: -run[1]):
            started = now - timedelta(days=days_ago)
            op.session.add(
                JobRun(
                    job=job,
                    runner="test:1",
                    started_at=started,
                    finished_at=started + timedelta(seconds=1),
                    status="ok",
                )
            )


def remaining(runtime: Runtime) -> list[tuple[str, int]]:
    now = utcnow()
    with runtime.reading() as session:
        rows = session.scalars(select(JobRun).order_by(JobRun.job, JobRun.started_at))
        return [(r.job, round((now - r.started_at).total_seconds() / 86400)) for r in rows]


def purges(runtime: Runtime) -> list[AuditEntry]:
    with runtime.reading() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "job_run.purge")))


def keep_days(runtime: Runtime, days: int) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"scheduler": SchedulerSettings(job_runs_keep_days=days)}
    )


def test_the_purge_is_a_daily_core_job_found_through_the_entry_point(settings: Settings) -> None:
    jobs = {job.name: job for job in load_jobs(settings)}

    purge = jobs["scheduler.purge_job_runs"]
    assert purge.func is purge_job_runs
    assert purge.seconds == 24 * 3600
    assert "older than 90 days" in purge.description


def test_runs_older_than_the_setting_go_but_each_jobs_last_run_stays(runtime: Runtime) -> None:
    add_runs(
        runtime,
        [
            ("scheduler.heartbeat", 200),
            ("scheduler.heartbeat", 100),
            ("scheduler.heartbeat", 10),
            ("registry.sync", 200),
            ("registry.sync", 120),  # its last run, however old
            ("auth.purge_sessions", 1),
        ],
    )

    assert purge_job_runs(runtime) == 3

    assert remaining(runtime) == [
        ("auth.purge_sessions", 1),
        ("registry.sync", 120),
        ("scheduler.heartbeat", 10),
    ]


def test_one_audit_entry_per_purge_records_the_count_as_automation(runtime: Runtime) -> None:
    add_runs(runtime, [("scheduler.heartbeat", days) for days in (400, 300, 200, 100, 0)])

    purge_job_runs(runtime)

    (entry,) = purges(runtime)
    assert (entry.actor, entry.role) == ("system:scheduler", "system")
    assert (entry.object_type, entry.object_id) == ("job_run", "*")
    assert json.loads(entry.after)["removed"] == 4
    assert entry.reason == "job runs older than 90 days; each job's last run kept"


def test_the_number_of_days_kept_follows_the_setting(runtime: Runtime) -> None:
    add_runs(runtime, [("scheduler.heartbeat", days) for days in (40, 20, 3, 0)])
    keep_days(runtime, 5)

    assert purge_job_runs(runtime) == 2

    assert remaining(runtime) == [("scheduler.heartbeat", 3), ("scheduler.heartbeat", 0)]
    assert "older than 5 days" in purges(runtime)[0].reason


def test_a_purge_with_nothing_to_delete_leaves_the_trail_alone(runtime: Runtime) -> None:
    add_runs(runtime, [("scheduler.heartbeat", 300), ("auth.purge_sessions", 1)])
    with runtime.reading() as session:
        entries = session.scalar(select(func.count()).select_from(AuditEntry))

    assert purge_job_runs(runtime) == 0

    with runtime.reading() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == entries
    assert len(remaining(runtime)) == 2
