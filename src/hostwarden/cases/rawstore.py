"""The report store: every report and customer attachment exactly as received, kept under
its SHA-256, written whole or not at all."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hostwarden.core.runtime import Runtime
from hostwarden.errors import HostwardenError, NotFound


def store_dir(runtime: Runtime) -> Path:
    return runtime.settings.home / "reports"


def path_of(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / f"{sha256}.bin"


def _libc_syncfs() -> Any:
    name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(name, use_errno=True).syncfs if name else None
    except (OSError, AttributeError):
        return None
    return function


#: Linux syncfs(2): Python's os module has no binding (3.11), and one call makes a whole
#: batch durable where an fsync per file costs about a millisecond each.
_SYNCFS = _libc_syncfs()


def _sync(root: Path, files: Sequence[Path]) -> None:
    """Make ``files`` (and the directory entries under ``root``) durable."""
    if _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error))
        finally:
            os.close(fd)
        return
    for path in [*files, *{f.parent for f in files}]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def put_many(root: Path, datas: Sequence[bytes]) -> list[str]:
    """Store a batch; returns the SHA-256 of each. Every new file is written to a
    temporary name, the batch is synced, renamed, and synced again, so a crash leaves
    whole files or none, and never a report row (written after this returns) without its
    bytes. One or two filesystem syncs per batch instead of one per file."""
    digests = [hashlib.sha256(data).hexdigest() for data in datas]
    todo: dict[str, bytes] = {}
    for digest, data in zip(digests, datas, strict=True):
        target = path_of(root, digest)
        if digest not in todo and not (target.exists() and target.stat().st_size == len(data)):
            todo[digest] = data
    if not todo:
        return digests
    written: list[tuple[Path, Path]] = []
    try:
        for digest, data in todo.items():
            target = path_of(root, digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temporary.write_bytes(data)
            written.append((temporary, target))
        _sync(root, [t for t, _ in written])
        for temporary, target in written:
            os.replace(temporary, target)
        _sync(root, [target for _, target in written])
    except OSError as exc:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        size = sum(len(d) for d in todo.values())
        raise HostwardenError(
            f"could not store {len(todo)} report(s) ({size} bytes) under {root}: {exc.strerror}.",
            hint="Free disk space or fix the permissions of the data directory, then send "
            "or import the reports again; nothing of them was kept.",
        ) from exc
    return digests


def get(root: Path, sha256: str) -> bytes:
    """The stored bytes, checked against their name."""
    target = path_of(root, sha256)
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        raise NotFound(
            f"the raw report {sha256} is not in the report store {root}.",
            hint="It was removed outside hostwarden; restore it from a backup.",
        ) from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise HostwardenError(
            f"the raw report {sha256} in {root} no longer matches its SHA-256: it was "
            "modified after it was stored.",
            hint="Restore it from a backup; do not hand it over as evidence as it is.",
        )
    return data
