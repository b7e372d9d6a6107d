"""Parsers for X-ARF 0.2 (YAML report part, as fail2ban and blocklist.de send) and XARF v4 (JSON).

X-ARF 0.2 mails carry ``X-ARF: YES`` and three parts: text for people, the report as
YAML in a ``report.txt`` text part, and optional evidence (a log excerpt). XARF v4 is a
JSON document (``Reporter``/``ReporterInfo``, ``Sender``, ``Report``) sent as an
attachment or as the whole body, or posted to the API, which calls
``parse_xarf4_document``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import yaml

from hostwarden.cases.parsers.base import MessagePart, ParsedReport, ReportMessage
from hostwarden.cases.parsers.common import (
    LinePattern,
    Moment,
    category_from_text,
    category_from_vocabulary,
    decode_bytes,
    header_fields,
    moment_of,
    new_event,
    normalise_ip,
    parse_time,
    port_number,
    report_time,
    url_host,
)
from hostwarden.errors import TooLarge, ValidationFailed

#: X-ARF report parts are a few hundred bytes; anything far larger is not one, and YAML
#: parsing time grows with size, so a larger part is read line by line instead.
MAX_YAML_BYTES = 64 * 1024
#: Largest XARF v4 document accepted (its samples are inline, base64 at most).
MAX_XARF4_BYTES = 5 * 1024 * 1024

#: Report types of both X-ARF versions (lower-case, without - _ and spaces).
_REPORT_TYPES = {
    "loginattack": "bruteforce",
    "bruteforce": "bruteforce",
    "spam": "spam",
    "harvesting": "spam",
    "phishing": "phishing",
    "portscan": "scanning",
    "scan": "scanning",
    "scanning": "scanning",
    "malware": "malware",
    "virus": "malware",
    "trojan": "malware",
    "bot": "malware",
    "botnet": "malware",
    "cc": "malware",
    "compromisedserver": "malware",
    "compromisedaccount": "malware",
    "ddos": "ddos",
    "dos": "ddos",
    "fraud": "fraud",
    "copyright": "copyright",
    "dmca": "copyright",
    "trademark": "copyright",
    "childabuse": "illegal-content",
    "csam": "illegal-content",
    "illegalcontent": "illegal-content",
    "illegaladvertisement": "illegal-content",
    "databreach": "data-leak",
    "dataleak": "data-leak",
}
#: X-ARF 0.2 ``Category`` values that settle the category when the report type does not.
_XARF02_CATEGORIES = {"fraud": "fraud", "malware": "malware", "spam": "spam"}

#: The loader of ``yaml.safe_load`` (SafeConstructor: plain data only, never Python objects
#: from tags) on libyaml's C parser, about ten times faster than the pure-Python one, which
#: stands in where PyYAML was built without libyaml. X-ARF is a large share of intake.
_SAFE_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_DATE_LINE = LinePattern(r"Date:[ \t]*(.+?)\s*$", re.I)
_SOURCE_LINE = LinePattern(r"Source:", re.I)
_XARF02_MARKERS = LinePattern(r"(?:Reported-From|Report-Type|Schema-URL):", re.I)


class XArf02Parser:
    name = "xarf02"

    def certain(self, message: ReportMessage) -> bool:
        """Whether ``score`` is 1.0 (see ``parsers.choose``)."""
        return _xarf02_flagged(message) and _xarf02_report_part(message) is not None

    def score(self, message: ReportMessage) -> float:
        flagged = _xarf02_flagged(message)
        report = _xarf02_report_part(message)
        if flagged and report is not None:
            return 1.0
        if report is not None:
            return 0.8
        return 0.5 if flagged else 0.0

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        part = _xarf02_report_part(message)
        if part is None or not isinstance(part.content, str):
            notes.append("the X-ARF mail has no report part (report.txt with YAML fields)")
            return ParsedReport(parser=self.name, events=[], notes=notes)
        report_text = part.content
        fields = _xarf02_fields(report_text, notes)

        def field(name: str) -> str:
            value = fields.get(name.lower())
            return "" if value is None else str(value).strip()

        source = field("source")
        source_type = field("source-type").lower()
        ip: str | None = None
        url: str | None = None
        domain: str | None = None
        if source_type == "uri" or "://" in source:
            url = source
            domain, ip = url_host(source)
        else:
            ip = normalise_ip(source)
            if ip is None and source:
                notes.append(f"X-ARF Source {source!r} is not an IP address")
        if ip is None and url is None:
            notes.append("the X-ARF report names no usable Source")
            return ParsedReport(parser=self.name, events=[], notes=notes)

        report_type = field("report-type")
        category = (
            category_from_vocabulary(report_type, _REPORT_TYPES)
            or _XARF02_CATEGORIES.get(field("category").lower())
            or category_from_text(report_type)
            or "other"
        )
        when = _xarf02_time(report_text, fields.get("date")) or report_time(message, notes)
        evidence = [report_text.strip()]
        log = _evidence_part(message, part)
        if log:
            evidence.append("\n".join(log.splitlines()[:20]))
        # _json_value gives back what JSON already takes (most values) as it is.
        extra: dict[str, Any] = {
            key.replace("-", "_"): value if type(value) in _JSON_SCALARS else _json_value(value)
            for key, value in fields.items()
            if key not in ("source", "port", "date") and value is not None
        }
        event = new_event(
            category,
            when,
            message.reporter,
            "\n".join(evidence),
            ip=ip,
            port=port_number(fields.get("port")),
            domain=domain,
            url=url,
            extra=extra,
        )
        return ParsedReport(parser=self.name, events=[event], notes=notes)


class Xarf4Parser:
    name = "xarf4"

    def certain(self, message: ReportMessage) -> bool:
        """Whether ``score`` is 1.0 (see ``parsers.choose``)."""
        return _xarf4_candidate(message) is not None

    def score(self, message: ReportMessage) -> float:
        return 1.0 if _xarf4_candidate(message) is not None else 0.0

    def parse(self, message: ReportMessage) -> ParsedReport:
        candidate = _xarf4_candidate(message)
        if candidate is None:
            return ParsedReport(
                parser=self.name, events=[], notes=["the mail carries no XARF v4 JSON document"]
            )
        try:
            report = parse_xarf4_document(candidate, reporter=message.reporter)
        except (ValidationFailed, TooLarge) as error:
            return ParsedReport(parser=self.name, events=[], notes=[str(error)])
        return report


def parse_xarf4_document(document: dict[str, Any] | str | bytes, *, reporter: str) -> ParsedReport:
    """One XARF v4 report as events. Raises ValidationFailed naming the field that is
    missing or wrong, TooLarge for a document over MAX_XARF4_BYTES."""
    data = _xarf4_object(document)
    version = data.get("Version")
    if version is not None and not str(version).startswith("4"):
        raise _invalid("Version", f"is {version!r}; this parser reads XARF version 4 documents")
    report = data.get("Report")
    if not isinstance(report, dict):
        raise _invalid("Report", "is missing or not an object")
    report_class = report.get("ReportClass")
    report_type = report.get("ReportType")
    if not isinstance(report_class, str) or not report_class.strip():
        raise _invalid("Report.ReportClass", "is missing (e.g. Activity, Content, Copyright)")
    if not isinstance(report_type, str) or not report_type.strip():
        raise _invalid("Report.ReportType", "is missing (e.g. Spam, Login-Attack, Phishing)")
    when = _xarf4_time(report.get("Date"))
    ip, url, domain = _xarf4_subject(report)
    port = None
    if report.get("SourcePort") is not None:
        port = port_number(report["SourcePort"])
        if port is None:
            raise _invalid("Report.SourcePort", f"{report['SourcePort']!r} is not a port 0-65535")
    category = (
        category_from_vocabulary(report_type, _REPORT_TYPES)
        or category_from_vocabulary(report_class, _REPORT_TYPES)
        or category_from_text(f"{report_type} {report_class}")
        or "other"
    )
    reporter_info = data.get("Reporter") or data.get("ReporterInfo") or {}
    extra: dict[str, Any] = {
        "report_class": report_class,
        "report_type": report_type,
    }
    if isinstance(reporter_info, dict):
        for key in ("ReporterOrg", "ReporterOrgDomain", "ReporterOrgEmail", "ReporterContactEmail"):
            if reporter_info.get(key):
                extra[_snake(key)] = str(reporter_info[key])
    for key, value in report.items():
        if key not in ("Samples", "Date", "SourceIp", "SourcePort", "Url", "Source"):
            extra.setdefault(_snake(key), _json_value(value))
    samples = report.get("Samples")
    if isinstance(samples, list):
        extra["samples"] = len(samples)
    evidence = {k: v for k, v in report.items() if k != "Samples"}
    text = _indented_json(evidence)
    if isinstance(samples, list):
        text += "\n" + "\n".join(_sample_text(s) for s in samples[:3])
    event = new_event(
        category, when, reporter, text, ip=ip, port=port, domain=domain, url=url, extra=extra
    )
    return ParsedReport(parser="xarf4", events=[event])


# --- X-ARF 0.2 helpers ---------------------------------------------------------------------


def _xarf02_flagged(message: ReportMessage) -> bool:
    return (
        message.headers.get("x-arf", "").strip().lower() == "yes"
        or message.headers.get("x-xarf", "").strip().lower() == "plain"
    )


def _xarf02_report_part(message: ReportMessage) -> MessagePart | None:
    for part in message.parts:
        if not isinstance(part.content, str):
            continue
        if part.filename and part.filename.lower() == "report.txt":
            return part
        if (
            part.content_type == "text/plain"
            and _XARF02_MARKERS.search(part.content[:4000])
            and _SOURCE_LINE.search(part.content)
        ):
            return part
    return None


def _xarf02_fields(text: str, notes: list[str]) -> dict[str, Any]:
    # ASCII text is as many bytes as characters (and encodes, as every report text does).
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size <= MAX_YAML_BYTES:
        try:
            loaded = _flat_yaml(text)
            if loaded is None:
                loaded = yaml.load(text, Loader=_SAFE_YAML_LOADER)  # noqa: S506 (a safe loader)
        except yaml.YAMLError as error:
            notes.append(f"the X-ARF report part is not valid YAML ({error}); read it line by line")
        else:
            if isinstance(loaded, dict):
                return {str(k).strip().lower(): v for k, v in loaded.items()}
            notes.append("the X-ARF report part is not a YAML mapping; read it line by line")
    else:
        notes.append(f"the X-ARF report part exceeds {MAX_YAML_BYTES} bytes; read it line by line")
    return {name: values[0] for name, values in header_fields(text).items()}


def _flat_yaml(text: str) -> dict[Any, Any] | None:
    """What ``yaml.load`` with the safe loader makes of ``text`` when it is the plain
    ``Name: value`` lines X-ARF reports are; None for anything else (quotes, comments,
    indentation, tabs, flow or block syntax, tags …), which PyYAML then reads itself.

    Values are typed by PyYAML's own resolver and constructors, so ``Port: 22`` is an
    int and ``Date: 2026-05-01T10:00:00Z`` a datetime exactly as PyYAML gives them; only
    the parsing is done here, because PyYAML builds a node per scalar in Python, which
    makes it the larger part of parsing an X-ARF report.
    """
    if _YAML_RESOLVER.yaml_path_resolvers:
        return None  # PyYAML was taught types that depend on where a value is
    lines = text.split("\n")
    loaded: dict[Any, Any] = {}
    cached = _cached_flat_yaml_field
    for line in lines[1:] if lines[0] == "---" else lines:
        if line:
            # _flat_yaml_field(line), without a call more per line.
            field = cached(line) if len(line) <= _CACHED_LINE_CHARS else _flat_yaml_field(line)
            if field is None:
                return None
            loaded[field[0]] = field[1]
    return loaded or None


#: ``Name: value`` with an unquoted value that starts with no YAML indicator and holds
#: no comment; a line that is anything more than this is left to PyYAML.
_FLAT_YAML_LINE = re.compile(
    r"([A-Za-z][A-Za-z0-9_-]{0,127}):(?: +([^\s#'\"&*!|>%@`{}\[\],?:-](?:[^#]*[^ #])?))? *"
)
_YAML_STR_TAG = "tag:yaml.org,2002:str"
#: Tags of plain scalars whose constructors build values that never change.
_YAML_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)
_YAML_RESOLVER = yaml.resolver.Resolver()
_YAML_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_NOT_PLAIN = object()


def _flat_yaml_field(line: str) -> tuple[object, object] | None:
    """The key and value of a ``Name: value`` line as PyYAML's safe loader types them,
    or None for a line left to PyYAML."""
    # A feed's reports repeat most of their lines, so short ones are remembered; a long
    # one is rare and would hold on to a lot of memory.
    if len(line) <= _CACHED_LINE_CHARS:
        return _cached_flat_yaml_field(line)
    return _read_flat_yaml_field(line)


def _read_flat_yaml_field(line: str) -> tuple[object, object] | None:
    field = _FLAT_YAML_LINE.fullmatch(line)
    if field is None or not line.isprintable():
        return None
    key, value = field.group(1), field.group(2) or ""
    if ": " in value or value.endswith(":"):
        return None
    typed_key = _plain_yaml_scalar(key)
    typed_value = _plain_yaml_scalar(value)
    if typed_key is _NOT_PLAIN or typed_value is _NOT_PLAIN:
        return None
    return typed_key, typed_value


_CACHED_LINE_CHARS = 200
_cached_flat_yaml_field = lru_cache(maxsize=4096)(_read_flat_yaml_field)


def _plain_yaml_scalar(value: str) -> object:
    """``value`` as an unquoted scalar typed as PyYAML's safe loader types it, or
    _NOT_PLAIN for a kind left to PyYAML (it raises what it raises for a bad one).
    What it gives is never changed (str, int, float, bool, None, a date), so may be shared."""
    resolve = _YAML_RESOLVER.resolve
    tag = resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    if tag == _YAML_STR_TAG:
        return value
    if tag not in _YAML_SCALAR_TAGS:
        return _NOT_PLAIN
    construct = _YAML_CONSTRUCTOR.yaml_constructors[tag]
    try:
        return construct(_YAML_CONSTRUCTOR, yaml.ScalarNode(tag, value))
    except Exception:  # e.g. a date that does not exist: PyYAML reports it its own way
        return _NOT_PLAIN


def _xarf02_time(report_text: str, loaded: object) -> Moment | None:
    # The written Date line keeps the zone as the reporter wrote it; YAML has already
    # turned ISO dates into datetime objects and dropped that.
    line = _DATE_LINE.search(report_text)
    if line is not None:
        moment = parse_time(line.group(1).strip("'\""), chinese=False)
        if moment is not None:
            return moment
    if isinstance(loaded, datetime):
        return moment_of(loaded)
    return None


def _evidence_part(message: ReportMessage, report: MessagePart) -> str:
    seen_report = False
    for part in message.parts:
        if part is report:
            seen_report = True
            continue
        if seen_report and isinstance(part.content, str):
            return part.content
    return ""


# --- XARF v4 helpers ----------------------------------------------------------------------


def _xarf4_candidate(message: ReportMessage) -> str | bytes | None:
    """The part (or body) that holds an XARF v4 document, found cheaply: JSON that
    names a Report with a ReportClass."""
    for part in message.parts:
        content = part.content
        head = content[:4096] if isinstance(content, str) else content[:4096].decode("latin-1")
        if (
            part.content_type in ("application/json", "text/json")
            or (part.filename or "").lower().endswith(".json")
        ) and '"ReportClass"' in head:
            return content
        if '"ReportClass"' in head and head.lstrip().startswith("{"):
            return content
    return None


def _xarf4_object(document: dict[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(document, dict):
        return document
    if len(document) > MAX_XARF4_BYTES:
        raise TooLarge(
            f"XARF document is {len(document)} bytes; the limit is {MAX_XARF4_BYTES} bytes.",
            hint="Send samples as links or fewer samples per report.",
        )
    text = decode_bytes(document)[0] if isinstance(document, bytes) else document
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationFailed(
            f"XARF document is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}.",
            hint="Send one XARF v4 JSON object (see the XARF v4 schema).",
        ) from error
    if not isinstance(data, dict):
        raise ValidationFailed(
            f"XARF document is a JSON {type(data).__name__}, not an object.",
            hint="Send one XARF v4 JSON object with Reporter and Report.",
        )
    return data


def _xarf4_time(value: object) -> Moment:
    if not isinstance(value, str) or not value.strip():
        raise _invalid("Report.Date", "is missing (ISO 8601 with zone, e.g. 2026-05-01T10:00:00Z)")
    moment = parse_time(value, chinese=False)
    if moment is None:
        raise _invalid("Report.Date", f"{value!r} is not a date and time (use ISO 8601)")
    return moment


def _xarf4_subject(report: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(ip, url, domain) the report is about, from SourceIp, or Source with SourceType,
    or Url; ValidationFailed when none is usable."""
    ip: str | None = None
    url: str | None = None
    domain: str | None = None
    source_ip = report.get("SourceIp")
    if source_ip is not None:
        ip = normalise_ip(str(source_ip))
        if ip is None:
            raise _invalid("Report.SourceIp", f"{source_ip!r} is not an IPv4 or IPv6 address")
    source = report.get("Source")
    if isinstance(source, str) and source.strip():
        source_type = str(report.get("SourceType", "")).lower()
        if "uri" in source_type or "url" in source_type or "://" in source:
            url = source.strip()
        elif ip is None:
            ip = normalise_ip(source)
            if ip is None:
                raise _invalid("Report.Source", f"{source!r} is not an IP address")
    if url is None and isinstance(report.get("Url"), str) and report["Url"].strip():
        url = report["Url"].strip()
    if url is not None:
        domain, url_ip = url_host(url)
        ip = ip or url_ip
    if ip is None and url is None:
        raise _invalid("Report.SourceIp", "is missing; give SourceIp, Source or Url")
    return ip, url, domain


