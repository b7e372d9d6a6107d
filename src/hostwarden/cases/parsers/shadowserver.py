"""Parser for Shadowserver report mails: one event per row of the attached CSV (plain or zipped).

The report type comes from the file name (``2026-05-01-scan_ssh-asn64496.csv``: type
``scan_ssh``) and decides the category; every column of a row goes into ``extra``. A row
without a valid address becomes a note. Zip attachments are opened defensively: members
whose declared size or compression ratio is implausible are refused, and the bytes
actually inflated are counted, because a zip bomb's declared sizes can lie.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

from hostwarden.cases.parsers.base import ParsedReport, ReportEvent, ReportMessage
from hostwarden.cases.parsers.common import (
    Moment,
    decode_bytes,
    new_event,
    normalise_ip,
    parse_time,
    port_number,
    report_time,
)

#: Most bytes inflated from one report's zip attachments, all members together.
MAX_UNZIPPED_BYTES = 50 * 1024 * 1024
#: Highest inflated/compressed ratio accepted for a zip member (CSV is ~5-20).
MAX_COMPRESSION_RATIO = 100
#: Members read per zip file.
MAX_ZIP_MEMBERS = 64
#: Rows read per report; a larger report is cut short with a note.
MAX_ROWS = 200_000
_CHUNK = 64 * 1024

_FILE_NAME = re.compile(
    r"^\d{4}-\d{2}-\d{2}-(?P<type>[a-z0-9_]+?)(?:-[a-z0-9_.-]*)?\.(?P<ext>csv|zip)$", re.I
)
#: Report type fragments to categories, checked in order (first fragment found wins).
_TYPE_CATEGORIES = (
    ("brute_force", "bruteforce"),
    ("bruteforce", "bruteforce"),
    ("ddos", "ddos"),
    ("amplification", "ddos"),
    ("drone", "malware"),
    ("sinkhole", "malware"),
    ("infected", "malware"),
    ("botnet", "malware"),
    ("malware", "malware"),
    ("compromised", "malware"),
    ("phish", "phishing"),
    ("spam", "spam"),
    ("darknet", "scanning"),
    ("honeypot_scan", "scanning"),
    ("scanner", "scanning"),
)
_IP_COLUMNS = ("ip", "src_ip", "source_ip", "ip_address")
_PORT_COLUMNS = ("port", "src_port", "source_port")
_TIME_COLUMNS = ("timestamp", "time", "date", "first_seen")
#: Columns the event carries in its own fields rather than in ``extra``.
_NOT_EXTRA = frozenset((*_IP_COLUMNS, *_PORT_COLUMNS, *_TIME_COLUMNS))
_NOT_EXTRA_OR_SET = _NOT_EXTRA | {"report_type", "file", "row"}


class ShadowserverParser:
    name = "shadowserver"

    def certain(self, message: ReportMessage) -> bool:
        """Whether ``score`` is 1.0 (see ``parsers.choose``)."""
        return _from_shadowserver(message) and _named(message)

    def score(self, message: ReportMessage) -> float:
        named = _named(message)
        from_shadowserver = _from_shadowserver(message)
        if named and from_shadowserver:
            return 1.0
        if from_shadowserver:
            return 0.9
        return 0.6 if named else 0.0

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        events: list[ReportEvent] = []
        budget = _Budget()
        for part in message.parts:
            name = part.filename or ""
            lowered = name.lower()
            if lowered.endswith(".zip"):
                if not isinstance(part.content, bytes):
                    notes.append(f"{name}: the zip arrived as text; it cannot be opened")
                    continue
                for member, text in _zip_csvs(name, part.content, budget, notes):
                    events.extend(self._rows(message, member, text, notes, len(events)))
            elif lowered.endswith(".csv") or part.content_type == "text/csv":
                content = part.content
                text = content if isinstance(content, str) else decode_bytes(content)[0]
                events.extend(self._rows(message, name, text, notes, len(events)))
        if not events and not notes:
            notes.append("the Shadowserver mail has no CSV or zip attachment")
        return ParsedReport(parser=self.name, events=events, notes=notes)

    def _rows(
        self, message: ReportMessage, file_name: str, text: str, notes: list[str], done: int
    ) -> list[ReportEvent]:
        report_type = _report_type(file_name, message.headers.get("subject", ""))
        category = _category(report_type)
        lines = text.splitlines()
        if not lines:
            notes.append(f"{file_name}: empty file")
            return []
        header_line = lines[0].lstrip("\ufeff")
        size_limit = csv.field_size_limit()
        columns = [c.strip().lower() for c in _csv_values(header_line, size_limit)]
        ip_column = next((c for c in _IP_COLUMNS if c in columns), None)
        if ip_column is None:
            notes.append(f"{file_name}: no ip column in {header_line[:200]!r}")
            return []
        events: list[ReportEvent] = []
        fallback: Moment | None = None
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            if done + len(events) >= MAX_ROWS:
                notes.append(f"{file_name}: stopped at row {number}; the limit is {MAX_ROWS} rows")
                break
            values = _csv_values(line, size_limit)
            row = dict(zip(columns, values, strict=False))
            ip = normalise_ip(row.get(ip_column, ""))
            if ip is None:
                notes.append(
                    f"{file_name} row {number}: no valid IP address ({row.get(ip_column, '')!r})"
                )
                continue
            when = _row_time(row)
            if when is None:
                fallback = fallback or report_time(message, notes)
                when = fallback
            port = next((port_number(row[c]) for c in _PORT_COLUMNS if row.get(c)), None)
            extra: dict[str, Any] = {"report_type": report_type, "file": file_name, "row": number}
            # The columns with a value after these three, in order (a column of one of
            # their names is left out, as setdefault would leave it).
            extra.update({k: v for k, v in row.items() if v and k not in _NOT_EXTRA_OR_SET})
            events.append(
                new_event(
                    _row_category(category, row),
                    when,
                    message.reporter,
                    f"{file_name}\n{header_line}\n{line}",
                    ip=ip,
                    port=port,
                    domain=row.get("hostname") or None,
                    extra=extra,
                )
            )
        return events


def _csv_values(line: str, size_limit: int) -> list[str]:
    """``next(csv.reader([line]))`` for one line of ``str.splitlines()``.

    Without a quote the reader only splits at the commas (the default dialect has no
    escape character and keeps spaces); it raises for a NUL and for a field over the
    size limit, which a line no longer than the limit cannot hold, and reads an empty
    line as no values. Anything else is read by the csv module itself."""
    if line and '"' not in line and "\0" not in line and len(line) <= size_limit:
        return line.split(",")
    return next(csv.reader([line]))


def _named(message: ReportMessage) -> bool:
    return any(p.filename and _FILE_NAME.match(p.filename) for p in message.parts)


def _from_shadowserver(message: ReportMessage) -> bool:
    return message.reporter.endswith("shadowserver.org") or (
        "shadowserver" in message.headers.get("subject", "").lower()
    )


class _Budget:
    """Bytes still allowed to be inflated from this report's zip files."""

    def __init__(self) -> None:
        self.left = MAX_UNZIPPED_BYTES


