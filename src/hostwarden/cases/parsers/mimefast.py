"""A fast reader for well-formed MIME messages that gives exactly what the stdlib ``email``
parser (``compat32`` policy) gives, or raises ``Unsure``.

Why hand-written: the stdlib parser is correct but slow at intake volumes (its feedparser
goes line by line through generators, and each header lookup re-parses the header). The
fast Rust-based parsers on PyPI (fast-mail-parser, on the ``mailparse`` crate) answer with a
flattened view: decoded headers, text bodies and a list of attachments, as their documented
API shows. The attached message/rfc822 and message/feedback-report parts, which the ARF and
SpamCop parsers read as messages, and the raw 8-bit header bytes that the charset repair
needs are not in it.

This reader takes only what it is sure to read as the stdlib does: every line ending the
same way (all LF, or all CRLF); header blocks of ``Name: value`` lines and continuation
lines only (no envelope ``From `` line, no line without a colon); every multipart with a
boundary, its start and close boundary lines, no two boundary lines in a row and no
transfer encoding; no RFC 2231 or backslash-quoted parameters; ASCII Content-Type,
Content-Transfer-Encoding and Content-Disposition values; base64 bodies that decode
without repair; no uuencoded parts, multipart/digest, message/delivery-status or
transfer-encoded attached message; at most 30 levels of nesting. On anything else, or
where the stdlib would record a defect, it raises ``Unsure`` and the caller falls back to
the stdlib parser, so what a report reads as never depends on which reader read it.
"""

from __future__ import annotations

import base64
import binascii
import re
from email.errors import (
    CloseBoundaryNotFoundDefect,
    InvalidBase64CharactersDefect,
    InvalidBase64LengthDefect,
    InvalidBase64PaddingDefect,
    MessageDefect,
)
from email.utils import unquote
from functools import lru_cache
from typing import NamedTuple

