"""The core's scheduled jobs, registered through the ``hostwarden.jobs`` entry point."""

from __future__ import annotations

from hostwarden.core import auth
from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime
from hostwarden.core.scheduler import JobSpec

PURGE_SESSIONS_SECONDS = 3600.0


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
    ]