def _zip_csvs(
    name: str, data: bytes, budget: _Budget, notes: list[str]
) -> Iterator[tuple[str, str]]:
    """(member name, text) of each CSV in the zip, within the limits; every refusal or
    read error becomes a note instead of an exception."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        notes.append(f"{name}: not a readable zip file ({error})")
        return
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            notes.append(f"{name}: {len(members)} members; only the first {MAX_ZIP_MEMBERS} read")
            members = members[:MAX_ZIP_MEMBERS]
        for member in members:
            label = f"{name}:{member.filename}"
            if not member.filename.lower().endswith(".csv"):
                notes.append(f"{label}: not a CSV file; skipped")
                continue
            if member.file_size > budget.left:
                notes.append(
                    f"{label}: declares {member.file_size} bytes uncompressed, more than the "
                    f"{budget.left} bytes left of the {MAX_UNZIPPED_BYTES}-byte limit for a "
                    "report; refused (possible zip bomb)"
                )
                continue
            if member.file_size > max(member.compress_size, 1) * MAX_COMPRESSION_RATIO:
                notes.append(
                    f"{label}: compression ratio over {MAX_COMPRESSION_RATIO}:1; refused "
                    "(possible zip bomb)"
                )
                continue
            content = _read_member(archive, member, label, budget, notes)
            if content is not None:
                yield member.filename, decode_bytes(content)[0]


def _read_member(
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    label: str,
    budget: _Budget,
    notes: list[str],
) -> bytes | None:
    # Declared sizes are the sender's word; stop on what is actually inflated.
    limit = min(budget.left, max(member.compress_size, 1) * MAX_COMPRESSION_RATIO)
    chunks: list[bytes] = []
    read = 0
    try:
        with archive.open(member) as stream:
            while True:
                chunk = stream.read(min(_CHUNK, limit - read + 1))
                if not chunk:
                    break
                read += len(chunk)
                if read > limit:
                    notes.append(
                        f"{label}: inflates past {limit} bytes although it declared "
                        f"{member.file_size}; refused (zip bomb)"
                    )
                    budget.left -= read
                    return None
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as error:
        notes.append(f"{label}: cannot be read ({error}); skipped")
        return None
    except (NotImplementedError, RuntimeError) as error:  # unsupported method, encrypted
        notes.append(f"{label}: cannot be opened ({error}); skipped")
        return None
    budget.left -= read
    return b"".join(chunks)


def _report_type(file_name: str, subject: str) -> str:
    base = file_name.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    match = _FILE_NAME.match(base)
    if match is not None:
        return match.group("type").lower()
    stem = base.rsplit(".", 1)[0].lower()
    if stem:
        return stem
    words = re.sub(r"[^a-z0-9]+", "_", subject.lower()).strip("_")
    return words or "unknown"


def _category(report_type: str) -> str:
    for fragment, category in _TYPE_CATEGORIES:
        if fragment in report_type:
            return category
    # scan_* and other exposure reports: an open or vulnerable service, not abuse by it.
    return "other"


def _row_category(category: str, row: dict[str, str]) -> str:
    if category != "other":
        return category
    hint = f"{row.get('infection', '')} {row.get('tag', '')}".lower()
    return (
        "malware" if any(w in hint for w in ("botnet", "trojan", "malware", "ransom")) else category
    )


def _row_time(row: dict[str, str]) -> Moment | None:
    for column in _TIME_COLUMNS:
        value = row.get(column)
        if value:
            return parse_time(value, chinese=False)
    return None
