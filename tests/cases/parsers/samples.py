"""Loads the sample abuse reports in tests/data/reports for the parser tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hostwarden.cases.parsers import choose, parse_message
from hostwarden.cases.parsers.base import ParsedReport, ReportMessage
from hostwarden.cases.parsers.mime import read_message

REPORTS = Path(__file__).resolve().parents[2] / "data" / "reports"


def sample(name: str) -> bytes:
    return (REPORTS / name).read_bytes()


def parse_sample(name: str) -> tuple[ReportMessage, str, ParsedReport]:
    """The sample read, the name of the parser chosen for it, and what it parsed."""
    message = read_message(sample(name))
    return message, choose(message).name, parse_message(message)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