def _indented_json(value: dict[str, Any]) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False, default=str)``.

    With an indent, ``json.dumps`` runs the encoder written in Python, a generator per
    nesting level, which is a large part of reading an XARF v4 report. What it writes
    for the plain JSON values a parsed document holds is written here directly, the
    same way; anything else (another type, a key that is not a string, a cycle) is left
    to ``json.dumps``, which then raises or writes what it does."""
    try:
        return _json_text(value, "\n")
    except (_NotPlainJson, RecursionError):
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)


class _NotPlainJson(Exception):
    pass


def _json_text(value: object, newline: str) -> str:
    """One value as the indenting encoder writes it at the indent of ``newline``."""
    if type(value) is str:
        return _json_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float:
        return _json_float(value)
    if type(value) is list:
        if not value:
            return "[]"
        inner = newline + "  "
        items = [_json_text(item, inner) for item in value]
        return "[" + inner + ("," + inner).join(items) + newline + "]"
    if type(value) is dict:
        if not value:
            return "{}"
        inner = newline + "  "
        fields = []
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlainJson
            fields.append(_json_string(key) + ": " + _json_text(item, inner))
        return "{" + inner + ("," + inner).join(fields) + newline + "}"
    raise _NotPlainJson


#: The string encoder json.dumps uses with ensure_ascii=False.
_json_string = json.encoder.encode_basestring


def _json_float(value: float) -> str:
    """A float as json.dumps writes it (allow_nan is on by default)."""
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)


def _sample_text(sample: object) -> str:
    if isinstance(sample, dict):
        if sample.get("Base64Encoded"):
            return f"[sample {sample.get('Description', '')}: base64, not shown]"
        return str(sample.get("Payload", ""))[:500]
    return str(sample)[:500]


def _invalid(field: str, problem: str) -> ValidationFailed:
    return ValidationFailed(
        f"XARF {field} {problem}.",
        hint="Fix that field and send the report again (see the XARF v4 schema).",
    )


# --- shared -------------------------------------------------------------------------------


def _snake(name: str) -> str:
    return _CAMEL_HUMP.sub("_", name).lower()


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


_JSON_SCALAR_TYPES = (str, int, float, bool)
_JSON_SCALARS = frozenset(_JSON_SCALAR_TYPES)


def _json_value(value: object) -> Any:
    """``value`` made JSON-serialisable (YAML gives dates; JSON gives nested values)."""
    if value is None or isinstance(value, _JSON_SCALAR_TYPES):
        return value  # the most common case first
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return str(value)
