"""The fast MIME reader: it reads what the stdlib parser path reads, or refuses the message."""

from __future__ import annotations

import base64
import quopri
import random
import re
from email.message import Message
from email.utils import getaddresses
from pathlib import Path

import pytest

from hostwarden.cases.parsers import mime, mimefast
from hostwarden.cases.parsers.base import ReportMessage
from hostwarden.cases.parsers.common import decode_bytes
from hostwarden.cases.parsers.mime import read_message
from hostwarden.errors import ValidationFailed
from tests.cases.parsers.samples import REPORTS, sample

PART_LIMIT = 10 * 1024 * 1024


def read_fast(raw: bytes, max_part_bytes: int = PART_LIMIT) -> ReportMessage:
    """``raw`` as read_message reads it, after checking that the fast reader took it and
    read exactly what the stdlib path reads."""
    fast = mime._read_fast(raw, max_part_bytes)
    assert fast is not None, "the fast reader refused the message"
    assert fast == mime._read_stdlib(raw, max_part_bytes)
    return read_message(raw, max_part_bytes=max_part_bytes)


def refused(raw: bytes) -> bool:
    return mime._read_fast(raw, PART_LIMIT) is None


NESTED = b"""From: Monitor <mon@example.net>
Subject: nested
Content-Type: multipart/mixed; boundary="outer"

This is a multi-part message in MIME format.

--outer
Content-Type: multipart/alternative;
\tboundary=inner

inner preamble
--inner
Content-Type: text/plain; charset=utf-8

plain 192.0.2.1

--inner
Content-Type: text/html; charset=utf-8

<p>html 192.0.2.1</p>
--inner--
inner epilogue

--outer
Content-Type: application/octet-stream; name="log.bin"

\x00\x01binary
--outer--
outer epilogue
"""


def test_nested_multiparts_are_read_as_the_stdlib_reads_them() -> None:
    message = read_fast(NESTED)

    assert [(p.content_type, p.filename, p.content) for p in message.parts] == [
        ("text/plain", None, "plain 192.0.2.1\n"),
        ("text/html", None, "<p>html 192.0.2.1</p>"),
        ("application/octet-stream", "log.bin", b"\x00\x01binary"),
    ]
    assert message.content_type == 'multipart/mixed; boundary="outer"'


def test_crlf_message_keeps_its_line_ends_in_the_parts_like_the_stdlib() -> None:
    message = read_fast(NESTED.replace(b"\n", b"\r\n"))

    assert message.parts[0].content == "plain 192.0.2.1\r\n"
    assert message.headers["subject"] == "nested"
    assert message.content_type == 'multipart/mixed; boundary="outer"'


def test_mixed_line_ends_go_to_the_stdlib_parser() -> None:
    # The stdlib takes a lone LF before a boundary line as the line end it drops.
    crlf = NESTED.replace(b"\n", b"\r\n")
    raw = crlf.replace(b"192.0.2.1\r\n\r\n--inner", b"192.0.2.1\r\n\n--inner")

    assert refused(raw)
    assert read_message(raw).parts[0].content == "plain 192.0.2.1\r\n"


ATTACHED = b"""From: fbl@example.com
Content-Type: multipart/report; report-type=feedback-report; boundary="r"

--r
Content-Type: message/feedback-report

Feedback-Type: abuse
Source-IP: 192.0.2.25
--r
Content-Type: message/rfc822

Received: from a.example.net (a.example.net [192.0.2.25])
\tby mx.example.com; Fri, 1 May 2026 09:58:41 +0000
Subject:no space after the colon
Content-Type: multipart/alternative; boundary="alt"

preamble
--alt
Content-Type: text/plain; charset=gbk

\xc4\xfa\xba\xc3

--alt--
epilogue

--r--
"""


