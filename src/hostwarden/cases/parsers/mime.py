"""Reads a raw abuse e-mail into a ReportMessage: headers decoded, parts with charsets applied.

Well-formed messages (nearly all reports) are read by the hand-written reader in
``mimefast``, which gives exactly what the stdlib parser gives, several times faster; it
refuses anything it is not sure to read the same way, and those messages, broken MIME
included, go to the stdlib ``email`` parser. That runs with the ``compat32`` policy: it is
the lenient one (it records defects instead of raising, and keeps 8-bit header bytes so we
can choose their charset ourselves) and much faster than ``email.policy.default``.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterable
from email import errors as email_errors
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value, getaddresses
from functools import lru_cache

from hostwarden.cases.parsers import mimefast
from hostwarden.cases.parsers.base import MessagePart, ReportMessage, made_with
from hostwarden.cases.parsers.common import decode_bytes
from hostwarden.errors import TooLarge, ValidationFailed

#: Leaf parts read per message; more is a sign of a malicious or broken message.
MAX_PARTS = 200

_PARSER = BytesParser(policy=compat32)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_FOLD_LF = re.compile(r"\n(?=[ \t])")
_BOUNDARY_LINE = re.compile(r"^--([^\s]{1,70}?)(?:--)?[ \t]*\r?$", re.M)
_QP_HEADER = re.compile(r"=([0-9A-Fa-f]{2})")
#: A bare address of dot-separated atoms, which getaddresses() gives back as it is.
_BARE_ADDRESS = re.compile(r"[\w%+-]+(?:\.[\w%+-]+)*@[\w-]+(?:\.[\w-]+)*", re.ASCII)

_DEFECT_TEXT: dict[type[email_errors.MessageDefect], str] = {
    email_errors.CloseBoundaryNotFoundDefect: (
        "a multipart has no closing boundary; its parts were read up to the end"
    ),
    email_errors.StartBoundaryNotFoundDefect: "a multipart's boundary never appears in it",
    email_errors.NoBoundaryInMultipartDefect: "a multipart declares no boundary",
    email_errors.InvalidBase64CharactersDefect: (
        "a base64 part holds characters outside base64; they were skipped"
    ),
    email_errors.InvalidBase64PaddingDefect: "a base64 part has wrong padding; it was repaired",
    email_errors.InvalidBase64LengthDefect: (
        "a base64 part has an impossible length; it was kept undecoded"
    ),
    email_errors.MissingHeaderBodySeparatorDefect: (
        "the header block does not end with an empty line; the rest was read as body"
    ),
    email_errors.FirstHeaderLineIsContinuationDefect: "the first header line is a continuation",
    email_errors.MisplacedEnvelopeHeaderDefect: "a 'From ' envelope line sits among headers",
    email_errors.MultipartInvariantViolationDefect: "a multipart body is not divided into parts",
}


def read_message(
    raw: bytes,
    *,
    reporter: str | None = None,
    max_bytes: int = 25 * 1024 * 1024,
    max_part_bytes: int = 10 * 1024 * 1024,
) -> ReportMessage:
    """``raw`` (an RFC 5322 message; plain text without headers is read as a body) as a
    ReportMessage. Raises TooLarge when ``raw`` exceeds ``max_bytes`` and ValidationFailed
    when it is empty; every other problem becomes a line in ``warnings``."""
    if len(raw) > max_bytes:
        raise TooLarge(
            f"report is {len(raw)} bytes; the limit is {max_bytes} bytes.",
            hint="Ask the reporter for a shorter report with the evidence as a link, "
            "or raise the intake size limit.",
        )
    if not raw or raw.isspace():  # bytes.isspace() tests what bytes.strip() strips
        raise ValidationFailed(
            "report is empty.", hint="Send the whole abuse e-mail, headers and body."
        )
    read = _read_fast(raw, max_part_bytes) or _read_stdlib(raw, max_part_bytes)
    headers, parts, warnings = read
    content_type = " ".join(headers.get("content-type", "").split()) or "text/plain"
    who = _reporter(headers, reporter, warnings)
    return made_with(
        ReportMessage,
        {
            "raw": raw,
            "headers": headers,
            "content_type": content_type,
            "parts": parts,
            "reporter": who,
            "warnings": _unique(warnings) if warnings else [],
        },
    )


_Read = tuple[dict[str, str], list[MessagePart], list[str]]


def _read_fast(raw: bytes, max_part_bytes: int, *, recover: bool = True) -> _Read | None:
    """Headers, parts and warnings by the fast reader, or None where it is not sure.
    ``recover``: read a multipart whose boundary never appears with the one its body
    uses, as the stdlib path does (not again in the message so rebuilt)."""
    warnings: list[str] = []
    parts: list[MessagePart] = []
    try:
        entity = mimefast.parse(raw)
        headers = _decoded_headers(entity.headers, warnings)
        _collect_fast(entity, parts, warnings, max_part_bytes)
    except mimefast.BoundaryNeverAppears as missing:
        if not recover:
            return None
        return _recovered_fast(missing.headers, missing.body, max_part_bytes)
    except Exception:  # mimefast.Unsure, or an error the stdlib path then meets too
        return None
    return headers, parts, warnings


def _recovered_fast(
    fields: tuple[tuple[str, str], ...], body: bytes, max_part_bytes: int
) -> _Read | None:
    """What ``_read_stdlib`` reads in a multipart whose declared boundary never appears
    (``fields`` its header fields, ``body`` its body), where the boundary its body uses
    makes a message the fast reader reads; otherwise None.

    The stdlib parser keeps such a body as the message's one payload (text, 8-bit bytes
    as surrogate escapes), so the message that ``_with_recovered_boundary`` sets the
    boundary of and rebuilds is made here of the same fields and payload, and rebuilt
    the same way; what the fast reader reads in that is what the stdlib path reads in it.
    """
    text = body.decode("ascii", "surrogateescape")  # the payload, as the stdlib keeps it
    found = _BOUNDARY_LINE.search(text)
    if found is None:
        return None
    boundary = found.group(1)
    message = Message()
    for name, value in fields:
        message[name] = value  # compat32 stores a value as it is given
    try:
        message.set_boundary(boundary)
    except Exception:  # left to the stdlib path, which meets the same
        return None
    message.set_payload(text)
    read = _read_fast(_flatten(message), max_part_bytes, recover=False)
    if read is None:
        return None
    headers, parts, warnings = read
    return headers, parts, [_boundary_recovered(boundary), *warnings]


def _read_stdlib(raw: bytes, max_part_bytes: int) -> _Read:
    warnings: list[str] = []
    try:
        read = _with_recovered_boundary(_PARSER.parsebytes(raw), warnings, max_part_bytes)
        if isinstance(read, tuple):
            return read
        message = read
        headers = _decoded_headers(message.raw_items(), warnings)
        parts: list[MessagePart] = []
        _collect(message, parts, warnings, max_part_bytes)
    except (TooLarge, ValidationFailed):
        raise
    except Exception as error:  # the stdlib parser has more failure modes than it documents
        raise ValidationFailed(
            f"report is not a readable e-mail message ({type(error).__name__}: {error}).",
            hint="Send the message source as received (RFC 5322), not a rendering of it.",
        ) from error
    return headers, parts, warnings


def decode_header_value(value: str, warnings: list[str] | None = None) -> str:
    """A header value unfolded, with RFC 2047 encoded words and raw 8-bit bytes decoded
    (GB2312/GBK read as GB18030; an unknown charset falls back like body text does)."""
    if value.isascii() and "\n" not in value and "=?" not in value:
        return value.strip()  # what the steps below come to: nothing to unfold or decode
    if "\n" in value:
        # Without a CR, the line breaks to drop are those of _FOLD_LF, a pattern the regex
        # engine finds by its first character (_FOLD's optional CR makes it try every
        # position).
        value = (_FOLD_LF if "\r" not in value else _FOLD).sub("", value)
    if not value.isascii() and _has_surrogates(value):
        # compat32 keeps raw 8-bit header bytes as surrogate escapes; get the bytes back.
        value, problem = decode_bytes(value.encode("ascii", "surrogateescape"))
        if problem and warnings is not None:
            warnings.append(f"header: {problem}")
    if "=?" not in value:
        return value.strip()
    value = _BETWEEN_WORDS.sub(r"\1\2", value)

    def decode_word(match: re.Match[str]) -> str:
        charset = match.group(1).split("*", 1)[0]
        data = _encoded_word_bytes(match.group(2), match.group(3))
        if data is None:
            return match.group(0)
        text, problem = decode_bytes(data, charset)
        if problem and warnings is not None:
            warnings.append(f"header: {problem}")
        return text

    return _ENCODED_WORD.sub(decode_word, value).strip()


def _encoded_word_bytes(encoding: str, payload: str) -> bytes | None:
    if encoding in "Bb":
        try:
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            return None
    return _QP_HEADER.sub(lambda m: chr(int(m.group(1), 16)), payload.replace("_", " ")).encode(
        "latin-1", errors="replace"
    )


def _decode_transfer(data: bytes, encoding: str) -> bytes:
    if encoding == "quoted-printable":
        return quopri.decodestring(data)
    try:
        return base64.b64decode(data + b"=" * (-len(data.strip()) % 4), validate=False)
    except (binascii.Error, ValueError):
        return data


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _decoded_headers(items: Iterable[tuple[str, object]], warnings: list[str]) -> dict[str, str]:
    """``items``: raw_items(); items() would turn 8-bit values into Header objects and lose
    the bytes."""
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.strip().lower()
        if key in headers:
            continue
        if isinstance(value, str) and value.isascii() and "\n" not in value and "=?" not in value:
            # decode_header_value's own first step, without the call: nothing to unfold,
            # no 8-bit bytes and no encoded word, so only the strip (most header values).
            headers[key] = value.strip()
        else:
            headers[key] = decode_header_value(str(value), warnings)
    return headers


def _reporter(headers: dict[str, str], given: str | None, warnings: list[str]) -> str:
    if given:
        return given.strip().lower()
    for field in ("from", "sender", "reply-to"):
        address = _address_in(headers.get(field, ""))
        if address is not None:
            return address
    warnings.append("the message has no From address; the reporter is unknown")
    return ""


@lru_cache(maxsize=4096)
def _address_in(value: str) -> str | None:
    """The first address with an @ in a From-like header value, lower-cased. Cached: the
    address parser is slow, and the same reporters write the same From line every time."""
    if _BARE_ADDRESS.fullmatch(value):
        return value.lower()
    for _name, address in getaddresses([value]):
        if "@" in address:
            return address.strip().lower()
    return None


def _boundary_recovered(boundary: str) -> str:
    """The warning of a multipart read with the boundary its body uses."""
    return (
        f"the declared multipart boundary does not appear; read the parts with the "
        f"boundary the body uses ({boundary!r})"
    )


def _with_recovered_boundary(
    message: Message, warnings: list[str], max_part_bytes: int
) -> Message | _Read:
    """A multipart whose declared boundary never appears is re-read with the boundary its
    body actually uses (a common mailer bug), so its parts are not lost. The message
    re-read is what it returns, or, where the fast reader reads it, what that reads."""
    if message.get_content_maintype() != "multipart" or message.is_multipart():
        return message
    body = message.get_payload()
    if not isinstance(body, str):
        return message
    found = _BOUNDARY_LINE.search(body)
    if found is None:
        warnings.append("the multipart body has no boundary lines; read it as one text part")
        return message
    boundary = found.group(1)
    message.set_boundary(boundary)
    flat = _flatten(message)
    recovered = _boundary_recovered(boundary)
    # The fast reader takes a multipart only with its boundary lines, where the stdlib
    # parser makes a multipart of it too; what it reads is what the rest of _read_stdlib
    # reads in that multipart (its warnings come after this one).
    fast = _read_fast(flat, max_part_bytes, recover=False)
    if fast is not None:
        headers, parts, more = fast
        return headers, parts, [*warnings, recovered, *more]
    repaired = _PARSER.parsebytes(flat)
    if repaired.is_multipart():
        warnings.append(recovered)
        return repaired
    return message


def _collect(
    part: Message, parts: list[MessagePart], warnings: list[str], max_part_bytes: int
) -> None:
    if len(parts) >= MAX_PARTS:
        warnings.append(f"the message has more than {MAX_PARTS} parts; the rest were skipped")
        return
    content_type = part.get_content_type()
    params = _params(part)
    filename = _filename(part, params, warnings)
    payload = part.get_payload()
    if part.get_content_maintype() == "message" and isinstance(payload, list):
        # An attached message (ARF's original, SpamCop's spam) stays one part, as text,
        # so a parser can read its headers; a feedback-report part arrives the same way.
        inner = b"\n".join(_flatten(m) for m in payload if isinstance(m, Message))
        encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
        if encoding in ("base64", "quoted-printable"):
            # Not allowed for message/* (RFC 2046) but sent anyway; the parser then took
            # the encoded text for a message, so decode what it kept.
            warnings.append(f"an attached {content_type} is {encoding}-encoded; decoded it")
            inner = _decode_transfer(inner.lstrip(b"\n"), encoding)
        _add(parts, warnings, content_type, filename, inner, None, max_part_bytes)
    elif isinstance(payload, list):
        for child in payload:
            if isinstance(child, Message):
                _collect(child, parts, warnings, max_part_bytes)
    else:
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            data = str(payload).encode("utf-8", "surrogateescape")
        _add(parts, warnings, content_type, filename, data, params.get("charset"), max_part_bytes)
    for defect in part.defects:
        warnings.append(_DEFECT_TEXT.get(type(defect), f"MIME defect: {type(defect).__name__}"))


def _collect_fast(
    entity: mimefast.Entity, parts: list[MessagePart], warnings: list[str], max_part_bytes: int
) -> None:
    """``_collect`` for the fast reader's entities (which carry no defects)."""
    if len(parts) >= MAX_PARTS:
        warnings.append(f"the message has more than {MAX_PARTS} parts; the rest were skipped")
        return
    content_type = entity.content_type
    filename = _decoded_filename(entity.filename, warnings)
    children = entity.children
    if children is None:
        entity.stored_text()  # _collect's get_payload(): fails for a few codecs, as there
        data, defects = entity.decoded()
        _add(parts, warnings, content_type, filename, data, entity.charset, max_part_bytes)
        for defect in defects:  # as _collect reports those get_payload(decode=True) records
            warnings.append(_DEFECT_TEXT.get(defect, f"MIME defect: {defect.__name__}"))
    elif entity.maintype == "message":
        if entity.cte.strip().lower() in ("base64", "quoted-printable"):
            raise mimefast.Unsure("a transfer-encoded attached message")
        inner = children[0].flatten()
        _add(parts, warnings, content_type, filename, inner, None, max_part_bytes)
    else:
        for child in children:
            _collect_fast(child, parts, warnings, max_part_bytes)
    for defect in entity.defects:  # after the parts, as _collect reports them
        warnings.append(_DEFECT_TEXT.get(defect, f"MIME defect: {defect.__name__}"))


