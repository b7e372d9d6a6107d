"""The job scheduler: a registry of jobs, recorded runs, and one leader among processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select, text

from hostwarden.core import scheduler as scheduler_module
from hostwarden.core.config import SchedulerSettings, Settings
from hostwarden.core.models import JobRun
from hostwarden.core.runtime import Runtime
from hostwarden.core.scheduler import (
    JOB_GROUP,
    JobRegistryError,
    JobSpec,
    Scheduler,
    load_jobs,
    pg_lock_key,
)
from hostwarden.errors import HostwardenError

T = TypeVar("T")

WAIT_SECONDS = 20.0
SCHEDULER_COMMAND = [sys.executable, "-c", "from hostwarden.cli.scheduler import app; app()"]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def runs(runtime: Runtime, job: str) -> list[JobRun]:
    with runtime.reading() as session:
        return list(session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)))


def finished(runtime: Runtime, job: str, status: str) -> list[JobRun]:
    return [r for r in runs(runtime, job) if r.status == status]


@pytest.fixture
def fast(runtime: Runtime) -> Runtime:
    """The test runtime with a quick leader retry, so take-overs happen within a test."""
    runtime.settings = runtime.settings.model_copy(
        update={"scheduler": SchedulerSettings(heartbeat_seconds=0.3, leader_retry_seconds=0.2)}
    )
    return runtime


@pytest.fixture
def schedulers() -> Iterator[list[Scheduler]]:
    """Schedulers a test starts; all are shut down at the end, whatever happened."""
    started: list[Scheduler] = []
    yield started
    for scheduler in started:
        scheduler.shutdown()


def tick(_runtime: Runtime) -> None:
    return None


def explode(_runtime: Runtime) -> None:
    raise RuntimeError("disk on fire")


# --- the job registry ---------------------------------------------------------------------


def test_core_jobs_are_found_through_the_entry_point(settings: Settings) -> None:
    jobs = {job.name: job for job in load_jobs(settings)}

    assert {"scheduler.heartbeat", "auth.purge_sessions"} <= set(jobs)
    assert jobs["scheduler.heartbeat"].seconds == settings.scheduler.heartbeat_seconds
    assert jobs["auth.purge_sessions"].seconds == 3600
    assert all(job.description for job in jobs.values())


def test_heartbeat_interval_follows_the_setting(settings: Settings) -> None:
    changed = settings.model_copy(update={"scheduler": SchedulerSettings(heartbeat_seconds=7.5)})

    heartbeat = {job.name: job for job in load_jobs(changed)}["scheduler.heartbeat"]

    assert heartbeat.seconds == 7.5


def test_a_job_name_declared_twice_is_refused_naming_both_declarations(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = EntryPoint(name="core", value="hostwarden.core.jobs:jobs", group=JOB_GROUP)
    copy = EntryPoint(name="copycat", value="hostwarden.core.jobs:jobs", group=JOB_GROUP)
    monkeypatch.setattr(scheduler_module, "entry_points", lambda group: [core, copy])

    with pytest.raises(JobRegistryError) as caught:
        load_jobs(settings)

    message = str(caught.value)
    assert isinstance(caught.value, HostwardenError)
    assert "'auth.purge_sessions'" in message or "'scheduler.heartbeat'" in message
    assert "declared twice" in message
    assert "'core'" in message
    assert "'copycat'" in message


def test_a_scheduler_refuses_duplicate_job_names(runtime: Runtime) -> None:
    with pytest.raises(JobRegistryError, match=r"'test\.tick' is declared twice"):
        Scheduler(runtime, jobs=[JobSpec("test.tick", tick, 1), JobSpec("test.tick", tick, 2)])


def test_a_job_needs_a_positive_interval(runtime: Runtime) -> None:
    with pytest.raises(JobRegistryError, match="greater than 0"):
        Scheduler(runtime, jobs=[JobSpec("test.never", tick, 0)])


# --- running jobs -------------------------------------------------------------------------


def test_a_job_run_is_recorded_with_its_runner_and_times(
    fast: Runtime, schedulers: list[Scheduler]
) -> None:
    scheduler = Scheduler(fast, jobs=[JobSpec("test.tick", tick, 0.2)], runner="runner-a")
    schedulers.append(scheduler)

    scheduler.start()
    done = wait_for("a finished run of test.tick", lambda: finished(fast, "test.tick", "ok"))

    assert scheduler.is_leader
    run = done[0]
    assert run.runner == "runner-a"
    assert run.detail == ""
    assert run.finished_at is not None
    assert run.started_at <= run.finished_at


def test_a_failing_job_is_recorded_and_the_other_jobs_keep_running(
    fast: Runtime, schedulers: list[Scheduler]
) -> None:
    scheduler = Scheduler(
        fast, jobs=[JobSpec("test.explode", explode, 0.2), JobSpec("test.tick", tick, 0.2)]
    )
    schedulers.append(scheduler)

    scheduler.start()
    wait_for("two failed runs", lambda: len(finished(fast, "test.explode", "failed")) >= 2)
    ok_before = len(finished(fast, "test.tick", "ok"))
    wait_for(
        "more runs of the healthy job after the failures",
        lambda: len(finished(fast, "test.tick", "ok")) > ok_before + 1,
    )

    failure = finished(fast, "test.explode", "failed")[0]
    assert failure.detail == "RuntimeError: disk on fire"
    assert failure.finished_at is not None
    assert scheduler.is_leader
    assert not finished(fast, "test.explode", "ok")


def test_a_job_never_overlaps_itself(fast: Runtime, schedulers: list[Scheduler]) -> None:
    def slow(_runtime: Runtime) -> None:
        time.sleep(0.5)

    scheduler = Scheduler(fast, jobs=[JobSpec("test.slow", slow, 0.1)])
    schedulers.append(scheduler)

    scheduler.start()
    wait_for("three runs of the slow job", lambda: len(finished(fast, "test.slow", "ok")) >= 3)
    scheduler.shutdown()

    done = finished(fast, "test.slow", "ok")
    for earlier, later in pairwise(done):
        assert earlier.finished_at is not None
        assert later.started_at >= earlier.finished_at


def test_a_stopped_scheduler_runs_nothing_more(fast: Runtime, schedulers: list[Scheduler]) -> None:
    scheduler = Scheduler(fast, jobs=[JobSpec("test.tick", tick, 0.1)])
    schedulers.append(scheduler)
    scheduler.start()
    wait_for("a run", lambda: finished(fast, "test.tick", "ok"))

    scheduler.shutdown()
    count = len(runs(fast, "test.tick"))
    time.sleep(0.5)

    assert not scheduler.is_leader
    assert len(runs(fast, "test.tick")) == count


# --- one leader ---------------------------------------------------------------------------


def test_only_one_scheduler_leads_and_another_takes_over_when_it_stops(
    fast: Runtime, schedulers: list[Scheduler]
) -> None:
    first = Scheduler(fast, jobs=[JobSpec("test.tick", tick, 0.1)], runner="first")
    second = Scheduler(fast, jobs=[JobSpec("test.tick", tick, 0.1)], runner="second")
    schedulers.extend([first, second])

    first.start()
    wait_for("the first scheduler to lead", lambda: first.is_leader)
    second.start()
    wait_for("runs by the leader", lambda: len(runs(fast, "test.tick")) >= 3)
    time.sleep(0.5)  # several retry periods of the second one

    assert not second.is_leader
    assert {r.runner for r in runs(fast, "test.tick")} == {"first"}

    first.shutdown()
    wait_for("the second scheduler to take over", lambda: second.is_leader)
    wait_for(
        "runs by the new leader",
        lambda: [r for r in runs(fast, "test.tick") if r.runner == "second"],
    )


@pytest.mark.postgres_only
def test_losing_the_lock_connection_drops_leadership_until_it_is_won_again(
    fast: Runtime, schedulers: list[Scheduler]
) -> None:
    scheduler = Scheduler(fast, jobs=[JobSpec("test.tick", tick, 0.1)])
    schedulers.append(scheduler)
    scheduler.start()
    wait_for("leadership", lambda: scheduler.is_leader)
    holder = wait_for("the lock holder's backend", lambda: lock_holder(fast))

    with fast.db.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
    wait_for("leadership to be dropped", lambda: not scheduler.is_leader, timeout=5)
    wait_for("leadership to be won again", lambda: scheduler.is_leader)
    new_holder = wait_for("the new lock holder", lambda: lock_holder(fast))
    last_id = runs(fast, "test.tick")[-1].id

    assert new_holder != holder
    wait_for("runs after re-election", lambda: runs(fast, "test.tick")[-1].id > last_id)


def lock_holder(runtime: Runtime) -> int | None:
    """The PostgreSQL backend holding this schema's scheduler lock, if any."""
    with runtime.db.engine.connect() as conn:
        schema = conn.scalar(text("SELECT current_schema()"))
        key = pg_lock_key(str(schema))
        pid = conn.scalar(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objsubid = 1 AND classid::bigint = :high AND objid::bigint = :low"
            ),
            {"high": key >> 32, "low": key & 0xFFFFFFFF},
        )
    return None if pid is None else int(pid)


