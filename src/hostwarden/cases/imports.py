"""Reading report files for ``hostwarden reports import``: one .eml, an mbox, or a
directory of them (Maildir's cur/ and new/ included)."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hostwarden.errors import NotFound, ValidationFailed

#: Suffixes read as one message each; files without a suffix (Maildir) too.
MESSAGE_SUFFIXES = (".eml", ".msg", ".txt", "")
MBOX_SUFFIXES = (".mbox", ".mbx")


@dataclass(frozen=True)
class ReportFile:
    #: Where it came from: the path, and "#n" for the n-th message of an mbox.
    name: str
    raw: bytes
    #: Why the file could not be read as a report ("" when it could); the import goes on.
    error: str = ""


def _is_mbox(path: Path) -> bool:
    if path.suffix.lower() in MBOX_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        return handle.read(5) == b"From "


def _mbox(path: Path) -> Iterator[ReportFile]:
    box = mailbox.mbox(path, create=False)
    try:
        for n, key in enumerate(box.keys(), start=1):
            yield ReportFile(f"{path}#{n}", box.get_bytes(key))
    finally:
        box.close()


def count(path: Path) -> int:
    """How many files the import will read (for the progress bar)."""
    if path.is_dir():
        return sum(1 for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return 1


def read_reports(path: Path) -> Iterator[ReportFile]:
    """Every message under ``path``, in name order; raises for a path that is not there."""
    if not path.exists():
        raise NotFound(f"{path} does not exist.", hint="Give an .eml file, an mbox or a directory.")
    if path.is_file():
        yield from _one_file(path)
        return
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValidationFailed(f"{path} holds no files.", hint="Point at the reports themselves.")
    for file in files:
        yield from _one_file(file)


def _one_file(path: Path) -> Iterator[ReportFile]:
    try:
        if path.stat().st_size == 0:
            yield ReportFile(str(path), b"", "the file is empty")
        elif _is_mbox(path):
            yield from _mbox(path)
        else:
            yield ReportFile(str(path), path.read_bytes())
    except (OSError, mailbox.Error) as exc:
        yield ReportFile(str(path), b"", f"could not be read: {exc}")
