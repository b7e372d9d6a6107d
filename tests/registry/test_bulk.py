"""Bulk import: row-level errors, all or nothing, dry run, skip-invalid, idempotent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hostwarden.core import audit
from hostwarden.core.runtime import Operation, Runtime, system_actor
from hostwarden.errors import Conflict, ValidationFailed
from hostwarden.registry import bulk
from hostwarden.registry.models import MachineRoom


@dataclass
class Room:
    name: str
    address: str


class RoomImporter:
    """A minimal importer over machine rooms, upserting by name."""

    kind = "rooms"
    columns = ("name", "address")
    required = ("name",)

    def parse(self, row: dict[str, str]) -> Room:
        if not row.get("name"):
            raise bulk.RowProblem("name", "is empty")
        if len(row["name"]) > 20:
            raise bulk.RowProblem("name", "is longer than 20 characters")
        return Room(row["name"], row.get("address", ""))

    def apply(self, op: Operation, parsed: Room) -> bulk.Outcome:
        if parsed.name.startswith("FORBIDDEN"):
            raise Conflict(f"room {parsed.name} is reserved.")
        room = op.session.scalar(select(MachineRoom).where(MachineRoom.name == parsed.name))
        if room is None:
            room = MachineRoom(name=parsed.name, address=parsed.address)
            op.session.add(room)
            op.session.flush()
            op.audit("room.create", "machine_room", room.id, after={"name": room.name})
            return "created"
        if room.address == parsed.address:
            return "unchanged"
        room.address = parsed.address
        op.audit("room.update", "machine_room", room.id, after={"address": parsed.address})
        return "updated"


def rooms(runtime: Runtime) -> int:
    with runtime.reading() as session:
        return session.scalar(select(func.count()).select_from(MachineRoom)) or 0


def run(runtime: Runtime, text: str, fmt: str = "csv", **kw: bool) -> bulk.ImportReport:
    rows = bulk.read_rows(text.encode(), fmt)
    return bulk.run_import(runtime, system_actor("import"), RoomImporter(), rows, **kw)


GOOD = "name,address\nBJ-1,Beijing Yizhuang\nSH-2,Shanghai Waigaoqiao\n"
MIXED = "name,address\nBJ-1,Beijing\n,nowhere\nTHIS-NAME-IS-FAR-TOO-LONG,x\nFORBIDDEN-1,x\n"


def test_a_clean_file_is_imported_and_a_second_run_changes_nothing(runtime: Runtime) -> None:
    first = run(runtime, GOOD)
    assert (first.created, first.written, first.errors) == (2, True, [])
    second = run(runtime, GOOD)
    assert (second.created, second.unchanged) == (0, 2)
    assert rooms(runtime) == 2


def test_any_bad_row_stops_the_whole_import_and_names_row_and_column(runtime: Runtime) -> None:
    entries_before = audit.verify(runtime).entries
    report = run(runtime, MIXED)
    assert report.written is False
    assert [str(e) for e in report.errors] == [
        "row 2, column name: is empty",
        "row 3, column name: is longer than 20 characters",
    ]
    assert rooms(runtime) == 0
    assert audit.verify(runtime).entries == entries_before


def test_errors_found_while_applying_also_stop_everything(runtime: Runtime) -> None:
    report = run(runtime, "name\nBJ-1\nFORBIDDEN-2\n")
    assert report.written is False
    assert [(e.row, e.problem) for e in report.errors] == [(2, "room FORBIDDEN-2 is reserved.")]
    assert rooms(runtime) == 0


def test_skip_invalid_applies_the_good_rows_and_reports_the_rest(runtime: Runtime) -> None:
    report = run(runtime, MIXED, skip_invalid=True)
    assert report.written is True
    assert (report.created, report.skipped) == (1, 3)
    assert [e.row for e in report.errors] == [2, 3, 4]
    assert rooms(runtime) == 1
    assert audit.verify(runtime).ok


def test_a_dry_run_reports_what_would_happen_and_writes_nothing(runtime: Runtime) -> None:
    report = run(runtime, GOOD, dry_run=True)
    assert (report.created, report.written, report.dry_run) == (2, False, True)
    assert rooms(runtime) == 0
    assert audit.verify(runtime).ok


def test_json_arrays_and_json_lines_are_read_like_csv(runtime: Runtime) -> None:
    as_array = json.dumps([{"name": "BJ-1", "address": "Beijing"}])
    assert run(runtime, as_array, fmt="json").created == 1
    as_lines = '{"name": "SH-2", "address": null}\n{"name": "GZ-3"}\n'
    assert run(runtime, as_lines, fmt="json").created == 2


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("", "csv", "no header"),
        ("name,colour\nBJ,red\n", "csv", "unknown column"),
        ("address\nBeijing\n", "csv", "missing column"),
        ("[1, 2]", "json", "not a JSON object"),
        ("{broken", "json", "malformed"),
    ],
)
def test_unreadable_files_are_refused_whole(
    runtime: Runtime, text: str, fmt: str, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        run(runtime, text, fmt)
    assert rooms(runtime) == 0


def test_non_utf8_files_are_refused_with_the_byte_offset() -> None:
    with pytest.raises(ValidationFailed, match="not UTF-8"):
        bulk.read_rows("name\n北京\n".encode("gbk"), "csv")


def test_the_format_is_taken_from_the_name_or_given(tmp_path: Path) -> None:
    assert bulk.detect_format(tmp_path / "a.CSV", None) == "csv"
    assert bulk.detect_format(tmp_path / "a.jsonl", None) == "json"
    assert bulk.detect_format(tmp_path / "a.txt", "json") == "json"
    with pytest.raises(ValidationFailed, match="--format"):
        bulk.detect_format(tmp_path / "a.txt", None)


def test_an_export_reads_back_as_the_same_rows() -> None:
    rows = [{"name": "BJ-1", "address": 'Beijing, "Yizhuang"'}, {"name": "SH-2", "address": None}]
    for fmt in bulk.FORMATS:
        text = "".join(bulk.write_rows(rows, ("name", "address"), fmt))
        again = bulk.read_rows(text.encode(), fmt)
        assert again == [
            {"name": "BJ-1", "address": 'Beijing, "Yizhuang"'},
            {"name": "SH-2", "address": ""},
        ]
