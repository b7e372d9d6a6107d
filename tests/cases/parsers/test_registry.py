"""Finding parsers through entry points, choosing one per report, and the generic fallback."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

import hostwarden.cases.parsers as parsers
from hostwarden.cases.parsers import choose, load_parsers, parse_bytes, parse_message
from hostwarden.cases.parsers.base import ParsedReport, ReportMessage, ReportParser
from hostwarden.cases.parsers.mime import read_message
from hostwarden.errors import ConfigError
from tests.cases.parsers.samples import REPORTS, sample

EXPECTED = {
    "arf_rfc5965.eml": "arf",
    "arf_jmrp_legacy.eml": "arf",
    "arf_textplain_feedback.eml": "arf",
    "xarf02_login_attack.eml": "xarf02",
    "xarf4_attachment.eml": "xarf4",
    "spamcop_source.eml": "spamcop",
    "spamcop_spamvertised.eml": "spamcop",
    "shadowserver_scan_ssh_csv.eml": "shadowserver",
    "shadowserver_sinkhole_drone_zip.eml": "shadowserver",
    "netcraft_phishing.eml": "netcraft",
    "spamhaus_sbl.eml": "spamhaus",
    "safebrowsing_notice.eml": "safebrowsing",
    "generic_english_ddos.eml": "generic",
    "generic_chinese_gbk.eml": "generic",
    "malformed_mime.eml": "generic",
    "wrong_charset.eml": "generic",
}


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    parsers._loaded.cache_clear()
    yield
    parsers._loaded.cache_clear()


def test_every_built_in_parser_is_registered_and_generic_comes_last() -> None:
    names = [p.name for p in load_parsers()]

    assert names == [
        "arf",
        "netcraft",
        "safebrowsing",
        "shadowserver",
        "spamcop",
        "spamhaus",
        "xarf02",
        "xarf4",
        "generic",
    ]
    assert all(isinstance(p, ReportParser) for p in load_parsers())


def test_every_sample_is_parsed_by_the_parser_for_its_format() -> None:
    assert sorted(p.name for p in REPORTS.glob("*.eml")) == sorted(EXPECTED)
    chosen = {name: choose(read_message(sample(name))).name for name in EXPECTED}

    assert chosen == EXPECTED


def test_every_sample_gives_at_least_one_event_with_an_excerpt() -> None:
    for name in EXPECTED:
        _, report = parse_bytes(sample(name))
        assert report.events, name
        for event in report.events:
            assert event.excerpt, name
            assert event.occurred_at.tzinfo is not None


MAIL = b"From: a@example.com\nDate: Fri, 01 May 2026 10:00:00 +0000\n\nspam from 192.0.2.1\n"


class _Claims:
    """A parser that claims every report and finds nothing in it."""

    name = "claims"

    def score(self, message: ReportMessage) -> float:
        return 0.5

    def parse(self, message: ReportMessage) -> ParsedReport:
        return ParsedReport(parser=self.name, events=[], notes=["nothing I know"])


class _Crashes(_Claims):
    name = "crashes"

    def parse(self, message: ReportMessage) -> ParsedReport:
        raise KeyError("Source-IP")


def _registry(monkeypatch: pytest.MonkeyPatch, *extra: EntryPoint) -> None:
    built_in = [
        EntryPoint(
            name="generic",
            value="hostwarden.cases.parsers.generic:GenericParser",
            group=parsers.ENTRY_POINT_GROUP,
        ),
        *extra,
    ]
    monkeypatch.setattr(parsers, "entry_points", lambda group: built_in)


def test_a_parser_finding_nothing_hands_the_report_to_generic_and_says_so(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    _registry(monkeypatch, EntryPoint(name="claims", value=f"{__name__}:_Claims", group="g"))

    report = parse_message(read_message(MAIL))

    assert report.parser == "generic"
    assert [e.ip for e in report.events] == ["192.0.2.1"]
    assert report.notes == [
        "nothing I know",
        "claims recognised the report but found no event; the generic parser read it",
    ]


def test_a_parser_crashing_on_a_report_does_not_lose_it(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    _registry(monkeypatch, EntryPoint(name="crashes", value=f"{__name__}:_Crashes", group="g"))

    report = parse_message(read_message(MAIL))

    assert [e.ip for e in report.events] == ["192.0.2.1"]
    assert report.notes[0] == "crashes failed on this report (KeyError: 'Source-IP')"


def test_ties_go_to_the_first_parser_in_name_order(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    _registry(
        monkeypatch,
        EntryPoint(name="zz-claims", value=f"{__name__}:_Crashes", group="g"),
        EntryPoint(name="aa-claims", value=f"{__name__}:_Claims", group="g"),
    )

    assert choose(read_message(b"From: a@example.com\n\nhi\n")).name == "claims"


def test_a_plugin_that_fails_to_load_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    _registry(monkeypatch, EntryPoint(name="vendor", value="no_such_module:Parser", group="g"))

    with pytest.raises(
        ConfigError, match="report parser plugin 'vendor' \\(no_such_module:Parser\\)"
    ):
        load_parsers()


def test_a_plugin_that_is_not_a_parser_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    _registry(monkeypatch, EntryPoint(name="odd", value="collections:OrderedDict", group="g"))

    with pytest.raises(ConfigError, match="'odd' \\(collections:OrderedDict\\) is not a parser"):
        load_parsers()


def test_without_the_generic_parser_the_registry_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    monkeypatch.setattr(parsers, "entry_points", lambda group: [])

    with pytest.raises(ConfigError, match="no 'generic' report parser is registered"):
        load_parsers()