def test_attached_messages_are_rebuilt_exactly_as_the_stdlib_path_rebuilds_them() -> None:
    message = read_fast(ATTACHED)
    report, original = message.parts

    assert report.content == "Feedback-Type: abuse\nSource-IP: 192.0.2.25\n\n"
    # Header lines rebuilt as "Name: value" with folding kept; the 8-bit body of the
    # inner part decoded with its charset and stored as UTF-8 (as get_payload() does).
    assert original.content == (
        "Received: from a.example.net (a.example.net [192.0.2.25])\n"
        "\tby mx.example.com; Fri, 1 May 2026 09:58:41 +0000\n"
        "Subject: no space after the colon\n"
        'Content-Type: multipart/alternative; boundary="alt"\n'
        "\n"
        "preamble\n"
        "--alt\n"
        "Content-Type: text/plain; charset=gbk\n"
        "\n"
        "您好\n"
        "\n"
        "--alt--\n"
        "epilogue\n"
    )


def test_base64_and_quoted_printable_parts_are_decoded() -> None:
    text = "Grüße from 192.0.2.7 = bad\n" * 3
    raw = (
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(text.encode())
        + b"--b\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n\n"
        + quopri.encodestring(text.encode() + b"x" * 100)
        + b"\n--b--\n"
    )
    message = read_fast(raw)

    assert [p.content for p in message.parts] == [text, text + "x" * 100]


UTF8_MISFIT = "declared charset 'utf-8' does not fit the bytes; read as gb18030"


@pytest.mark.parametrize(
    ("content_type", "disposition", "filename", "misfit"),
    [
        ('text/plain; name="a;b.txt"; charset=gbk', None, "a;b.txt", False),
        # Unquoted twice, '<utf-8>' is utf-8 (which the warning names).
        ('text/plain; charset="<utf-8>"', None, None, True),
        # A first piece that looks like a parameter is not one.
        ("charset=gbk; charset=utf-8", None, None, True),
        ("TEXT/Plain; CHARSET=GBK; charset=utf-8; Name=c.txt", None, "c.txt", False),
        ("text/plain; charset=gbk; name=n.txt", 'attachment; filename=""', "n.txt", False),
        ("text/plain; charset=gbk; name=n.txt", "attachment; FileName=f.txt", "f.txt", False),
        ("text/plain/x; charset=gbk", "inline", None, False),
        ('text/plain; charset="utf-8"; name="=?utf-8?B?w6kudHh0?="', None, "é.txt", True),
    ],
)
def test_parameters_are_read_as_the_stdlib_reads_them(
    content_type: str, disposition: str | None, filename: str | None, misfit: bool
) -> None:
    head = f"From: a@example.com\nContent-Type: {content_type}\n"
    if disposition is not None:
        head += f"Content-Disposition: {disposition}\n"
    message = read_fast(head.encode() + b"\n" + "您好".encode("gbk"))

    assert [(p.filename, p.content) for p in message.parts] == [(filename, "您好")]
    label = f"part 1 (text/plain{', ' + filename if filename else ''})"
    assert message.warnings == ([f"{label}: {UTF8_MISFIT}"] if misfit else [])


@pytest.mark.parametrize(
    ("encoded", "decoded", "warnings"),
    [
        (
            b"aGVsbG8!!",
            b"hello",
            [
                "a base64 part holds characters outside base64; they were skipped",
                "a base64 part has wrong padding; it was repaired",
            ],
        ),
        # Strict decoding would take this; the stdlib pads it first and says so.
        (b"QQQQ=", b"A\x04\x10", ["a base64 part has wrong padding; it was repaired"]),
    ],
)
def test_base64_that_needs_repair_is_repaired_as_the_stdlib_repairs_it(
    encoded: bytes, decoded: bytes, warnings: list[str]
) -> None:
    raw = (
        b"From: a@example.com\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n" + encoded + b"\n"
    )

    message = read_fast(raw)
    assert message.parts[0].content == decoded
    assert message.warnings == warnings


