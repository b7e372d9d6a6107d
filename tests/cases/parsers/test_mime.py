"""Reading raw report mail: headers, charsets, broken MIME and size limits."""

from __future__ import annotations

import base64
import random

import pytest

from hostwarden.cases.parsers import parse_bytes
from hostwarden.cases.parsers.mime import read_message
from hostwarden.errors import TooLarge, ValidationFailed
from tests.cases.parsers.samples import REPORTS, parse_sample, sample


def test_gbk_encoded_words_in_headers_are_decoded() -> None:
    message = read_message(sample("generic_chinese_gbk.eml"))

    assert message.headers["subject"] == "关于贵司IP 203.0.113.9 暴力破解攻击的投诉"
    assert message.headers["from"] == "示例银行安全中心 <jubao@bank.example.com>"
    assert message.reporter == "jubao@bank.example.com"


def test_gb2312_body_with_a_gbk_only_character_is_read_as_gb18030_without_warning() -> None:
    message = read_message(sample("generic_chinese_gbk.eml"))

    # 喆 is outside GB2312; GB18030 (a superset) reads it.
    assert "联系人：张喆" in message.text()
    assert message.warnings == []


def test_wrong_declared_charset_is_corrected_with_a_warning() -> None:
    message, chosen, report = parse_sample("wrong_charset.eml")

    assert "对我方进行端口扫描" in message.text()
    assert message.warnings == [
        "part 1 (text/plain): declared charset 'utf-8' does not fit the bytes; read as gb18030"
    ]
    assert chosen == "generic"
    assert [(e.category, e.ip) for e in report.events] == [("scanning", "192.0.2.66")]


def test_unknown_charset_falls_back_with_a_warning() -> None:
    raw = b"From: a@example.com\nContent-Type: text/plain; charset=x-klingon\n\nhello 192.0.2.1\n"
    message = read_message(raw)

    assert message.text() == "hello 192.0.2.1\n"
    assert message.warnings == [
        "part 1 (text/plain): declared charset 'x-klingon' is unknown; read as utf-8"
    ]


def test_raw_8bit_header_bytes_are_decoded() -> None:
    message = read_message(
        "From: 张三 <Zhang@Example.COM>\nSubject: 投诉 192.0.2.1\n\nx\n".encode("gbk")
    )

    assert message.headers["subject"] == "投诉 192.0.2.1"
    assert message.reporter == "zhang@example.com"


def test_reporter_given_by_the_caller_wins_over_from() -> None:
    message = read_message(sample("spamhaus_sbl.eml"), reporter="API:Form-User")

    assert message.reporter == "api:form-user"


def test_missing_from_leaves_the_reporter_empty_with_a_warning() -> None:
    message = read_message(b"Subject: hi\n\nhello\n")

    assert message.reporter == ""
    assert message.warnings == ["the message has no From address; the reporter is unknown"]


def test_malformed_mime_is_read_as_far_as_possible_with_warnings() -> None:
    message, chosen, report = parse_sample("malformed_mime.eml")

    assert message.warnings == [
        "the declared multipart boundary does not appear; read the parts with the boundary "
        "the body uses ('=_outer_7f3a_broken')",
        "a base64 part holds characters outside base64; they were skipped",
        "a multipart has no closing boundary; its parts were read up to the end",
    ]
    assert [p.content_type for p in message.parts] == ["text/plain", "application/octet-stream"]
    log = message.parts[1].content
    assert isinstance(log, bytes)
    assert log.startswith(b"2026-05-01T15:41:09Z SCAN 192.0.2.99 -> 198.51.100.10:22")
    assert chosen == "generic"
    assert report.events[0].ip == "192.0.2.99"
    assert report.events[0].category == "scanning"


def test_multipart_without_boundary_is_read_as_one_text_part() -> None:
    raw = b"From: a@example.com\nContent-Type: multipart/mixed\n\nspam from 192.0.2.4\n"
    message = read_message(raw)

    assert [(p.content_type, p.content) for p in message.parts] == [
        ("text/plain", "spam from 192.0.2.4\n")
    ]
    assert "a multipart declares no boundary" in message.warnings


def test_attached_message_is_kept_whole_as_text() -> None:
    message = read_message(sample("arf_rfc5965.eml"))
    original = message.parts[2]

    assert original.content_type == "message/rfc822"
    assert isinstance(original.content, str)
    assert original.content.startswith(
        "Received: from mail.news.shop.example.net (mail.news.shop.example.net [192.0.2.25])\n"
        "\tby mx4.mailbox.example.com"
    )
    assert "\n\nSpring sale! Every watch 70% off" in original.content


def test_base64_encoded_attached_message_is_decoded_with_a_warning() -> None:
    inner = b"Received: from x.example.net (x.example.net [192.0.2.8]) by y.example.com\n\nhi\n"
    raw = (
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(inner)
        + b"--b--\n"
    )
    message = read_message(raw)

    assert message.parts[0].content == inner.decode()
    assert message.warnings == ["an attached message/rfc822 is base64-encoded; decoded it"]


def test_oversize_message_is_refused_with_the_sizes_and_what_to_do() -> None:
    raw = b"From: a@example.com\n\n" + b"x" * (25 * 1024 * 1024)

    with pytest.raises(TooLarge) as raised:
        read_message(raw)

    assert raised.value.message == f"report is {len(raw)} bytes; the limit is 26214400 bytes."
    assert raised.value.hint is not None
    assert "evidence as a link" in raised.value.hint


def test_oversize_part_is_skipped_with_a_warning() -> None:
    raw = sample("shadowserver_sinkhole_drone_zip.eml")
    message = read_message(raw, max_part_bytes=300)

    assert [p.content_type for p in message.parts] == ["text/plain"]
    [warning] = message.warnings
    assert warning.startswith("part 2 (application/zip, 2026-05-01-sinkhole_http_drone")
    assert warning.endswith("over the 300-byte part limit; skipped")


def test_empty_report_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="report is empty"):
        read_message(b"  \r\n ")


def test_text_without_headers_is_read_as_a_body() -> None:
    message, report = parse_bytes("请处理 192.0.2.200 的暴力破解".encode(), reporter="form:web")

    assert message.reporter == "form:web"
    assert [(e.category, e.ip) for e in report.events] == [("bruteforce", "192.0.2.200")]


def test_garbage_and_truncated_reports_never_raise_anything_but_clear_errors() -> None:
    rng = random.Random(5965)
    inputs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(40)]
    for path in sorted(REPORTS.glob("*.eml")):
        raw = path.read_bytes()
        inputs.extend(raw[:cut] for cut in (len(raw) // 3, len(raw) // 2, len(raw) - 7))
        # Flip bytes in the middle, where the MIME structure is.
        mangled = bytearray(raw)
        for _ in range(20):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        inputs.append(bytes(mangled))

    refused = []
    for raw in inputs:
        try:
            _, report = parse_bytes(raw)
        except ValidationFailed as error:
            refused.append(error)
            continue
        assert report.parser
        for event in report.events:
            assert event.occurred_at.tzinfo is not None
    assert all(error.hint for error in refused)
