"""Identity numbers: each type accepts its real formats and names the rule a bad one fails.

Valid numbers below carry correct check characters (computed by hand from the standards'
weights); each invalid one breaks exactly one rule."""

from __future__ import annotations

from datetime import date

import pytest

from hostwarden.errors import ValidationFailed
from hostwarden.registry.identity import (
    DOC_TYPE_LABELS,
    DocType,
    gb11643_check_character,
    organisation_code_check_character,
    parse_doc_type,
    uscc_check_character,
    validate,
)

TODAY = date(2026, 1, 1)

VALID: list[tuple[DocType, str]] = [
    (DocType.RESIDENT_ID, "11010519491231002X"),
    (DocType.RESIDENT_ID, "11010519491231002x"),  # lower-case x is the same number
    (DocType.RESIDENT_ID, "110105 19491231 002X"),  # as written on forms
    (DocType.RESIDENT_ID, "440304200002291236"),  # 29 Feb 2000 existed
    (DocType.RESIDENT_ID, "32010619880101001X"),
    (DocType.RESIDENT_ID, "830000199001010012"),  # residence permit of a Taiwan resident
    (DocType.USCC, "91350100M000100Y43"),
    (DocType.USCC, "91110000600037341L"),
    (DocType.USCC, "12100000400000624D"),  # national registration: region 100000
    (DocType.USCC, "91440300MA5DJ4R12F"),
    (DocType.USCC, "52110000068123453A"),
    (DocType.USCC, "92320102MA01ABCD5J"),
    (DocType.PASSPORT, "E12345678"),
    (DocType.PASSPORT, "EA1234567"),
    (DocType.PASSPORT, "G12345678"),
    (DocType.PASSPORT, "X1234567"),
    (DocType.PASSPORT, "533401275"),
    (DocType.PASSPORT, "AB12345"),
    (DocType.HK_MACAO_PERMIT, "C12345678"),
    (DocType.HK_MACAO_PERMIT, "CA1234567"),
    (DocType.HK_MACAO_PERMIT, "H12345678"),
    (DocType.HK_MACAO_PERMIT, "M1234567801"),
    (DocType.TAIWAN_PERMIT, "12345678"),
    (DocType.TAIWAN_PERMIT, "L12345678"),
    (DocType.FOREIGN_PRC, "91184019850304001X"),
    (DocType.FOREIGN_PRC, "USA110085030401"),
]

INVALID: list[tuple[DocType, str, str]] = [
    (DocType.RESIDENT_ID, "110105194912310021", "check-character"),
    (DocType.RESIDENT_ID, "110105194912310020", "check-character"),
    (DocType.RESIDENT_ID, "11010519491231002", "length"),
    (DocType.RESIDENT_ID, "110105491231002", "length"),  # first-generation, 15 digits
    (DocType.RESIDENT_ID, "1101051949123100AX", "characters"),
    (DocType.RESIDENT_ID, "990105194912310023", "region"),
    (DocType.RESIDENT_ID, "110105202302290022", "birth-date"),  # 2023 had no 29 Feb
    (DocType.RESIDENT_ID, "110105189912310023", "birth-date"),  # before 1900
    (DocType.RESIDENT_ID, "110105209912310029", "birth-date"),  # in the future
    (DocType.USCC, "91350100M000100Y4A", "check-character"),
    (DocType.USCC, "91350100M000100Y4", "length"),
    (DocType.USCC, "91350100M000100I43", "characters"),
    (DocType.USCC, "91350100M000100S43", "characters"),
    (DocType.USCC, "01350100M000100Y4C", "registration-authority"),
    (DocType.USCC, "91990100M000100Y4U", "region"),
    (DocType.USCC, "91350100M000100Y56", "organisation-code-check"),
    (DocType.PASSPORT, "E1234", "length"),
    (DocType.PASSPORT, "E123456789", "length"),
    (DocType.PASSPORT, "ABCDEFGH", "characters"),
    (DocType.PASSPORT, "E1234567!", "characters"),
    (DocType.HK_MACAO_PERMIT, "C1234567", "format"),
    (DocType.HK_MACAO_PERMIT, "CI1234567", "format"),
    (DocType.HK_MACAO_PERMIT, "W12345678", "format"),
    (DocType.TAIWAN_PERMIT, "1234567", "format"),
    (DocType.TAIWAN_PERMIT, "T12345678", "format"),
    (DocType.FOREIGN_PRC, "911840198503040010", "check-character"),
    (DocType.FOREIGN_PRC, "999840198503040011", "region"),
    (DocType.FOREIGN_PRC, "911840198513040013", "birth-date"),
    (DocType.FOREIGN_PRC, "811840198503040017", "format"),
    (DocType.FOREIGN_PRC, "US1100850304011", "format"),
    (DocType.FOREIGN_PRC, "USA11008503040", "length"),
]