#: Nesting deeper than this goes to the stdlib parser (which decides whether it can cope).
_MAX_DEPTH = 30
#: A header field after a line break: a name of printable ASCII except ':' (as the
#: stdlib's headerRE has it), the colon, blanks, then the value and its continuation
#: lines. It is searched in the block with a line break put before it, which finds the
#: fields at line starts that "^" with re.MULTILINE would, much faster (the engine skips
#: ahead to the line breaks instead of trying every position). ``[^\n]`` is ``.`` (no
#: DOTALL), which the engine matches faster.
_FIELD = re.compile(r"\n([!-9;-~]+):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
_UU = ("x-uuencode", "uuencode", "uue", "x-uue")
#: Content-Type and Content-Disposition values up to this long are read once and cached:
#: the same mailers write the same part headers in report after report.
_CACHED_VALUE = 1000


class Unsure(Exception):
    """The message holds something this reader does not reproduce exactly."""


class BoundaryNeverAppears(Unsure):
    """The message is a multipart whose boundary no line of its body has. The stdlib
    parser then keeps the body as it is, as the one payload of the message."""

    def __init__(self, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        super().__init__("the multipart boundary never appears")
        #: The message's header fields, as raw_items() has them.
        self.headers = headers
        #: The body, as the bytes of its payload.
        self.body = body


class _Content(NamedTuple):
    """What mime.py and the stdlib read from a part's Content-Type and -Disposition."""

    #: get_content_type() (before the multipart/digest default, which we refuse).
    content_type: str
    #: _params(part).get("charset"): the Content-Type charset, unquoted twice, stripped.
    charset: str | None
    #: get_filename() or _params(part).get("name").
    filename: str | None
    #: get_param("charset", "ascii"), which get_payload() decodes 8-bit text with.
    stored_charset: str
    #: get_boundary() ("" when there is none).
    boundary: str


_PLAIN = _Content("text/plain", None, None, "ascii", "")


class Entity:
    """One message or MIME part, holding what ``mime.py`` reads from a stdlib ``Message``."""

    __slots__ = (
        "body",
        "children",
        "content",
        "cte",
        "defects",
        "epilogue",
        "headers",
        "preamble",
    )

    def __init__(self, headers: tuple[tuple[str, str], ...], content: _Content, cte: str) -> None:
        #: ``raw_items()``: names as written, values unfolded only of the last line end.
        self.headers = headers
        self.content = content
        #: The first Content-Transfer-Encoding value as stored ("" when there is none).
        self.cte = cte
        #: The payload as stored, before transfer decoding (leaf parts).
        self.body = b""
        #: Multipart: its parts; message/*: the attached message; leaf: None.
        self.children: list[Entity] | None = None
        self.preamble: bytes | None = None
        self.epilogue: bytes | None = None
        #: The defects the stdlib records on this entity while parsing it.
        self.defects: tuple[type[MessageDefect], ...] = ()

    @property
    def content_type(self) -> str:
        return self.content.content_type

    @property
    def maintype(self) -> str:
        return self.content.content_type.split("/")[0]

    @property
    def charset(self) -> str | None:
        return self.content.charset

    @property
    def filename(self) -> str | None:
        return self.content.filename

    def decoded(self) -> tuple[bytes, tuple[type[MessageDefect], ...]]:
        """``get_payload(decode=True)`` of a leaf part, and the defects it records on the
        part (a base64 body it repairs); Unsure for what this reader does not decode."""
        cte = self.cte.lower()
        if cte == "quoted-printable":
            return binascii.a2b_qp(self.body), ()
        if cte == "base64":
            return _base64_decoded(b"".join(self.body.splitlines()))
        if cte in _UU:
            raise Unsure("uuencoded part")
        return self.body, ()

    def flatten(self) -> bytes:
        """What ``mime._flatten`` makes of the stdlib's ``Message`` for this entity."""
        head = "".join([f"{name}: {value}\n" for name, value in self.headers])
        data = head.encode("utf-8", "surrogateescape") + b"\n"
        children = self.children
        if children is None:
            return data + self.stored_text()
        flat = [child.flatten() for child in children]
        if self.maintype != "multipart":
            return data + b"\n".join(flat)
        delimiter = b"--" + self.content.boundary.encode("ascii")
        body = [self.preamble or b""]
        body.extend(delimiter + b"\n" + child for child in flat)
        body.append(delimiter + b"--\n" + (self.epilogue or b""))
        return data + b"\n".join(body)

    def stored_text(self) -> bytes:
        """``get_payload()`` (without decode) of a leaf part, as ``_flatten`` encodes it:
        8-bit bytes are read as text with the declared charset, errors replaced (a codec
        that refuses to replace errors raises, as it does in the stdlib)."""
        body = self.body
        if body.isascii():
            return body
        try:
            text = body.decode(self.content.stored_charset, "replace")
        except LookupError:
            text = body.decode("ascii", "replace")
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeError:
            raise Unsure("stored text does not encode back") from None


def _base64_decoded(encoded: bytes) -> tuple[bytes, tuple[type[MessageDefect], ...]]:
    """A base64 body (its lines joined) decoded as the stdlib's get_payload(decode=True)
    decodes it, with the defects it records: strictly after padding the length to a
    multiple of 4 (a padding defect when it had to); failing that, skipping what is not
    base64 (a characters defect), then with "==" added too (both defects); failing that
    too, the encoded bytes themselves (a length defect)."""
    missing = -len(encoded) % 4
    try:
        decoded = base64.b64decode(encoded + b"=" * missing, validate=True)
    except binascii.Error:
        pass
    else:
        return decoded, (InvalidBase64PaddingDefect,) if missing else ()
    for padding, defects in (
        (b"", (InvalidBase64CharactersDefect,)),
        (b"==", (InvalidBase64CharactersDefect, InvalidBase64PaddingDefect)),
    ):
        try:
            return base64.b64decode(encoded + padding, validate=False), defects
        except binascii.Error:
            continue
    return encoded, (InvalidBase64LengthDefect,)


def parse(raw: bytes) -> Entity:
    """``raw`` read as the stdlib parser reads it; raises Unsure where it is not sure."""
    return _Reader(raw).entity(0, len(raw), 0, strip=False)


class _Reader:
    def __init__(self, raw: bytes) -> None:
        if b"\r" in raw:
            lines = raw.count(b"\n")
            if raw.count(b"\r\n") != lines or raw.count(b"\r") != lines:
                raise Unsure("mixed line ends")
            self.nl = b"\r\n"
        else:
            self.nl = b"\n"
        self.crlf = self.nl == b"\r\n"
        self.blank_line = self.nl + self.nl
        self.raw = raw

    def entity(self, start: int, end: int, depth: int, *, strip: bool) -> Entity:
        """The entity in raw[start:end]. ``strip``: the line end before the boundary that
        ends the region belongs to the boundary (RFC 2046), so the last payload loses it."""
        if depth > _MAX_DEPTH:
            raise Unsure("deep nesting")
        raw, nl = self.raw, self.nl
        # Where the header block ends and the body starts (a region that starts with an
        # empty line has no headers; one without an empty line is all headers).
        if start >= end:
            head_end = body_start = end
        elif raw.startswith(nl, start):
            head_end = start
            body_start = start + len(nl)
        else:
            blank = raw.find(self.blank_line, start, end)
            if blank < 0:
                head_end = body_start = end
            else:
                head_end = blank + len(nl)
                body_start = head_end + len(nl)
        block = raw[start:head_end]
        if len(block) <= _CACHED_BLOCK:
            head = _cached_head(block, self.crlf)
        else:
            head = _read_head(block, self.crlf)
        content = head.content
        entity = Entity(head.fields, content, head.cte)
        maintype = head.maintype
        if maintype == "multipart":
            if content.content_type == "multipart/digest":
                raise Unsure("digest parts default to message/rfc822")
            # Without the header the stdlib takes 8bit; an empty value is a defect.
            if head.has_cte and head.cte.lower() not in ("7bit", "8bit", "binary"):
                raise Unsure("multipart with a transfer encoding")
            if not content.boundary:
                raise Unsure("multipart without boundary")
            self._multipart(entity, body_start, end, depth, strip=strip)
        elif maintype == "message":
            if content.content_type == "message/delivery-status":
                raise Unsure("delivery-status blocks")
            entity.children = [self.entity(body_start, end, depth + 1, strip=strip)]
        else:
            cut = len(nl) if strip and end > body_start else 0
            entity.body = raw[body_start : end - cut]
        return entity

    def _multipart(self, entity: Entity, start: int, end: int, depth: int, *, strip: bool) -> None:
        raw, nl = self.raw, self.nl
        marker = b"--" + entity.content.boundary.encode("ascii")
        found = self._boundary_line(start, end, marker)
        if found is None and depth == 0:
            raise BoundaryNeverAppears(entity.headers, raw[start:end])
        if found is None or found[2]:
            raise Unsure("no start boundary")
        line_start, position, _ = found
        if line_start > start:
            entity.preamble = raw[start : line_start - len(nl)]
        children: list[Entity] = []
        while True:
            found = self._boundary_line(position, end, marker)
            if found is None and depth == 0 and raw.endswith(nl):
                # The message ends without the close boundary: the stdlib reads the last
                # part up to the end less the last line end (as before a boundary), keeps
                # no epilogue and records a defect. Taken for a last part that is a leaf
                # only; a nested multipart would end at an enclosing boundary instead.
                last = self.entity(position, end, depth + 1, strip=True)
                if last.children is not None:
                    raise Unsure("no close boundary after a part with parts")
                children.append(last)
                entity.children = children
                entity.defects = (CloseBoundaryNotFoundDefect,)
                return
            if found is None:
                raise Unsure("no close boundary")
            line_start, line_end, close = found
            if line_start == position:
                raise Unsure("boundary lines in a row")
            children.append(self.entity(position, line_start, depth + 1, strip=True))
            if close:
                break
            position = line_end
        entity.children = children
        epilogue = raw[line_end:end]
        if strip:
            entity.epilogue = epilogue[: -len(nl)] if epilogue else None
        else:
            entity.epilogue = epilogue

    def _boundary_line(
        self, position: int, end: int, marker: bytes
    ) -> tuple[int, int, bool] | None:
        """The first line in raw[position:end] (position starts a line) that is ``marker``,
        optionally ``--``, optional blanks: its start, the next line's start, and whether it
        is the close boundary."""
        raw, nl = self.raw, self.nl
        search = b"\n" + marker
        if raw.startswith(marker, position, end):
            at = position
        else:
            at = raw.find(search, position, end) + 1
            if not at:
                return None
        while True:
            after = at + len(marker)
            eol = raw.find(b"\n", after, end)
            if eol < 0:
                rest, line_end = raw[after:end], end
            else:
                rest, line_end = raw[after : eol + 1 - len(nl)], eol + 1
            rest = rest.rstrip(b" \t")
            if not rest or rest == b"--":
                return at, line_end, bool(rest)
            at = raw.find(search, after, end) + 1
            if not at:
                return None


class _Head(NamedTuple):
    """What a header block says, as ``Entity`` and ``_Reader.entity`` need it."""

    #: ``raw_items()``: names as written, values unfolded only of the last line end.
    fields: tuple[tuple[str, str], ...]
    content: _Content
    #: The first Content-Transfer-Encoding value ("" when there is none) and whether
    #: there is one (an empty value is not the same as none for a multipart).
    cte: str
    has_cte: bool
    #: content.content_type before its "/".
    maintype: str


#: Header blocks up to this long are read once and cached by their bytes: a mailer writes
#: the same part headers in report after report, and a block is read the same way
#: wherever it appears (the result depends on its bytes and the line ends only).
_CACHED_BLOCK = 600


def _read_head(block: bytes, crlf: bool) -> _Head:
    """The header fields in ``block`` (a message's or part's header lines, each with its
    line end, or nothing) as compat32 stores them, and what the Content headers say."""
    fields = _header_fields(block, crlf)
    # Message.get(): the first field of a name, names compared lower-cased.
    first = {name.lower(): value for name, value in reversed(fields) if name[0] in "cC"}
    content_type = first.get("content-type")
    disposition = first.get("content-disposition")
    if content_type is None and disposition is None:
        content = _PLAIN
    elif len(content_type or "") + len(disposition or "") <= _CACHED_VALUE:
        content = _cached_content(content_type, disposition)
    else:
        content = _read_content(content_type, disposition)
    cte = first.get("content-transfer-encoding")
    if cte is not None and not cte.isascii():
        raise Unsure("8-bit Content-Transfer-Encoding")
    maintype = content.content_type.split("/")[0]
    return _Head(tuple(fields), content, cte or "", cte is not None, maintype)


_cached_head = lru_cache(maxsize=1024)(_read_head)


def _header_fields(block: bytes, crlf: bool) -> list[tuple[str, str]]:
    if not block:
        return []
    text = block.decode("ascii", "surrogateescape")
    if crlf:
        text = text.replace("\r\n", "\n")
    if text[0] in " \t":
        raise Unsure("the first header line is a continuation")
    fields: list[tuple[str, str]] = _FIELD.findall("\n" + text)
    # Every line is a field's first line or a continuation line (no envelope line, no
    # line without a colon): as many fields as lines that start one.
    starts = text.count("\n") + (not text.endswith("\n"))
    if len(fields) != starts - text.count("\n ") - text.count("\n\t"):
        raise Unsure("a header line the stdlib reads otherwise")
    if crlf:
        fields = [(name, value.replace("\n", "\r\n")) for name, value in fields]
    return fields


def _read_content(content_type: str | None, disposition: str | None) -> _Content:
    """Message.get_content_type(), get_param(), get_boundary() and get_filename(), and
    mime._params(), on the first Content-Type and Content-Disposition values."""
    params: list[tuple[str, str]] = []
    kind = "text/plain"
    if content_type is not None:
        if not content_type.isascii():
            raise Unsure("8-bit Content-Type")  # compat32 would make a Header of it
        kind = content_type.partition(";")[0].strip().lower()
        if kind.count("/") != 1:
            kind = "text/plain"
        params = _param_list(content_type)
    charset = None
    for name, value in params[1:]:
        if name.lower() == "charset":
            # get_params() unquotes once, collapse_rfc2231_value() once more.
            charset = unquote(value).strip()
            break
    filename = None
    if disposition is not None:
        if not disposition.isascii():
            raise Unsure("8-bit Content-Disposition")
        filename = _param(_param_list(disposition), "filename")
    if filename is None:
        filename = _param(params, "name")
    if filename is not None:
        filename = unquote(filename).strip()
    if not filename:
        for name, value in params[1:]:
            if name.lower() == "name":
                filename = unquote(value).strip()
                break
    boundary = _param(params, "boundary")
    if boundary is None:
        boundary = ""
    else:
        if "\r" in boundary or "\n" in boundary:
            raise Unsure("a boundary no line can hold")
        boundary = unquote(boundary).rstrip()
    stored_charset = _param(params, "charset")
    if stored_charset is None:
        stored_charset = "ascii"
    return _Content(kind, charset, filename or None, stored_charset, boundary)


_cached_content = lru_cache(maxsize=1024)(_read_content)


def _param_list(value: str) -> list[tuple[str, str]]:
    """A header's parameters as ``Message._get_params_preserve`` has them before RFC 2231
    decoding: (name, value unquoted once), the first being the value before any ';'."""
    if "\\" in value:
        raise Unsure("backslash-quoted parameter")
    pieces = value.split(";")
    if '"' in value and any(piece.count('"') % 2 for piece in pieces):
        pieces = _split_quoted(value)
    params: list[tuple[str, str]] = []
    for piece in pieces:
        name, equals, param = piece.partition("=")
        if equals:
            params.append((name.strip().lower(), unquote(param.strip())))
        else:
            params.append((piece.strip(), ""))
    for name, _ in params[1:]:
        if "*" in name:
            raise Unsure("RFC 2231 parameter")
    return params


def _split_quoted(value: str) -> list[str]:
    """``email.message._parseparam``'s split at the semicolons outside quotes."""
    pieces = []
    rest = ";" + value
    while rest[:1] == ";":
        rest = rest[1:]
        end = rest.find(";")
        while end > 0 and rest.count('"', 0, end) % 2:
            end = rest.find(";", end + 1)
        if end < 0:
            end = len(rest)
        pieces.append(rest[:end])
        rest = rest[end:]
    return pieces


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    """``Message.get_param(name)``: the first parameter so named (unquoted once)."""
    for key, value in params:
        if key.lower() == name:
            return value
    return None