@pytest.mark.parametrize(
    "encoded",
    [b"", b"QQ", b"QQ=", b"QQQ", b"QQQQ", b"QQQQQ", b"QQ!Q", b"Q!", b"!!!!", b"QQ==QQ", b"Q Q\tQ"],
)
def test_base64_bodies_decode_with_the_defects_the_stdlib_records(encoded: bytes) -> None:
    part = Message()
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(encoded.decode("ascii"))
    data = part.get_payload(decode=True)

    assert mimefast._base64_decoded(encoded) == (data, tuple(type(d) for d in part.defects))


def test_chinese_headers_and_bodies_are_decoded_as_on_the_stdlib_path() -> None:
    subject = "关于贵司IP 203.0.113.9 暴力破解攻击的投诉".encode("gbk")
    raw = (
        b"From: =?GBK?B?"
        + base64.b64encode("示例银行".encode("gbk"))
        + b"?= <Jubao@Bank.example.com>\n"
        b"Subject: " + subject + b"\n"
        b"X-Words: =?GB2312?B?" + base64.b64encode("你好".encode("gbk")) + b"?=\n"
        b' =?gb18030?Q?=C4=FA=BA=C3?=\nContent-Type: text/plain; charset="gb2312"\n'
        b"Content-Transfer-Encoding: base64\n\n"
        + base64.encodebytes("联系人：张喆".encode("gb18030"))
    )
    message = read_fast(raw)

    assert message.headers["from"] == "示例银行 <Jubao@Bank.example.com>"
    assert message.headers["subject"] == "关于贵司IP 203.0.113.9 暴力破解攻击的投诉"
    assert message.headers["x-words"] == "你好您好"
    assert message.reporter == "jubao@bank.example.com"
    assert message.text() == "联系人：张喆"
    assert message.warnings == ["header: no charset declared; read as gb18030"]


def test_folded_headers_are_unfolded_and_the_first_occurrence_wins() -> None:
    raw = (
        b"Subject: a long\n\tsubject\n  folded twice\nX-Empty:\nX-Late:\n late value\n"
        b"subject: second\nFrom:Reporter <r@example.com>\n\nbody\n"
    )
    message = read_fast(raw)

    assert message.headers == {
        "subject": "a long\tsubject  folded twice",
        "x-empty": "",
        "x-late": "late value",
        "from": "Reporter <r@example.com>",
    }


def test_encoded_words_with_problems_warn_as_on_the_stdlib_path() -> None:
    raw = (
        b"From: =?x-klingon?B?aGVsbG8=?= <a@example.com>\n"
        b"Subject: =?utf-8?B?!!not-base64?= 192.0.2.1\n\nbody\n"
    )
    message = read_fast(raw)

    assert message.headers["from"] == "hello <a@example.com>"
    assert message.headers["subject"] == "=?utf-8?B?!!not-base64?= 192.0.2.1"
    assert message.warnings == ["header: declared charset 'x-klingon' is unknown; read as utf-8"]


@pytest.mark.parametrize(
    "raw",
    [
        # A multipart without boundary.
        b"From: a@example.com\nContent-Type: multipart/mixed\n\nspam from 192.0.2.4\n",
        # No close boundary in a nested multipart, or at the very end without a line end.
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="a"\n\n--a\n'
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n\nx\n--a--\n',
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n\nx',
        # Two boundary lines in a row (the stdlib skips the empty part).
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\n--b\n\nx\n--b--\n",
        # An mbox envelope line, a header line without colon, a continuation first.
        b"From MAILER-DAEMON Fri May  1 00:00:00 2026\nFrom: a@example.com\n\nx\n",
        b"From: a@example.com\nnot a header\n\nx\n",
        b" continued\nFrom: a@example.com\n\nx\n",
        # RFC 2231 parameters, backslash-quoted parameters, 8-bit Content-Type.
        b"From: a@example.com\nContent-Type: text/plain; name*=utf-8''r%C3%A9.txt\n\nx\n",
        b'From: a@example.com\nContent-Type: text/plain; name="a\\"b"\n\nx\n',
        b"From: a@example.com\nContent-Type: text/plain; name=\xe4\n\nx\n",
        # A multipart with a transfer encoding, even an empty one (a defect for the stdlib).
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n'
        b"Content-Transfer-Encoding:\n\n--b\n\nx\n--b--\n",
        # message/delivery-status and multipart/digest read their parts differently.
        b"From: a@example.com\nContent-Type: message/delivery-status\n\nAction: failed\n",
        b'From: a@example.com\nContent-Type: multipart/digest; boundary="b"\n\n--b\n\nx\n--b--\n',
        # A transfer-encoded attached message (decoded with a warning on the stdlib path).
        b"From: a@example.com\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n"
        b"\naGk=\n",
    ],
)
def test_what_the_fast_reader_is_not_sure_of_goes_to_the_stdlib_parser(raw: bytes) -> None:
    assert refused(raw)
    assert read_message(raw).parts  # read by the stdlib path (test_mime.py checks how)


