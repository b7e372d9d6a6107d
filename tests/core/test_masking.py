"""Personal data (ID numbers, phone numbers, e-mail) is masked in lists, logs and audit."""

from __future__ import annotations

import pytest

from hostwarden.core.masking import (
    mask_email,
    mask_id_number,
    mask_phone,
    mask_text,
    mask_value,
)

ID_NUMBER = "11010519491231002X"


# --- single values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (ID_NUMBER, "110105********002X"),
        ("110105194912310021", "110105********0021"),
        (" 11010519491231002X ", "110105********002X"),
        ("A1234567", "******67"),
        ("", ""),
    ],
)
def test_an_id_number_keeps_only_region_and_last_four(value: str, masked: str) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812345678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("123456", "******"),
    ],
)
def test_a_phone_number_keeps_only_its_first_three_and_last_four_digits(
    value: str, masked: str
) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("zhang.wei@example.cn", "z***@example.cn"),
        ("a@b.org", "a***@b.org"),
    ],
)
def test_an_email_keeps_its_first_letter_and_domain(value: str, masked: str) -> None:
    assert mask_email(value) == masked


# --- inside free text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"customer {ID_NUMBER} complained", "customer 110105********002X complained"),
        ("id 11010519491231002x.", "id 110105********002x."),
        (f"身份证{ID_NUMBER}号", "身份证110105********002X号"),
    ],
)
def test_id_numbers_inside_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call 13812345678 now", "call 138****5678 now"),
        ("手机13812345678，请回电", "手机138****5678，请回电"),
        ("tel +86 138 1234 5678", "tel +86 138****5678"),
        ("tel +8613812345678", "tel +86138****5678"),
        ("tel 86-138-1234-5678", "tel 86-138****5678"),
        ("UK office +44 20 7946 0958", "UK office +44****58"),
        # No four digits in a row: the quick check before the patterns must still look.
        ("fax +1 2 3 4 56", "fax +1****56"),
    ],
)
def test_phone_numbers_inside_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to zhang.wei@example.cn today", "write to z***@example.cn today"),
        ("<abuse+ticket@mail.example.com>", "<a***@mail.example.com>"),
        # Mainland users often use their mobile number as the mailbox name.
        ("13812345678@qq.com", "1***@qq.com"),
    ],
)
def test_email_addresses_inside_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_several_kinds_in_one_text_are_all_masked() -> None:
    text = f"{ID_NUMBER}, 13912345678 and li.na@example.com"

    masked = mask_text(text)

    assert masked == "110105********002X, 139****5678 and l***@example.com"


@pytest.mark.parametrize(
    "text",
    [
        "abuse report for 203.0.113.7 at 2026-05-01T10:00:00Z",
        "ticket 20260501 from AS64500, port 8080",
        "unified social credit code 91110000600037341L",
        "order 1234567890123456789012",  # longer than an ID number
        "invoice 12345678901",  # 11 digits, but no mobile prefix
        "host ns1.example.com",
    ],
)
def test_text_without_personal_data_is_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_masking_text_twice_changes_nothing_more() -> None:
    once = mask_text(f"{ID_NUMBER} 13812345678 +86 139 8765 4321 li.na@example.com")

    assert mask_text(once) == once


# --- nested values -----------------------------------------------------------------------


def test_strings_inside_nested_dicts_and_lists_are_masked_and_other_values_pass() -> None:
    value = {
        "name": "Zhang Wei",
        "id_number": ID_NUMBER,
        "contacts": [{"phone": "13812345678"}, ("li.na@example.com",)],
        "count": 3,
        "active": True,
        "nothing": None,
    }

    assert mask_value(value) == {
        "name": "Zhang Wei",
        "id_number": "110105********002X",
        "contacts": [{"phone": "138****5678"}, ["l***@example.com"]],
        "count": 3,
        "active": True,
        "nothing": None,
    }


def _masked_one_by_one(value: object) -> object:
    """The definition mask_value keeps: every string masked, containers walked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _masked_one_by_one(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked_one_by_one(v) for v in value]
    return value


def test_mask_value_gives_what_masking_each_string_gives_on_random_nested_values() -> None:
    """mask_value takes numbers and plain texts without a call each; over random nested
    values (str and int subclasses, booleans, tuples, personal data at any depth) it must
    give exactly what walking every value does."""
    import enum
    import random

    class Kind(enum.StrEnum):
        MOBILE = "13812345678"
        PLAIN = "spam"

    class Level(enum.IntEnum):
        HIGH = 3

    rng = random.Random(11)
    leaves = [
        "plain",
        "",
        ID_NUMBER,
        "call 13812345678 now",
        "li.na@example.com",
        "+44 20 7946 0958",
        "2026-05-01T10:00:00Z",
        "a" * 64,
        "evidence " * 30 + "from li.na@example.com, 13812345678",  # past the cached length
        Kind.MOBILE,
        Kind.PLAIN,
        Level.HIGH,
        0,
        13812345678,
        1.5,
        True,
        None,
        b"bytes 13812345678",
    ]

    def build(depth: int) -> object:
        roll = rng.random()
        if depth > 3 or roll < 0.4:
            return rng.choice(leaves)
        items = [build(depth + 1) for _ in range(rng.randrange(5))]
        if roll < 0.6:
            return items
        if roll < 0.7:
            return tuple(items)
        return {f"k{i}": item for i, item in enumerate(items)}

    for _ in range(2000):
        value = build(0)
        got, want = mask_value(value), _masked_one_by_one(value)
        assert got == want and repr(got) == repr(want), value


def test_masking_does_not_change_the_value_given() -> None:
    original = {"phone": "13812345678"}

    mask_value(original)

    assert original == {"phone": "13812345678"}


def test_the_quick_check_finds_every_text_a_pattern_would_change() -> None:
    """mask_text skips the patterns when its quick check finds nothing: over random texts
    of digits, separators and letters, no pattern may match where the check does not."""
    import random

    from hostwarden.core import masking

    patterns = (masking._RESIDENT_ID, masking._CN_MOBILE, masking._INTL_PHONE, masking._EMAIL)
    rng = random.Random(7)
    alphabet = "0123456789" * 4 + "13579" * 4 + " -+@.xX"
    matched = 0
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        if any(p.search(text) for p in patterns):
            matched += 1
            assert masking._MAYBE_PERSONAL.search(text), text
    assert matched > 300  # the texts do exercise the patterns
