"""Segment files on disk, for every store that keeps them (flow Parquet store, log datasets).

One place writes a sealed segment (temporary name, fsync, rename, fsync directory, then
the seal entry in the chain), says why a segment cannot be read, tells whether an
expired segment's file is still there, and removes expired files. The flow store and
the log datasets differ only in their file's bytes and index fields.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import utcnow
from hostwarden.flows.models import FlowSegment
from hostwarden.flows.store import (
    DAY_MS,
    Segment,
    SegmentUnreadable,
    StoreWriteFailed,
    integrity,
    sealing,
)

if TYPE_CHECKING:
    from hostwarden.core.runtime import Runtime

log = get_logger("hostwarden.flows.store")


def write_all(fd: int, data: memoryview) -> None:
    """Write every byte to ``fd`` (the one place bytes of a segment reach the disk;
    tests replace it to simulate a full disk)."""
    while data:
        written = os.write(fd, data)
        data = data[written:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: memoryview) -> None:
    """Temporary name, fsync, rename, fsync directory: after a crash the file is either
    complete under its name or absent (a leftover ``.tmp`` at worst). Directories it
    creates are made durable in their parents too."""
    new_dirs = [p for p in (path.parent.parent, path.parent) if not p.is_dir()]
    path.parent.mkdir(parents=True, exist_ok=True)
    for directory in new_dirs:
        fsync_dir(directory.parent)
    tmp = path.with_name(f".{path.name}{integrity.TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def segment_name(prefix: str, day_name: str, sealed_at: datetime) -> str:
    """``[<dataset>/]YYYY-MM-DD/<sealed>-<token>.parquet``, relative to the store root."""
    return (
        f"{prefix}{day_name}/{sealed_at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        f"{integrity.SEGMENT_SUFFIX}"
    )


def seal_file(
    runtime: Runtime,
    root: Path,
    data: bytes | memoryview,
    *,
    day_name: str,
    fields: dict[str, Any],
    what: str,
    kept: str,
    dataset: str | None = None,
) -> Segment:
    """Write one segment's bytes and chain them; ``what`` names it in messages (``flow
    segment``, ``ssh log segment``) and ``kept`` says what became of the records when
    the write failed."""
    sealed_at = utcnow()
    name = segment_name(f"{dataset}/" if dataset else "", day_name, sealed_at)
    path = root / name
    view = memoryview(data)
    digest = hashlib.sha256(view).hexdigest()
    try:
        write_file(path, view)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise StoreWriteFailed(
            f"{what} {name} ({fields['rows']} records) could not be written to "
            f"{path.parent}: {exc.strerror or exc}.",
            hint=(
                "The disk is full: free space there or move flows.store_dir. "
                if full
                else "Check the directory's permissions and the disk. "
            )
            + kept,
        ) from exc
    extra = {} if dataset is None else {"dataset": dataset}
    try:
        segment, checkpoint = sealing.record_seal(
            runtime,
            name=name,
            day=day_name,
            sha256=digest,
            size=len(view),
            fields=fields,
            sealed_at=sealed_at,
            **extra,
        )
    except BaseException:
        # Not chained, so not sealed: a file left here would show as "added".
        with suppress(OSError):
            path.unlink()
            fsync_dir(path.parent)
        raise
    # After the commit: a failure here is logged, never raised, or the records would go
    # back to the buffer and be sealed twice.
    sealing.publish_head(runtime, checkpoint)
    log.info(f"{what} sealed", segment=name, rows=fields["rows"], bytes=len(view))
    return segment


def unreadable(root: Path, names: Sequence[str], exc: Exception, what: str) -> SegmentUnreadable:
    """Name the segment a query could not read: from the engine's message, else by
    opening each file's footer."""
    message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    culprit = next((n for n in names if str(root / n) in str(exc)), None)
    if culprit is None:
        for name in names:
            try:
                pq.read_metadata(root / name)
            except Exception:
                culprit = name
                break
    hint = "Run `hostwarden logs verify` to see whether it was altered, truncated or deleted."
    if culprit is None:
        return SegmentUnreadable(
            f"the {what}s of this time range cannot be read: {message}", hint=hint
        )
    state = "is missing" if not (root / culprit).exists() else "is corrupt"
    return SegmentUnreadable(f"{what} {culprit} {state}: {message}", hint=hint)


def holds_any(
    connection: duckdb.DuckDBPyConnection, probe: str, root: Path, segment: Segment, hold_id: int
) -> bool:
    """Whether ``SELECT EXISTS (probe)`` over the segment's file (``$file``) finds a row,
    for a legal hold's check; True when the file cannot be read, so that a damaged
    segment is kept rather than expired."""
    try:
        found = connection.execute(f"SELECT EXISTS ({probe})", {"file": str(root / segment.name)})
        row = found.fetchone()
    except duckdb.Error as exc:
        log.warning(
            "segment not readable while checking a legal hold; kept",
            segment=segment.name,
            hold=hold_id,
            error=str(exc).splitlines()[0] if str(exc) else "",
        )
        return True
    return bool(row and row[0])


def file_state(root: Path, row: FlowSegment) -> str:
    """present, missing or resized (against the size it was sealed with)."""
    try:
        size = (root / row.name).stat().st_size
    except FileNotFoundError:
        return "missing"
    return "present" if size == row.size else "resized"


def expired_leftovers(
    session: Session, root: Path, prefixes: Iterable[str], cutoff_ms: int
) -> list[str]:
    """Files of segments expired earlier that are still there (a crash between the
    expiry's commit and the deletion), in day directories old enough to expire, under
    each of ``prefixes`` ("" for the store root, ``"ssh/"`` for a dataset)."""
    cutoff_day = sealing.day_text(cutoff_ms // DAY_MS)
    on_disk: list[str] = []
    for prefix in prefixes:
        top = root / prefix if prefix else root
        if not top.is_dir():
            continue
        for day in top.iterdir():
            # Day directories only (the store root also holds the datasets' folders).
            if day.is_dir() and _is_day(day.name) and day.name <= cutoff_day:
                # A companion file left alone names its segment (removing a segment
                # removes both).
                on_disk += [
                    integrity.segment_of_companion(name) or name
                    for f in day.iterdir()
                    if f.name.endswith(integrity.SEGMENT_SUFFIX)
                    for name in [f"{prefix}{day.name}/{f.name}"]
                ]
    if not on_disk:
        return []
    expired = session.scalars(
        select(FlowSegment.name).where(
            FlowSegment.name.in_(sorted(set(on_disk))), FlowSegment.expired_at.is_not(None)
        )
    )
    return list(expired)


def _is_day(name: str) -> bool:
    return len(name) == 10 and name[4] == "-" and name[7] == "-" and name.replace("-", "").isdigit()


def remove_files(root: Path, names: Sequence[str]) -> None:
    """Delete expired segments' files; a day directory left empty goes too."""
    touched: set[Path] = set()
    for name in names:
        path = root / name
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            log.exception("expired segment file not removed; retried next run", segment=name)
            continue
        touched.add(path.parent)
    for directory in touched:
        with suppress(OSError):
            if any(directory.iterdir()):
                fsync_dir(directory)
            else:
                directory.rmdir()
                fsync_dir(directory.parent)
