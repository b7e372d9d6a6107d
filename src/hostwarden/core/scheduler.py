"""The in-process job scheduler: registered interval jobs, run only by the elected leader."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, CursorResult, create_engine, delete, func, select, text, update
from sqlalchemy.pool import NullPool

from hostwarden.core.config import Settings
from hostwarden.core.logs import get_logger
from hostwarden.core.models import JobRun
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.timeutil import as_utc, isoformat, utcnow
from hostwarden.errors import HostwardenError

JOB_GROUP = "hostwarden.jobs"
LOCK_FILE_NAME = "scheduler.lock"
# High half of the PostgreSQL advisory lock key; audit.py uses 0x68770001 for its chain.
_PG_LOCK_NAMESPACE = 0x68770002

log = get_logger("hostwarden.scheduler")

_SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
}


@dataclass(frozen=True)
class JobSpec:
    """A job run every ``seconds`` by the leader; ``name`` is its id in JobRun rows."""

    name: str
    func: Callable[[Runtime], object]
    seconds: float
    description: str = ""


class JobRegistryError(HostwardenError):
    code = "job-registry-invalid"
    title = "Scheduled jobs are declared wrongly"
    status = 500


def _check_spec(spec: object, origin: str) -> JobSpec:
    if not isinstance(spec, JobSpec):
        raise JobRegistryError(
            f"{origin} returned {spec!r}, which is not a JobSpec.",
            hint="A hostwarden.jobs entry point must return a list of JobSpec.",
        )
    if not spec.name:
        raise JobRegistryError(f"{origin} declares a job without a name.")
    if not spec.seconds > 0:
        raise JobRegistryError(
            f"job '{spec.name}' from {origin} has interval {spec.seconds!r} seconds; "
            "it must be greater than 0."
        )
    return spec


def _check_unique(specs: Iterable[tuple[JobSpec, str]]) -> list[JobSpec]:
    seen: dict[str, str] = {}
    result: list[JobSpec] = []
    for spec, origin in specs:
        _check_spec(spec, origin)
        if spec.name in seen:
            where = (
                f"twice by {origin}"
                if seen[spec.name] == origin
                else f"twice: by {seen[spec.name]} and by {origin}"
            )
            raise JobRegistryError(
                f"job name '{spec.name}' is declared {where}.",
                hint="Job names must be unique; rename one of the jobs or remove the "
                "duplicate hostwarden.jobs entry point.",
            )
        seen[spec.name] = origin
        result.append(spec)
    return result


def _describe(ep: EntryPoint) -> str:
    return f"entry point '{ep.name}' ({ep.value})"


def load_jobs(settings: Settings) -> list[JobSpec]:
    """Every job declared through the ``hostwarden.jobs`` entry point group."""
    found: list[tuple[JobSpec, str]] = []
    for ep in sorted(entry_points(group=JOB_GROUP), key=lambda e: (e.name, e.value)):
        origin = _describe(ep)
        try:
            factory = ep.load()
        except Exception as exc:
            raise JobRegistryError(
                f"{origin} cannot be loaded: {exc.__class__.__name__}: {exc}.",
                hint="Reinstall the package that declares it, or uninstall it.",
            ) from exc
        try:
            produced = factory(settings)
        except Exception as exc:
            raise JobRegistryError(
                f"{origin} failed while declaring its jobs: {exc.__class__.__name__}: {exc}."
            ) from exc
        if not isinstance(produced, list | tuple):
            raise JobRegistryError(
                f"{origin} returned {type(produced).__name__}, not a list of JobSpec."
            )
        found.extend((spec, origin) for spec in produced)
    return _check_unique(found)


# --- leader lock --------------------------------------------------------------------------


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class FileLeaderLock:
    """SQLite: one data directory, one host, so an flock on a file there is enough; the
    kernel drops it when the holder dies, however it dies."""

    def __init__(self, path: Path, runner: str) -> None:
        self.path = path
        self.runner = runner
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        # Only for people looking at the file; the lock itself is what counts.
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.runner}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        # The file stays: unlinking it would let a newcomer lock a fresh inode while a
        # waiter still locks the old one, and both would lead.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.release()


def pg_lock_key(schema: str) -> int:
    """The advisory lock key for one schema: advisory locks are per database, and
    separate installs (and parallel tests) each live in their own schema."""
    return (_PG_LOCK_NAMESPACE << 32) | zlib.crc32(schema.encode("utf-8"))


class PgAdvisoryLock:
    """PostgreSQL: a session advisory lock on a connection of its own, held as long as
    that session lives; the server frees it when the leader's connection goes away.

    The leader checks its connection every ``leader_retry_seconds``; after a network
    split, jobs may run on both sides for at most that long plus the keepalive timeouts.
    """

    def __init__(self, runtime: Runtime) -> None:
        # NullPool, so that closing the connection ends the session and frees the lock
        # rather than parking a locked session in a pool.
        self._engine = create_engine(
            runtime.db.engine.url,
            poolclass=NullPool,
            # The leader notices a dead network within seconds (and stops its jobs)
            # instead of hanging in a read for the kernel's default of minutes.
            connect_args={
                "connect_timeout": 10,
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": 20000,
            },
        )
        self._conn: Connection | None = None
        self._held = False

    def _connection(self) -> Connection:
        if self._conn is None:
            # Autocommit: an idle lock connection must not sit "idle in transaction".
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
            # The server, too, must notice a leader host that vanished without closing its
            # socket: the lock is freed only when the server ends the session, and its
            # default TCP keepalive would wait two hours before doing so.
            for setting, value in _SERVER_KEEPALIVES.items():
                conn.execute(text(f"SET {setting} = {value}"))
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing left to free
                log.debug("scheduler lock connection close failed", exc_info=True)

    def try_acquire(self) -> bool:
        try:
            conn = self._connection()
            schema = conn.scalar(text("SELECT current_schema()")) or ""
            got = conn.scalar(
                text("SELECT pg_try_advisory_lock(CAST(:k AS bigint))"),
                {"k": pg_lock_key(str(schema))},
            )
        except BaseException:
            self._drop_connection()
            raise
        self._held = bool(got)
        return self._held

    def still_held(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception:
            log.warning("scheduler lock connection lost", exc_info=True)
            self._drop_connection()
            return False
        return True

    def release(self) -> None:
        self._drop_connection()

    def close(self) -> None:
        self._drop_connection()
        self._engine.dispose()


def make_leader_lock(runtime: Runtime, runner: str) -> LeaderLock:
    if runtime.db.dialect == "postgresql":
        return PgAdvisoryLock(runtime)
    return FileLeaderLock(runtime.settings.home / LOCK_FILE_NAME, runner)


# --- scheduler ----------------------------------------------------------------------------


def default_runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler:
    """Competes for the leader lock in a background thread; while it leads, an APScheduler
    BackgroundScheduler runs the jobs. Every process may run one: only the leader works."""

    def __init__(
        self, runtime: Runtime, jobs: list[JobSpec] | None = None, runner: str | None = None
    ) -> None:
        self.runtime = runtime
        if jobs is None:
            self.jobs = load_jobs(runtime.settings)
        else:
            self.jobs = _check_unique((spec, "the jobs given to Scheduler") for spec in jobs)
        self.runner = runner or default_runner()
        self._lock = make_leader_lock(runtime, self.runner)
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._aps: Any = None
        self._last_error = ""

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this Scheduler was already started; make a new one")
        self._thread = threading.Thread(
            target=self._elect, name="hostwarden-scheduler", daemon=True
        )
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the jobs (waiting for running ones to finish) and hand over leadership."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        else:
            self._lock.close()

    def _elect(self) -> None:
        retry = self.runtime.settings.scheduler.leader_retry_seconds
        try:
            while not self._stop.is_set():
                try:
                    if self._leading.is_set():
                        if not self._lock.still_held():
                            log.warning("scheduler lost the leader lock", runner=self.runner)
                            self._step_down()
                    elif self._lock.try_acquire():
                        self._lead()
                    self._last_error = ""
                except Exception as exc:
                    # A database that is down must not end the election: keep trying, and
                    # say so once per distinct error rather than every retry.
                    message = f"{exc.__class__.__name__}: {exc}"
                    if message != self._last_error:
                        log.error("scheduler leader election failed", error=message)
                        self._last_error = message
                    self._step_down()
                self._stop.wait(retry)
        finally:
            self._step_down()
            self._lock.close()

    def _lead(self) -> None:
        aps = BackgroundScheduler(
            timezone=UTC,
            job_defaults={
                "max_instances": 1,
                "coalesce": True,
                # A run delayed by a busy pool still happens, once (coalesce), not never.
                "misfire_grace_time": None,
            },
        )
        # Each job is next due one interval after its last recorded run (by any leader),
        # at once if that moment has passed or it never ran: a daily job still runs daily
        # when leaders restart more often than once a day.
        last = self._last_starts()
        now = utcnow()
        for spec in self.jobs:
            previous = last.get(spec.name)
            due = now if previous is None else previous + timedelta(seconds=spec.seconds)
            aps.add_job(
                self._run,
                IntervalTrigger(seconds=spec.seconds, timezone=UTC),
                args=(spec,),
                id=spec.name,
                name=spec.name,
                next_run_time=max(due, now),
            )
        self._aps = aps
        self._leading.set()
        aps.start()
        log.info("scheduler is the leader", runner=self.runner, jobs=[j.name for j in self.jobs])

    def _last_starts(self) -> dict[str, datetime]:
        try:
            with self.runtime.reading() as session:
                rows = session.execute(
                    select(JobRun.job, func.max(JobRun.started_at)).group_by(JobRun.job)
                ).all()
        except Exception:
            log.exception("scheduler could not read the last job runs; running all now")
            return {}
        return {job: as_utc(started) for job, started in rows if started is not None}

    def _step_down(self) -> None:
        was_leading = self._leading.is_set()
        self._leading.clear()
        aps, self._aps = self._aps, None
        if aps is not None and aps.running:
            # Wait for running jobs before freeing the lock, so the next leader's runs
            # cannot overlap ours.
            aps.shutdown(wait=True)
        self._lock.release()
        if was_leading:
            log.info("scheduler stepped down", runner=self.runner)

    def _run(self, spec: JobSpec) -> None:
        if not self._leading.is_set():
            return
        try:
            with self.runtime.db.session() as session:
                row = JobRun(job=spec.name, runner=self.runner, started_at=utcnow())
                session.add(row)
                session.flush()
                run_id = row.id
        except Exception:
            log.exception("scheduler could not record a job run", job=spec.name)
            return
        status, detail = "ok", ""
        try:
            spec.func(self.runtime)
        except Exception as exc:
            status, detail = "failed", f"{exc.__class__.__name__}: {exc}"
            log.exception("scheduled job failed", job=spec.name, runner=self.runner)
        try:
            with self.runtime.db.session() as session:
                session.execute(
                    update(JobRun)
                    .where(JobRun.id == run_id)
                    .values(finished_at=utcnow(), status=status, detail=detail)
                )
        except Exception:
            log.exception("scheduler could not record a job result", job=spec.name)


def purge_job_runs(runtime: Runtime) -> int:
    """Delete the job runs started more than ``scheduler.job_runs_keep_days`` ago, except
    each job's last run, so that a job that runs rarely (or stopped) still shows when it
    last ran. One audit entry per purge, with the count; returns the count."""
    keep_days = runtime.settings.scheduler.job_runs_keep_days
    cutoff = utcnow() - timedelta(days=keep_days)
    last_runs = select(func.max(JobRun.id)).group_by(JobRun.job)
    with runtime.operation(system_actor("scheduler")) as op:
        result = op.session.execute(
            delete(JobRun).where(JobRun.started_at < cutoff, JobRun.id.not_in(last_runs))
        )
        assert isinstance(result, CursorResult)
        removed = int(result.rowcount)
        if removed:
            op.audit(
                "job_run.purge",
                "job_run",
                "*",
                after={"removed": removed, "started_before": isoformat(cutoff)},
                reason=f"job runs older than {keep_days} days; each job's last run kept",
            )
    return removed


def run_forever(runtime: Runtime, stop_event: threading.Event | None = None) -> None:
    """Run a Scheduler until SIGTERM or SIGINT (or ``stop_event``), then stop cleanly."""
    stop = stop_event if stop_event is not None else threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    scheduler = Scheduler(runtime)
    previous: dict[int, Any] = {}
    # Signal handlers can only be installed from the main thread; elsewhere the caller
    # stops us through the event.
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        scheduler.start()
        log.info("scheduler started", runner=scheduler.runner)
        # A timeout keeps the wait responsive to signals on every platform.
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown()
        for number, handler in previous.items():
            signal.signal(number, handler)
        log.info("scheduler stopped", runner=scheduler.runner)
