"""The core's scheduled jobs, registered through the ``hostwarden.jobs`` entry point."""

from __future__ import annotations

from hostwarden.core import auth
from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime
from hostwarden.core.scheduler import JobSpec, purge_job_runs

PURGE_SESSIONS_SECONDS = 3600.0
PURGE_JOB_RUNS_SECONDS = 24 * 3600.0


def heartbeat(runtime: Runtime) -> None:
    """Nothing to do: the JobRun row the scheduler writes for it is the heartbeat, and
    its runner column shows which process leads."""


def purge_sessions(runtime: Runtime) -> int:
    return auth.purge_expired_sessions(runtime)


def jobs(settings: Settings) -> list[JobSpec]:
    return [
        JobSpec(
            "scheduler.heartbeat",
            heartbeat,
            settings.scheduler.heartbeat_seconds,
            "Shows in the job runs which process is the scheduler leader.",
        ),
        JobSpec(
            "auth.purge_sessions",
            purge_sessions,
            PURGE_SESSIONS_SECONDS,
            "Deletes console sessions past their expiry.",
        ),
        JobSpec(
            "scheduler.purge_job_runs",
            purge_job_runs,
            PURGE_JOB_RUNS_SECONDS,
            f"Deletes job runs older than {settings.scheduler.job_runs_keep_days} days, "
            "keeping each job's last run.",
        ),
    ]
