"""X-ARF 0.2 (YAML report part, fail2ban / blocklist style) and XARF v4 (JSON) reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostwarden.cases.parsers.mime import read_message
from hostwarden.cases.parsers.xarf import XArf02Parser, parse_xarf4_document
from hostwarden.errors import TooLarge, ValidationFailed
from tests.cases.parsers.samples import parse_sample, utc


def test_xarf02_login_attack_is_a_bruteforce_event_on_ssh_port_22() -> None:
    _, chosen, report = parse_sample("xarf02_login_attack.eml")

    assert chosen == "xarf02"
    assert report.notes == []
    [event] = report.events
    assert event.category == "bruteforce"
    assert event.ip == "192.0.2.45"
    assert event.port == 22
    assert event.url is None
    assert event.reporter == "reports@blocklist.example.net"


def test_xarf02_date_keeps_the_zone_as_written() -> None:
    _, _, report = parse_sample("xarf02_login_attack.eml")
    [event] = report.events

    assert event.occurred_at == utc(2026, 5, 1, 8, 0, 0)
    assert event.zone == "+02:00"


def test_xarf02_excerpt_holds_the_report_fields_and_the_log_lines() -> None:
    _, _, report = parse_sample("xarf02_login_attack.eml")
    [event] = report.events

    assert "Source: 192.0.2.45" in event.excerpt
    assert "Failed password for root from 192.0.2.45 port 50212" in event.excerpt
    assert event.extra["service"] == "ssh"
    assert event.extra["report_type"] == "login-attack"
    assert event.extra["schema_url"] == "http://www.x-arf.org/schema/abuse_login-attack_0.1.2.json"
    json.dumps(event.extra)  # stays storable


XARF02 = """From: reports@honeypot.example.net
To: abuse@hosting.example.net
Subject: abuse report about {source}
X-ARF: YES
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: text/plain

Automated report.
--x
Content-Type: text/plain; name="report.txt"

