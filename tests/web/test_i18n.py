"""Every string the console shows has its Simplified Chinese translation."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from hostwarden.web import i18n

SRC = Path(i18n.__file__).resolve().parents[1]
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extracted() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(SRC), METHODS, options_map=OPTIONS, keywords=KEYWORDS
    ):
        if isinstance(message, tuple):
            found.update(m for m in message if m)
        elif message:
            found.add(message)
    return found


def catalog() -> dict[str, str]:
    path = i18n.LOCALE_DIR / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle) if m.id}


def test_every_console_string_is_translated_to_chinese() -> None:
    messages = extracted()
    assert len(messages) > 50, "extraction found too little: check the patterns"
    zh = catalog()
    untranslated = sorted(m for m in messages if not zh.get(m))
    assert untranslated == [], f"add these to the zh_Hans_CN catalog: {untranslated}"


def test_translations_keep_their_placeholders() -> None:
    import re

    for source, target in catalog().items():
        wanted = sorted(re.findall(r"%\(\w+\)s", source))
        assert sorted(re.findall(r"%\(\w+\)s", target)) == wanted, source


def test_chinese_legal_terms_keep_their_chinese_name_in_english() -> None:
    zh = catalog()
    for english in ("ICP filing (备案)", "Webshell scans (挂马)"):
        assert english in zh
    assert "承诺书" in "".join(zh)