@pytest.mark.parametrize("charset", [b"idna", b"undefined"])
def test_a_codec_the_stdlib_path_fails_on_fails_the_same_way(charset: bytes) -> None:
    raw = b"From: a@example.com\nContent-Type: image/png; charset=" + charset + b"\n\n\xff\n"

    assert refused(raw)
    with pytest.raises(ValidationFailed, match="not a readable e-mail message"):
        read_message(raw)


def test_malformed_sample_still_reads_with_its_warnings() -> None:
    message = read_message(sample("malformed_mime.eml"))

    assert message.warnings[0].startswith("the declared multipart boundary does not appear")


def test_part_limits_apply_as_on_the_stdlib_path() -> None:
    many = b"".join(b"--b\nContent-Type: text/plain\n\npart %d\n" % i for i in range(205))
    raw = (
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n' + many + b"--b--\n"
    )
    message = read_fast(raw)

    assert len(message.parts) == mime.MAX_PARTS
    assert message.warnings == [
        f"the message has more than {mime.MAX_PARTS} parts; the rest were skipped"
    ]
    small = read_fast(sample("shadowserver_sinkhole_drone_zip.eml"), max_part_bytes=300)
    assert [p.content_type for p in small.parts] == ["text/plain"]


@pytest.mark.parametrize("path", sorted(REPORTS.glob("*.eml")), ids=lambda p: p.name)
def test_every_sample_is_read_by_the_fast_reader(path: Path) -> None:
    raw = path.read_bytes()
    read_fast(raw)
    crlf = raw.replace(b"\n", b"\r\n")
    if path.name == "malformed_mime.eml":
        # Rebuilt with LF header lines before a CRLF body: mixed line ends, refused.
        assert refused(crlf)
    else:
        read_fast(crlf)


@pytest.mark.parametrize(
    "raw",
    [
        # The sample's mailer bug: the declared boundary never appears (and the last part
        # has no close boundary and a base64 body to repair).
        sample("malformed_mime.eml"),
        sample("malformed_mime.eml").replace(b"Port scan", "Portscan \u00e9".encode()),
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="x"; charset=latin-1\n'
        b"\npre \xe9\n--other\nContent-Type: text/plain\n\nbody \xe9\n--other--\n",
        b'Content-Type: multipart/alternative; boundary="x"\nContent-Type: text/plain\n\n'
        b"--y\n\none\n--y\n\ntwo\n--y--\nafter\n",
        # No close boundary at the end of the message.
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n\nx\n',
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n\nx\n\n',
        b'From: a@example.com\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n\n--b\n',
    ],
)
def test_broken_multiparts_the_stdlib_repairs_are_read_by_the_fast_reader(raw: bytes) -> None:
    message = read_fast(raw)

    assert message.parts