{yaml}
--x--
"""


def _xarf02(yaml: str, source: str = "192.0.2.9") -> bytes:
    return XARF02.format(yaml=yaml, source=source).encode()


@pytest.mark.parametrize(
    ("report_type", "category"),
    [
        ("login-attack", "bruteforce"),
        ("portscan", "scanning"),
        ("spam", "spam"),
        ("phishing", "phishing"),
        ("malware", "malware"),
        ("ddos", "ddos"),
        ("something-new", "other"),
    ],
)
def test_xarf02_report_types_map_to_categories(report_type: str, category: str) -> None:
    yaml = (
        f"Reported-From: r@honeypot.example.net\nCategory: abuse\nReport-Type: {report_type}\n"
        "Source-Type: ipv4\nSource: 192.0.2.9\nDate: Fri, 01 May 2026 10:00:00 +0000\n"
    )
    [event] = XArf02Parser().parse(read_message(_xarf02(yaml))).events

    assert event.category == category


def test_xarf02_uri_source_gives_an_event_with_url_and_domain() -> None:
    yaml = (
        "Reported-From: r@honeypot.example.net\nCategory: fraud\nReport-Type: phishing\n"
        "Source-Type: uri\nSource: http://login.example.com/bank/\n"
        "Date: 2026-05-01 10:00:00 +0000\n"
    )
    [event] = XArf02Parser().parse(read_message(_xarf02(yaml))).events

    assert event.category == "phishing"
    assert event.ip is None
    assert event.url == "http://login.example.com/bank/"
    assert event.domain == "login.example.com"


def test_xarf02_with_broken_yaml_is_read_line_by_line_with_a_note() -> None:
    yaml = (
        "Reported-From: r@honeypot.example.net\nReport-Type: login-attack\n"
        "Source: 192.0.2.9\nPort: 22\nService: [ssh\nDate: 2026-05-01 10:00:00 +0000\n"
    )
    report = XArf02Parser().parse(read_message(_xarf02(yaml)))

    [event] = report.events
    assert event.ip == "192.0.2.9"
    assert event.port == 22
    assert any("not valid YAML" in note for note in report.notes)


def test_xarf02_yaml_cannot_construct_python_objects() -> None:
    yaml = (
        "Reported-From: r@honeypot.example.net\nReport-Type: spam\nSource: 192.0.2.9\n"
        "Evil: !!python/object/apply:os.system ['echo owned']\n"
    )
    report = XArf02Parser().parse(read_message(_xarf02(yaml)))

    # safe_load refuses the tag; the report is still read, line by line.
    assert any("not valid YAML" in note for note in report.notes)
    assert report.events[0].ip == "192.0.2.9"


def test_xarf02_without_source_gives_no_event_and_says_why() -> None:
    yaml = "Reported-From: r@honeypot.example.net\nReport-Type: spam\nSource-Type: ipv4\n"
    report = XArf02Parser().parse(read_message(_xarf02(yaml)))

    assert report.events == []
    assert "the X-ARF report names no usable Source" in report.notes


def test_xarf4_json_attachment_gives_an_event_for_the_source() -> None:
    _, chosen, report = parse_sample("xarf4_attachment.eml")

    assert chosen == "xarf4"
    [event] = report.events
    assert event.category == "bruteforce"
    assert event.ip == "203.0.113.77"
    assert event.port == 50122
    assert event.occurred_at == utc(2026, 5, 1, 8, 15, 0)
    assert event.zone == "Z"
    assert event.reporter == "reports@honeynet.example.net"
    assert '"Source": "203.0.113.77"' in event.excerpt
    assert "Failed password for root from 203.0.113.77" in event.excerpt
    assert event.extra["reporter_org"] == "Example Honeynet"
    assert event.extra["destination_port"] == 22
    assert event.extra["samples"] == 1


def _xarf4(**report: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ReportClass": "Content",
        "ReportType": "Phishing",
        "Date": "2026-05-01T09:00:00+08:00",
        "Url": "https://pay.example.com/login",
        "SourceIp": "198.51.100.61",
    }
    base.update(report)
    return {
        "Version": "4.0.0",
        "Reporter": {"ReporterOrg": "Example CERT", "ReporterOrgEmail": "cert@example.net"},
        "Report": {k: v for k, v in base.items() if v is not None},
    }


def test_parse_xarf4_document_reads_a_dict_a_string_and_bytes_alike() -> None:
    document = _xarf4()
    results = [
        parse_xarf4_document(form, reporter="api:cert")
        for form in (document, json.dumps(document), json.dumps(document).encode())
    ]

    for result in results:
        [event] = result.events
        assert result.parser == "xarf4"
        assert event.category == "phishing"
        assert event.ip == "198.51.100.61"
        assert event.url == "https://pay.example.com/login"
        assert event.domain == "pay.example.com"
        assert event.occurred_at == utc(2026, 5, 1, 1, 0, 0)
        assert event.zone == "+08:00"
        assert event.reporter == "api:cert"


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"ReportType": None}, "Report.ReportType"),
        ({"ReportClass": ""}, "Report.ReportClass"),
        ({"Date": None}, "Report.Date"),
        ({"Date": "yesterday"}, "Report.Date"),
        ({"SourceIp": "999.1.1.1"}, "Report.SourceIp"),
        ({"SourceIp": None, "Url": None}, "Report.SourceIp"),
        ({"SourcePort": 70000}, "Report.SourcePort"),
    ],
)
def test_parse_xarf4_document_names_the_bad_field(report: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_xarf4_document(_xarf4(**report), reporter="api:cert")

    assert raised.value.message.startswith(f"XARF {field} ")
    assert raised.value.hint


def test_parse_xarf4_document_rejects_bad_json_with_its_position() -> None:
    with pytest.raises(
        ValidationFailed, match="not valid JSON: Expecting value at line 1 column 12"
    ):
        parse_xarf4_document('{"Report": ', reporter="api:cert")
    with pytest.raises(ValidationFailed, match="JSON list, not an object"):
        parse_xarf4_document("[]", reporter="api:cert")
    with pytest.raises(ValidationFailed, match="XARF Report is missing"):
        parse_xarf4_document({"Version": "4"}, reporter="api:cert")
    with pytest.raises(ValidationFailed, match="XARF Version is '3'"):
        parse_xarf4_document({"Version": "3", "Report": {}}, reporter="api:cert")


def test_parse_xarf4_document_refuses_an_oversize_document() -> None:
    with pytest.raises(TooLarge, match="the limit is 5242880 bytes"):
        parse_xarf4_document(b" " * (5 * 1024 * 1024 + 1), reporter="api:cert")


def test_xarf4_mail_with_an_invalid_document_gives_a_note_and_the_generic_fallback() -> None:
    from hostwarden.cases.parsers import parse_message

    raw = (
        b"From: cert@example.net\nSubject: report\nContent-Type: text/plain\n\n"
        b'{"Report": {"ReportClass": "Activity", "ReportType": "Spam", "SourceIp": "192.0.2.7"}}'
    )
    report = parse_message(read_message(raw))

    assert report.parser == "generic"
    assert any("XARF Report.Date is missing" in note for note in report.notes)
    assert [e.ip for e in report.events] == ["192.0.2.7"]


@pytest.mark.parametrize(
    ("document", "read_here"),
    [
        (
            "Reported-From: abuse@example.org\nCategory: abuse\nReport-Type: login-attack\n"
            "Source: 198.51.100.7\nPort: 22\nDate: 2026-05-01T10:00:00+08:00\n"
            "Attachment: text/plain\nSchema-URL: http://www.x-arf.org/schema/abuse_login-attack_0.1.2.json\n",
            True,
        ),
        ("---\nSource: 198.51.100.7\nService: ssh\nVerified: true\nEmpty:\n", True),
        ("Ratio: 0.5\nCount: 0x1F\nOctal: 0o17\nName: null\nDay: 2026-05-01\n", True),
        ("Source: '198.51.100.7'\n", False),  # quoted: PyYAML reads it
        ("Source: 198.51.100.7 # a comment\n", False),
        ("Nested:\n  Inner: 1\n", False),
        ("List: [1, 2]\n", False),
        ("Tagged: !!str 22\n", False),
        ("Date: 2026-02-30\n", False),  # not a date: PyYAML says so its own way
        ("Key: value: with a colon\n", False),
    ],
)
def test_plain_x_arf_lines_are_read_as_pyyaml_reads_them(document: str, read_here: bool) -> None:
    import yaml

    from hostwarden.cases.parsers.xarf import _flat_yaml

    flat = _flat_yaml(document)
    assert (flat is not None) == read_here
    if flat is not None:
        assert flat == yaml.load(document, Loader=yaml.SafeLoader)