def _add(
    parts: list[MessagePart],
    warnings: list[str],
    content_type: str,
    filename: str | None,
    data: bytes,
    charset: str | None,
    max_part_bytes: int,
) -> None:
    if len(data) > max_part_bytes:
        warnings.append(
            f"{_label(parts, content_type, filename)} is {len(data)} bytes, over the "
            f"{max_part_bytes}-byte part limit; skipped"
        )
        return
    content: str | bytes = data
    label_type = content_type
    if content_type.startswith("multipart/"):
        content_type = "text/plain"  # a multipart without usable boundary: one body of text
    if content_type.startswith(("text/", "message/")):
        text, problem = decode_bytes(data, charset)
        if problem:
            warnings.append(f"{_label(parts, label_type, filename)}: {problem}")
        content = text
    parts.append(
        made_with(
            MessagePart, {"content_type": content_type, "filename": filename, "content": content}
        )
    )


def _label(parts: list[MessagePart], content_type: str, filename: str | None) -> str:
    return f"part {len(parts) + 1} ({content_type}{', ' + filename if filename else ''})"


def _params(part: Message) -> dict[str, str]:
    """The Content-Type parameters, read once (compat32 re-parses the header per lookup)."""
    found: dict[str, str] = {}
    for name, value in part.get_params(failobj=[])[1:]:
        found.setdefault(name.lower(), collapse_rfc2231_value(value).strip())
    return found