# --- two processes ------------------------------------------------------------------------


def start_scheduler_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*SCHEDULER_COMMAND, "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def runner_of(process: subprocess.Popen[bytes]) -> str:
    return f"{socket.gethostname()}:{process.pid}"


def test_two_scheduler_processes_elect_one_leader_and_fail_over_when_it_dies(
    runtime: Runtime, env_for_home: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **env_for_home,
        "HOSTWARDEN_SCHEDULER__HEARTBEAT_SECONDS": "0.5",
        "HOSTWARDEN_SCHEDULER__LEADER_RETRY_SECONDS": "0.5",
    }
    processes = [
        start_scheduler_process(env, tmp_path / "scheduler-1.log"),
        start_scheduler_process(env, tmp_path / "scheduler-2.log"),
    ]
    by_runner = {runner_of(p): p for p in processes}

    def heartbeats() -> list[JobRun]:
        for process in processes:
            if process.poll() is not None and process.returncode != -signal.SIGKILL:
                log = (tmp_path / f"scheduler-{processes.index(process) + 1}.log").read_text()
                pytest.fail(f"scheduler process exited with {process.returncode}:\n{log}")
        return runs(runtime, "scheduler.heartbeat")

    try:
        wait_for("four heartbeats", lambda: len(heartbeats()) >= 4)
        leaders = {r.runner for r in heartbeats()}
        assert len(leaders) == 1, f"more than one process ran the jobs: {leaders}"
        leader = leaders.pop()
        assert leader in by_runner
        (follower,) = set(by_runner) - {leader}

        by_runner[leader].send_signal(signal.SIGKILL)
        by_runner[leader].wait(timeout=WAIT_SECONDS)
        last_id = heartbeats()[-1].id
        taken_over = wait_for(
            "the surviving process to run heartbeats",
            lambda: [r for r in heartbeats() if r.id > last_id and r.runner == follower],
        )

        assert taken_over[0].status in ("ok", "running")
        assert {r.runner for r in heartbeats() if r.id > last_id} == {follower}
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=WAIT_SECONDS)