@pytest.mark.parametrize(("doc_type", "number"), VALID)
def test_real_format_numbers_are_accepted(doc_type: DocType, number: str) -> None:
    result = validate(doc_type, number, today=TODAY)
    assert result.ok, result
    assert result.rule == ""
    assert result.message


@pytest.mark.parametrize(("doc_type", "number", "rule"), INVALID)
def test_a_bad_number_names_the_rule_it_fails(doc_type: DocType, number: str, rule: str) -> None:
    result = validate(doc_type, number, today=TODAY)
    assert not result.ok
    assert result.rule == rule, result
    assert result.message


def test_changing_any_single_character_of_a_resident_id_is_caught() -> None:
    good = "11010519491231002X"
    for position in range(18):
        for replacement in "0123456789X":
            if replacement == good[position] or (replacement == "X" and position < 17):
                continue
            number = good[:position] + replacement + good[position + 1 :]
            assert not validate(DocType.RESIDENT_ID, number, today=TODAY).ok, number


def test_changing_any_single_character_of_a_uscc_is_caught() -> None:
    good = "91350100M000100Y43"
    for position in range(18):
        for replacement in "0123456789ABCDEFGHJKLMNPQRTUWXY":
            if replacement == good[position]:
                continue
            number = good[:position] + replacement + good[position + 1 :]
            assert not validate(DocType.USCC, number).ok, number


def test_check_characters_follow_the_published_weights() -> None:
    assert gb11643_check_character("11010519491231002") == "X"
    assert uscc_check_character("91350100M000100Y4") == "3"
    assert organisation_code_check_character("M000100Y") == "4"
    assert organisation_code_check_character("60003734") == "1"


def test_the_birth_date_limit_is_today() -> None:
    born_today = "1101052026010100" + "1"
    number = born_today + gb11643_check_character(born_today)
    assert validate(DocType.RESIDENT_ID, number, today=TODAY).ok
    assert validate(DocType.RESIDENT_ID, number, today=date(2025, 12, 31)).rule == "birth-date"


def test_other_documents_need_a_type_name_and_check_only_lengths() -> None:
    assert validate(DocType.OTHER, "anything 123", type_name="Seaman's book").ok
    assert validate(DocType.OTHER, "anything 123").rule == "type-name"
    assert validate(DocType.OTHER, "x" * 65, type_name="Seaman's book").rule == "length"
    assert validate(DocType.OTHER, "n", type_name="t" * 101).rule == "type-name"


def test_an_empty_number_fails_the_length_rule_for_every_type() -> None:
    for doc_type in DocType:
        assert validate(doc_type, "  ", type_name="x").rule == "length"


def test_types_have_english_and_chinese_labels_and_parse_from_their_names() -> None:
    assert set(DOC_TYPE_LABELS) == set(DocType)
    assert DOC_TYPE_LABELS[DocType.RESIDENT_ID] == ("Resident identity card", "居民身份证")
    assert parse_doc_type(" USCC ") is DocType.USCC
    with pytest.raises(ValidationFailed, match="not an identity document type"):
        parse_doc_type("driving-licence")
