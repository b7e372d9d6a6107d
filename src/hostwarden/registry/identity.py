"""Identity document numbers: their types and validators that name the rule a number fails.

What each type accepts (after spaces and dashes are removed and letters upper-cased):

- ``resident-id`` 居民身份证 (GB 11643-1999): 18 characters, 17 digits and a digit or X.
  Digits 1–6 are the region code, whose first two digits must be a province-level code
  (11–65, 71 Taiwan, 81 Hong Kong, 82 Macao, 83 used by residence permits of Taiwan
  residents); digits 7–14 a real birth date, not before 1900 and not in the future; the
  last character the ISO 7064 MOD 11-2 check character. 15-digit first-generation
  numbers are refused: those cards have not been valid since 2013.
- ``uscc`` 统一社会信用代码 (GB 32100-2015): 18 characters from ``0-9A-Z`` without I, O,
  S, V, Z. Character 1 is the registration authority (1–9, A, N or Y), characters 3–8
  the region (a province code, or 10 for national registrations), characters 9–17 the
  organisation code of GB 11714 with its own check digit, and character 18 the check
  character (MOD 31).
- ``passport`` 护照: 6 to 9 letters and digits with at least one digit (ICAO 9303 allows
  up to 9). The issuing country is not recorded, so Chinese numbers are recognised
  (ordinary: E + 8 digits, E + a letter other than I/O + 7 digits, G + 8 digits) but
  not required.
- ``hk-macao-permit``: 往来港澳通行证 of mainland residents (C + 8 digits, or C + a
  letter other than I/O + 7 digits) and 港澳居民来往内地通行证 (H for Hong Kong or M
  for Macao + 8 digits; older cards + 10 digits).
- ``taiwan-permit``: 台湾居民来往大陆通行证 (8 digits) and 大陆居民往来台湾通行证
  (L + 8 digits).
- ``foreign-prc`` 外国人永久居留身份证: the 2023 card, 18 characters starting with 9,
  a province code in characters 2–3, a real birth date in characters 7–14 and the
  GB 11643 check character; or the older card, 15 characters: 3 letters (nationality)
  and 12 digits (its check digit is not published, so only the form is checked).
- ``other``: any number of 1–64 characters with a type name of 1–100 characters; only
  the lengths are checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from hostwarden.core.vault import normalise_identifier
from hostwarden.errors import ValidationFailed


class DocType(StrEnum):
    RESIDENT_ID = "resident-id"
    USCC = "uscc"
    PASSPORT = "passport"
    HK_MACAO_PERMIT = "hk-macao-permit"
    TAIWAN_PERMIT = "taiwan-permit"
    FOREIGN_PRC = "foreign-prc"
    OTHER = "other"


DOC_TYPE_LABELS: dict[DocType, tuple[str, str]] = {
    DocType.RESIDENT_ID: ("Resident identity card", "居民身份证"),
    DocType.USCC: ("Unified social credit code", "统一社会信用代码"),
    DocType.PASSPORT: ("Passport", "护照"),
    DocType.HK_MACAO_PERMIT: (
        "Hong Kong / Macao travel permit",
        "往来港澳通行证 / 港澳居民来往内地通行证",
    ),
    DocType.TAIWAN_PERMIT: (
        "Taiwan travel permit",
        "台湾居民来往大陆通行证 / 大陆居民往来台湾通行证",
    ),
    DocType.FOREIGN_PRC: ("Foreign permanent resident ID card", "外国人永久居留身份证"),
    DocType.OTHER: ("Other document", "其他证件"),
}

# Province-level codes of GB/T 2260, plus 83, which residence permits of Taiwan residents
# (港澳台居民居住证, 2018) carry in the resident-ID format.
PROVINCE_CODES = frozenset(
    {
        *("11", "12", "13", "14", "15"),
        *("21", "22", "23"),
        *("31", "32", "33", "34", "35", "36", "37"),
        *("41", "42", "43", "44", "45", "46"),
        *("50", "51", "52", "53", "54"),
        *("61", "62", "63", "64", "65"),
        *("71", "81", "82", "83"),
    }
)

_MOD11_2_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_MOD11_2_CHECK = "10X98765432"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_AUTHORITIES = frozenset("123456789ANY")
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
OTHER_NUMBER_MAX = 64
OTHER_TYPE_MAX = 100


@dataclass(frozen=True)
class ValidationResult:
    """``rule`` names the failed rule (empty when ``ok``); ``message`` says it in words,
    or, for a valid number, what kind of document it was recognised as."""

    ok: bool
    rule: str
    message: str


def _passed(message: str) -> ValidationResult:
    return ValidationResult(True, "", message)


def _failed(rule: str, message: str) -> ValidationResult:
    return ValidationResult(False, rule, message)


def parse_doc_type(value: str) -> DocType:
    try:
        return DocType(value.strip().lower())
    except ValueError:
        known = ", ".join(t.value for t in DocType)
        raise ValidationFailed(
            f"'{value}' is not an identity document type.", hint=f"Use one of: {known}."
        ) from None


def gb11643_check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _MOD11_2_WEIGHTS, strict=True))
    return _MOD11_2_CHECK[total % 11]


def uscc_check_character(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def organisation_code_check_character(first8: str) -> str:
    """GB 11714 check digit of an organisation code body (digits and letters A=10 … Z=35)."""
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_CODE_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def _birth_date(text: str, today: date) -> ValidationResult | None:
    try:
        born = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return _failed("birth-date", f"'{text}' is not a real date (YYYYMMDD).")
    if born.year < 1900:
        return _failed("birth-date", f"the birth date {born.isoformat()} is before 1900.")
    if born > today:
        return _failed("birth-date", f"the birth date {born.isoformat()} is in the future.")
    return None


def _gb11643_body(number: str, today: date, what: str) -> ValidationResult | None:
    """Length, characters, birth date (7–14) and check character shared by the resident ID
    and the 2023 foreign permanent resident card."""
    if len(number) != 18:
        return _failed("length", f"{what} has 18 characters; this one has {len(number)}.")
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        return _failed("characters", f"{what} is 17 digits followed by a digit or X.")
    problem = _birth_date(number[6:14], today)
    if problem is not None:
        return problem
    expected = gb11643_check_character(number[:17])
    if number[17] != expected:
        return _failed(
            "check-character",
            f"the check character is {number[17]} but the first 17 digits give {expected}; "
            "a digit was probably mistyped.",
        )
    return None


def _resident_id(number: str, today: date) -> ValidationResult:
    if len(number) == 15 and number.isdigit():
        return _failed(
            "length",
            "15-digit first-generation ID numbers are no longer valid; ask for the 18-character "
            "number on the current card.",
        )
    if len(number) == 18 and number[:17].isdigit() and number[:2] not in PROVINCE_CODES:
        return _failed("region", f"{number[:2]} is not a province-level region code.")
    problem = _gb11643_body(number, today, "a resident ID number")
    return problem or _passed("resident identity card number")


def _uscc(number: str) -> ValidationResult:
    if len(number) != 18:
        return _failed(
            "length", f"a unified social credit code has 18 characters; this has {len(number)}."
        )
    bad = sorted({c for c in number if c not in USCC_ALPHABET})
    if bad:
        return _failed(
            "characters",
            f"{', '.join(bad)} cannot appear in a unified social credit code "
            "(digits and letters except I, O, S, V, Z).",
        )
    if number[0] not in _USCC_AUTHORITIES:
        return _failed(
            "registration-authority",
            f"{number[0]} is not a registration authority code (1–9, A, N or Y).",
        )
    region = number[2:8]
    if not region.isdigit() or (region[:2] not in PROVINCE_CODES and region[:2] != "10"):
        return _failed("region", f"{region} is not a region code.")
    org_expected = organisation_code_check_character(number[8:16])
    if number[16] != org_expected:
        return _failed(
            "organisation-code-check",
            f"the organisation code {number[8:17]} ends in {number[16]} but its check digit "
            f"is {org_expected}.",
        )
    expected = uscc_check_character(number[:17])
    if number[17] != expected:
        return _failed(
            "check-character",
            f"the check character is {number[17]} but the first 17 characters give {expected}.",
        )
    return _passed("unified social credit code")


_CN_PASSPORT = re.compile(r"E\d{8}|E[A-HJ-NP-Z]\d{7}|G\d{8}")
_PASSPORT = re.compile(r"[A-Z0-9]{6,9}")


def _passport(number: str) -> ValidationResult:
    if _CN_PASSPORT.fullmatch(number):
        return _passed("Chinese ordinary passport number")
    if not 6 <= len(number) <= 9:
        return _failed(
            "length", f"a passport number has 6 to 9 characters; this has {len(number)}."
        )
    if not _PASSPORT.fullmatch(number) or not any(c.isdigit() for c in number):
        return _failed("characters", "a passport number is letters A–Z and digits, with a digit.")
    return _passed("passport number")


_HK_MACAO_FORMATS = (
    (re.compile(r"C\d{8}|C[A-HJ-NP-Z]\d{7}"), "往来港澳通行证 (mainland resident)"),
    (re.compile(r"[HM]\d{8}(\d{2})?"), "港澳居民来往内地通行证 (Hong Kong / Macao resident)"),
)
_TAIWAN_FORMATS = (
    (re.compile(r"\d{8}"), "台湾居民来往大陆通行证 (Taiwan resident)"),
    (re.compile(r"L\d{8}"), "大陆居民往来台湾通行证 (mainland resident)"),
)


def _permit(
    number: str, formats: tuple[tuple[re.Pattern[str], str], ...], rule_hint: str
) -> ValidationResult:
    for pattern, label in formats:
        if pattern.fullmatch(number):
            return _passed(label)
    return _failed("format", f"not a travel permit number of a known form ({rule_hint}).")


def _foreign_prc(number: str, today: date) -> ValidationResult:
    if len(number) == 15:
        if re.fullmatch(r"[A-Z]{3}\d{12}", number):
            return _passed("foreign permanent resident card (15-character form)")
        return _failed("format", "the 15-character card number is 3 letters and 12 digits.")
    if len(number) != 18:
        return _failed(
            "length",
            f"a foreign permanent resident card number has 15 or 18 characters; this has "
            f"{len(number)}.",
        )
    if number[0] != "9":
        return _failed("format", "the 18-character card number starts with 9.")
    if number[1:3].isdigit() and number[1:3] not in PROVINCE_CODES:
        return _failed("region", f"{number[1:3]} is not a province-level region code.")
    problem = _gb11643_body(number, today, "a foreign permanent resident card number")
    return problem or _passed("foreign permanent resident card (18-character form)")


def _other(number: str, type_name: str) -> ValidationResult:
    if not type_name.strip():
        return _failed("type-name", "a document of type 'other' needs the name of its type.")
    if len(type_name.strip()) > OTHER_TYPE_MAX:
        return _failed("type-name", f"the type name is longer than {OTHER_TYPE_MAX} characters.")
    if not number:
        return _failed("length", "the document number is empty.")
    if len(number) > OTHER_NUMBER_MAX:
        return _failed("length", f"the document number is longer than {OTHER_NUMBER_MAX}.")
    return _passed(f"{type_name.strip()} number")


def validate(
    doc_type: DocType | str, number: str, *, type_name: str = "", today: date | None = None
) -> ValidationResult:
    """Check ``number`` as a document of ``doc_type``; ``type_name`` names an ``other`` type.

    ``today`` (default: the current date) bounds birth dates; tests pin it."""
    kind = doc_type if isinstance(doc_type, DocType) else parse_doc_type(doc_type)
    compact = normalise_identifier(number)
    if not compact:
        return _failed("length", "the document number is empty.")
    when = today or date.today()
    if kind is DocType.RESIDENT_ID:
        return _resident_id(compact, when)
    if kind is DocType.USCC:
        return _uscc(compact)
    if kind is DocType.PASSPORT:
        return _passport(compact)
    if kind is DocType.HK_MACAO_PERMIT:
        return _permit(compact, _HK_MACAO_FORMATS, "C + 8 digits, C + letter + 7, H/M + 8 or 10")
    if kind is DocType.TAIWAN_PERMIT:
        return _permit(compact, _TAIWAN_FORMATS, "8 digits, or L + 8 digits")
    if kind is DocType.FOREIGN_PRC:
        return _foreign_prc(compact, when)
    return _other(number.strip(), type_name)
