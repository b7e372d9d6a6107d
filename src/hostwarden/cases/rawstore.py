"""The report store: every report and customer attachment exactly as received, kept under
its SHA-256, written whole or not at all."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hostwarden.core.runtime import Runtime
from hostwarden.errors import HostwardenError, NotFound


def store_dir(runtime: Runtime) -> Path:
    return runtime.settings.home / "reports"


def path_of(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / f"{sha256}.bin"


def put(root: Path, data: bytes, *, sync: bool = True) -> str:
    """Store ``data``; returns its SHA-256. The same bytes again are stored once.

    Written to a temporary name, synced, then renamed, so a crash or a full disk leaves
    either the whole file or none (a report's row is only written after this returns)."""
    digest = hashlib.sha256(data).hexdigest()
    target = path_of(root, digest)
    if target.exists() and target.stat().st_size == len(data):
        return digest
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise HostwardenError(
            f"could not store the report ({len(data)} bytes) under {root}: {exc.strerror}.",
            hint="Free disk space or fix the permissions of the data directory, then send "
            "or import the report again; nothing of it was kept.",
        ) from exc
    return digest


def sync_dirs(root: Path, digests: list[str]) -> None:
    """fsync the directories of new files, so their renames survive a crash."""
    for directory in {path_of(root, d).parent for d in digests}:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
