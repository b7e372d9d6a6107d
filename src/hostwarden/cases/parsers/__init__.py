"""Abuse-report parsers: finds them (entry points), picks one per report and runs it.

Built-in and third-party parsers register alike in the ``hostwarden.report_parsers``
entry-point group (a class taking no arguments). The parser with the highest score parses
a report; ties go to the first in name order, and ``generic`` always comes last.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import cast

from hostwarden.cases.parsers.base import ParsedReport, ReportMessage, ReportParser
from hostwarden.cases.parsers.mime import read_message
from hostwarden.errors import ConfigError

ENTRY_POINT_GROUP = "hostwarden.report_parsers"
GENERIC = "generic"
#: The highest score a built-in parser gives: the report is certainly its format.
CERTAIN = 1.0


def load_parsers() -> list[ReportParser]:
    """Every registered parser, in the order ties are settled (generic last)."""
    return list(_loaded())


@cache
def _loaded() -> tuple[ReportParser, ...]:
    parsers: list[ReportParser] = []
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for name in sorted(found, key=lambda n: (n == GENERIC, n)):
        try:
            parser = found[name].load()()
        except Exception as error:  # a plugin can fail in any way while importing
            raise ConfigError(
                f"report parser plugin '{name}' ({found[name].value}) failed to load: {error}",
                hint="Fix or uninstall the package that provides it.",
            ) from error
        if not isinstance(parser, ReportParser):
            raise ConfigError(
                f"report parser plugin '{name}' ({found[name].value}) is not a parser.",
                hint="A parser needs name, score(message) and parse(message).",
            )
        parsers.append(parser)
    if not any(p.name == GENERIC for p in parsers):
        raise ConfigError(
            f"no '{GENERIC}' report parser is registered in '{ENTRY_POINT_GROUP}'.",
            hint="Reinstall hostwarden (pip install -e .) so its entry points are registered.",
        )
    return tuple(parsers)


def choose(message: ReportMessage) -> ReportParser:
    """The parser most sure the report is its format (the first of equals)."""
    parsers = _loaded()
    checks = _certainty_checks(parsers)
    if checks is not None:
        # Only built-in parsers, none scoring above "certain": the first parser that is
        # certain is the one the loop below settles on (every parser before it scores
        # less, and none after it more), and asking whether a parser is certain costs far
        # less than its score for most (the two that can never be certain are skipped).
        for parser, certain in checks:
            if certain(message):
                return parser
    best: ReportParser | None = None
    best_score = 0.0
    for index, parser in enumerate(parsers):
        score = parser.score(message)
        if best is None or score > best_score:
            best, best_score = parser, score
            # No built-in parser scores above "certainly mine", so once a parser is
            # certain and only built-in parsers follow it, none of them can win.
            if score >= CERTAIN and all(_built_in(p) for p in parsers[index + 1 :]):
                break
    assert best is not None  # _loaded() guarantees at least the generic parser
    return best


@cache
def _certainty_checks(
    parsers: tuple[ReportParser, ...],
) -> tuple[tuple[ReportParser, Callable[[ReportMessage], bool]], ...] | None:
    """Each parser that can be certain of a report, with its ``certain(message)`` (true
    exactly when ``score(message)`` is CERTAIN), when all parsers are built-in ones and
    say how (``certain`` is None for a parser that never is); otherwise None."""
    checks: list[tuple[ReportParser, Callable[[ReportMessage], bool]]] = []
    for parser in parsers:
        certain = getattr(parser, "certain", _UNSAID)
        if not _built_in(parser) or certain is _UNSAID:
            return None
        if certain is not None:
            checks.append((parser, cast(Callable[[ReportMessage], bool], certain)))
    return tuple(checks)


_UNSAID = object()


def _built_in(parser: ReportParser) -> bool:
    return type(parser).__module__.startswith(_BUILT_IN_MODULES)


_BUILT_IN_MODULES = f"{__name__}."


def parse_message(message: ReportMessage) -> ParsedReport:
    """Events of ``message`` by the chosen parser; when it finds none (or fails on a
    malformed report), the generic parser reads the text, so nothing a report names is lost."""
    chosen = choose(message)
    try:
        result = chosen.parse(message)
    except Exception as error:
        # A format parser (possibly a third-party plugin) tripping over an odd report must
        # not lose the report: record why, and let the generic parser read it instead.
        if chosen.name == GENERIC:
            raise
        result = ParsedReport(
            parser=chosen.name,
            events=[],
            notes=[f"{chosen.name} failed on this report ({type(error).__name__}: {error})"],
        )
    if result.events or chosen.name == GENERIC:
        return result
    generic = next(p for p in _loaded() if p.name == GENERIC)
    fallback = generic.parse(message)
    notes = [
        *result.notes,
        f"{chosen.name} recognised the report but found no event; the generic parser read it",
        *fallback.notes,
    ]
    return ParsedReport(parser=fallback.parser, events=fallback.events, notes=notes)


def parse_bytes(raw: bytes, reporter: str | None = None) -> tuple[ReportMessage, ParsedReport]:
    """Read ``raw`` as an e-mail and parse it; raises what ``read_message`` raises."""
    message = read_message(raw, reporter=reporter)
    return message, parse_message(message)


__all__ = ["ENTRY_POINT_GROUP", "choose", "load_parsers", "parse_bytes", "parse_message"]