def test_mangled_samples_are_read_as_the_stdlib_reads_them_or_refused() -> None:
    rng = random.Random(2045)
    raws = [path.read_bytes() for path in sorted(REPORTS.glob("*.eml"))]
    edits = [
        b"",
        b" ",
        b"\t",
        b"--",
        b"From x",
        b"X-A: b",
        b"a: b",
        b" cont",
        b"\xe4\xbd\xa0",
        b"=",
    ]
    accepted = 0
    for _ in range(400):
        lines = rng.choice(raws).split(b"\n")
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(lines))
            edit = rng.choice(edits)
            choice = rng.randrange(4)
            if choice == 0:
                del lines[i]
            elif choice == 1:
                lines.insert(i, edit)
            elif choice == 2:
                lines[i] += edit
            else:
                lines.insert(i, b"--" + rng.choice(lines).lstrip(b"-"))
        raw = b"\n".join(lines)
        if rng.random() < 0.3:
            raw = raw.replace(b"\n", b"\r\n")
        fast = mime._read_fast(raw, PART_LIMIT)
        if fast is not None:
            accepted += 1
            assert fast == mime._read_stdlib(raw, PART_LIMIT), raw
    assert accepted > 100


@pytest.mark.parametrize(
    "value",
    [
        "7012345680@reports.spamcop.example.net",
        "A_B%c+d-e@Ex-1.COM",
        "a..b@x",
        "a@x.",
        "Abuse Desk <Abuse@Example.COM>",
        '"Doe, Jane" <jane@example.com>, other@example.com',
        " spaced@example.com ",
        "no address",
        "",
    ],
)
def test_reporter_address_matches_the_address_parser(value: str) -> None:
    expected = next((a.strip().lower() for _, a in getaddresses([value]) if "@" in a), None)

    assert mime._address_in(value) == expected


def reference_decode_header_value(value: str, warnings: list[str]) -> str:
    """decode_header_value without its shortcut for plain values."""
    if "\n" in value:
        value = mime._FOLD.sub("", value)
    if not value.isascii() and mime._has_surrogates(value):
        value, problem = decode_bytes(value.encode("ascii", "surrogateescape"))
        if problem:
            warnings.append(f"header: {problem}")
    if "=?" not in value:
        return value.strip()
    value = mime._BETWEEN_WORDS.sub(r"\1\2", value)

    def decode_word(match: re.Match[str]) -> str:
        data = mime._encoded_word_bytes(match.group(2), match.group(3))
        if data is None:
            return match.group(0)
        text, problem = decode_bytes(data, match.group(1).split("*", 1)[0])
        if problem:
            warnings.append(f"header: {problem}")
        return text

    return mime._ENCODED_WORD.sub(decode_word, value).strip()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  plain value \t",
        "a\n\tfolded",
        "a\r\n b",
        "=?utf-8?B?5L2g5aW9?= x",
        "caf\udce9",
        "x=?",
        "\x1c trailing \x1f",
        "\u00a0nbsp\u00a0",
        "line\nwithout blank",
    ],
)
def test_header_values_decode_as_without_the_plain_value_shortcut(value: str) -> None:
    mine: list[str] = []
    theirs: list[str] = []
    assert mime.decode_header_value(value, mine) == reference_decode_header_value(value, theirs)
    assert mine == theirs
    headers = mime._decoded_headers([("X-A", value), ("x-a", "second")], mine)
    assert headers == {"x-a": reference_decode_header_value(value, theirs)}
    assert mine == theirs


def test_a_cached_header_block_reads_as_one_read_anew() -> None:
    raws = [path.read_bytes() for path in sorted(REPORTS.glob("*.eml"))]
    raws += [raw.replace(b"\n", b"\r\n") for raw in raws]
    blocks = []
    for raw in raws:
        crlf = b"\r\n" in raw
        nl = b"\r\n" if crlf else b"\n"
        for block in raw.split(nl + nl):
            blocks.append((block + nl, crlf))
            blocks.append((block[:200], crlf))
    for block, crlf in blocks:
        try:
            want: object = mimefast._read_head(block, crlf)
        except mimefast.Unsure:
            want = "unsure"
        try:
            got: object = mimefast._cached_head(block, crlf)
        except mimefast.Unsure:
            got = "unsure"
        assert got == want
    mimefast._cached_head.cache_clear()
    for raw in raws:
        if not refused(raw):
            cold = mime._read_fast(raw, PART_LIMIT)
            assert mime._read_fast(raw, PART_LIMIT) == cold  # now from the cache
