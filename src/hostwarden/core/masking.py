"""Masking of personal data (ID numbers, phone numbers, e-mail) for lists and logs."""

from __future__ import annotations

import functools
import re
from typing import Any

# Resident identity card (GB 11643): 17 digits then a digit or X. Unified social credit
# codes are organisation identifiers, not personal data, and are left alone.
_RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
# Mainland mobile numbers, optionally with +86 / 86 prefix and separators.
_CN_MOBILE = re.compile(r"(?<!\d)((?:\+?86[ -]?)?1[3-9]\d)[ -]?\d{4}[ -]?(\d{4})(?!\d)")
# International numbers written with a leading + and at least 8 more digits.
_INTL_PHONE = re.compile(r"(?<![\w+])(\+\d{1,3})[\d -]{4,}(\d{2})(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# What a match of each pattern above contains: 14 digits in a row (an ID number has 17 or
# 18), a mobile's first seven digits, an "@", or "+" and a digit. One scan for these
# spares the four substitutions on the many texts with none (the audit trail masks every
# string of every entry: digests, references, times).
_MAYBE_PERSONAL = re.compile(r"\d{14}|1[3-9]\d[ -]?\d{4}|@|\+\d")


def mask_id_number(value: str) -> str:
    """``11010519491231002X`` → ``110105********002X``; short values keep only the last 2."""
    text = value.strip()
    if len(text) >= 10:
        return text[:6] + "*" * (len(text) - 10) + text[-4:]
    return "*" * max(len(text) - 2, 0) + text[-2:]


def mask_phone(value: str) -> str:
    """``13812345678`` → ``138****5678``."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_email(value: str) -> str:
    """``zhang.wei@example.cn`` → ``z***@example.cn``."""
    local, sep, domain = value.partition("@")
    if not sep:
        return mask_id_number(value)
    return (local[:1] or "*") + "***@" + domain


def mask_text(text: str) -> str:
    """Mask every ID number, phone number and e-mail address found inside free text."""
    if _MAYBE_PERSONAL.search(text) is None:
        return text
    if len(text) <= _SHORT and type(text) is str:
        return _masked_short(text)
    return _masked(text)


#: Texts up to this length are masked through a cache: the short ones that hold personal
#: data recur (a reporter's address in every report it sends, a customer's e-mail in
#: every entry about it), and the four substitutions call back into Python per match.
_SHORT = 200


@functools.lru_cache(maxsize=4096)
def _masked_short(text: str) -> str:
    return _masked(text)


def _masked(text: str) -> str:
    text = _RESIDENT_ID.sub(lambda m: m.group(1) + "********" + m.group(2), text)
    text = _EMAIL.sub(lambda m: m.group(1) + "***" + m.group(2), text)
    text = _CN_MOBILE.sub(lambda m: m.group(1) + "****" + m.group(2), text)
    return _INTL_PHONE.sub(lambda m: m.group(1) + "****" + m.group(2), text)


#: Types (exactly these, not subclasses) whose values ``mask_value`` passes through.
_PLAIN = frozenset({int, float, bool, type(None)})
_maybe_personal = _MAYBE_PERSONAL.search


def mask_value(value: Any) -> Any:
    """Mask strings inside nested lists and dicts (tuples become lists); other values and
    the keys pass through."""
    if isinstance(value, str):
        return mask_text(value)
    # A number or a plain text (one the quick check of mask_text passes) is taken as it
    # is, without a call per value: the audit trail masks every value of every entry, and
    # an intake batch's entry holds thousands. Anything else goes through mask_value.
    if isinstance(value, dict):
        return {
            k: v
            if (kind := type(v)) in _PLAIN or (kind is str and _maybe_personal(v) is None)
            else mask_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            v
            if (kind := type(v)) in _PLAIN or (kind is str and _maybe_personal(v) is None)
            else mask_value(v)
            for v in value
        ]
    return value
