"""Bulk import and export of registry data: CSV or JSON, row-level errors, all or nothing."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from hostwarden.core.runtime import Actor, Operation, Runtime
from hostwarden.errors import HostwardenError, ValidationFailed

Outcome = Literal["created", "updated", "unchanged"]
FORMATS = ("csv", "json")


class RowProblem(Exception):
    """Raised by an importer's parse or apply for one row: which column and why."""

    def __init__(self, column: str, problem: str) -> None:
        super().__init__(f"{column}: {problem}")
        self.column = column
        self.problem = problem


class Importer(Protocol):
    """One kind of record (customers, instances, …): its columns, and how a row becomes
    stored data. ``apply`` upserts by external id (or another natural key), so importing
    the same file twice changes nothing the second time."""

    @property
    def kind(self) -> str: ...

    @property
    def columns(self) -> Sequence[str]: ...

    @property
    def required(self) -> Sequence[str]: ...

    def parse(self, row: dict[str, str]) -> Any: ...

    def apply(self, op: Operation, parsed: Any) -> Outcome: ...


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row (the header of a CSV file is not counted)
    column: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.problem}"


@dataclass
class ImportReport:
    kind: str
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False
    written: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "written": self.written,
            "errors": [e.__dict__ for e in self.errors],
        }


def detect_format(path: Path, explicit: str | None) -> str:
    fmt = (explicit or path.suffix.lstrip(".")).lower()
    if fmt in ("jsonl", "ndjson"):
        fmt = "json"
    if fmt not in FORMATS:
        raise ValidationFailed(
            f"cannot tell the format of {path.name}.",
            hint="Name it .csv or .json, or pass --format.",
        )
    return fmt


def check_format(fmt: str, use: Literal["import", "export"]) -> str:
    """``fmt`` when it names a bulk format; the CLI and the API refuse others alike."""
    if fmt not in FORMATS:
        raise ValidationFailed(
            f"'{fmt}' is not an {use} format.", hint=f"Use {' or '.join(FORMATS)}."
        )
    return fmt


def read_rows(data: bytes, fmt: str) -> list[dict[str, str]]:
    """Rows as text dictionaries. JSON may be an array of objects or JSON lines."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(
            f"the file is not UTF-8 (byte {exc.start}).", hint="Save it as UTF-8 and try again."
        ) from exc
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise ValidationFailed(
                "the CSV file has no header row.", hint="The first line must name the columns."
            )
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    stripped = text.strip()
    try:
        items = (
            json.loads(stripped)
            if stripped.startswith("[")
            else [json.loads(line) for line in stripped.splitlines() if line.strip()]
        )
    except ValueError as exc:
        raise ValidationFailed(
            f"the JSON is malformed: {exc}.",
            hint="Give an array of objects or one object per line.",
        ) from exc
    rows: list[dict[str, str]] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ValidationFailed(f"item {number} is not a JSON object.")
        rows.append({str(k): "" if v is None else str(v).strip() for k, v in item.items()})
    return rows


def _check_columns(importer: Importer, rows: list[dict[str, str]]) -> None:
    if not rows:
        return
    present = set(rows[0])
    unknown = sorted(present - set(importer.columns))
    missing = sorted(set(importer.required) - present)
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        raise ValidationFailed(
            f"{importer.kind} file: {'; '.join(parts)}.",
            hint=f"Columns are: {', '.join(importer.columns)} (required: "
            f"{', '.join(importer.required)}).",
        )


class _DryRun(Exception):
    """Rolls the unit of work back after a dry run."""


def run_import(
    runtime: Runtime,
    actor: Actor,
    importer: Importer,
    rows: list[dict[str, str]],
    *,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate every row, then apply them in one transaction. Any row error stops the
    whole import (nothing written) unless ``skip_invalid``, which applies the good rows and
    reports the others. A dry run does everything, including the checks that need the
    database, and then rolls back."""
    report = ImportReport(kind=importer.kind, total=len(rows), dry_run=dry_run)
    _check_columns(importer, rows)
    parsed: list[tuple[int, Any]] = []
    for number, row in enumerate(rows, start=1):
        try:
            parsed.append((number, importer.parse(row)))
        except RowProblem as exc:
            report.errors.append(RowError(number, exc.column, exc.problem))
        except HostwardenError as exc:
            report.errors.append(RowError(number, "-", str(exc)))
    if report.errors and not skip_invalid:
        return report
    try:
        with runtime.operation(actor) as op:
            for number, item in parsed:
                savepoint = op.session.begin_nested()
                try:
                    outcome = importer.apply(op, item)
                    savepoint.commit()
                except (RowProblem, HostwardenError) as exc:
                    savepoint.rollback()
                    op.audit_head = None  # the rolled-back rows may have held entries
                    column = exc.column if isinstance(exc, RowProblem) else "-"
                    problem = exc.problem if isinstance(exc, RowProblem) else str(exc)
                    report.errors.append(RowError(number, column, problem))
                    continue
                finally:
                    if progress is not None:
                        progress(1)
                setattr(report, outcome, getattr(report, outcome) + 1)
            if (report.errors and not skip_invalid) or dry_run:
                raise _DryRun
    except _DryRun:
        report.errors.sort(key=lambda e: e.row)
        if not dry_run:
            report.created = report.updated = report.unchanged = 0
        report.skipped = len(report.errors) if skip_invalid else 0
        return report
    report.errors.sort(key=lambda e: e.row)
    report.skipped = len(report.errors)
    report.written = True
    return report


def write_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: str) -> Iterator[str]:
    """Export in the same shape the importer reads, so an export can be imported again."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        yield buffer.getvalue()
        for row in rows:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
            yield buffer.getvalue()
        return
    for row in rows:
        yield json.dumps({k: row.get(k) for k in columns}, ensure_ascii=False, default=str) + "\n"