def test_a_scheduler_process_stops_cleanly_on_sigterm(
    runtime: Runtime, env_for_home: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **env_for_home,
        "HOSTWARDEN_SCHEDULER__HEARTBEAT_SECONDS": "0.3",
    }
    process = start_scheduler_process(env, tmp_path / "scheduler.log")
    try:
        wait_for("a heartbeat", lambda: runs(runtime, "scheduler.heartbeat"))
        process.send_signal(signal.SIGTERM)

        assert process.wait(timeout=WAIT_SECONDS) == 0, (tmp_path / "scheduler.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_SECONDS)


def test_a_job_is_due_one_interval_after_its_last_run_by_any_leader(
    fast: Runtime, schedulers: list[Scheduler]
) -> None:
    """A daily job must not wait a full day after every leader restart: a job that never
    ran, or whose last run is older than its interval, runs at once; one that ran
    recently waits for the rest of its interval."""
    from datetime import timedelta

    from hostwarden.core.timeutil import utcnow

    with fast.db.session() as session:
        long_ago = utcnow() - timedelta(days=2)
        session.add(JobRun(job="test.overdue", runner="old", started_at=long_ago, status="ok"))
        session.add(JobRun(job="test.recent", runner="old", started_at=utcnow(), status="ok"))
    day = 24 * 3600.0
    scheduler = Scheduler(
        fast,
        jobs=[
            JobSpec("test.overdue", tick, day),
            JobSpec("test.recent", tick, day),
            JobSpec("test.new", tick, day),
        ],
        runner="restarted",
    )
    schedulers.append(scheduler)
    scheduler.start()
    wait_for("the overdue daily job", lambda: finished(fast, "test.overdue", "ok")[1:])
    wait_for("the never-run daily job", lambda: finished(fast, "test.new", "ok"))
    time.sleep(0.5)
    assert [r.runner for r in runs(fast, "test.recent")] == ["old"], "not due for a day"