def _filename(part: Message, params: dict[str, str], warnings: list[str]) -> str | None:
    return _decoded_filename(part.get_filename() or params.get("name"), warnings)


def _decoded_filename(name: object, warnings: list[str]) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return None
    return decode_header_value(name, warnings)


def _flatten(message: Message) -> bytes:
    """An attached message's bytes as they arrived (header folding kept), rebuilt from
    the parsed tree; much cheaper than the stdlib generator, which refolds headers."""
    lines = [f"{name}: {value}\n" for name, value in message.raw_items()]
    head = "".join(lines).encode("utf-8", "surrogateescape")
    payload = message.get_payload()
    if not isinstance(payload, list):
        return head + b"\n" + str(payload).encode("utf-8", "surrogateescape")
    children = [_flatten(m) for m in payload if isinstance(m, Message)]
    boundary = message.get_boundary()
    if boundary is None or message.get_content_maintype() != "multipart":
        return head + b"\n" + b"\n".join(children)
    delimiter = f"--{boundary}".encode("utf-8", "surrogateescape")
    body = [(message.preamble or "").encode("utf-8", "surrogateescape")]
    body.extend(delimiter + b"\n" + child for child in children)
    body.append(delimiter + b"--\n" + (message.epilogue or "").encode("utf-8", "surrogateescape"))
    return head + b"\n" + b"\n".join(body)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
