"""Console translations: Babel catalogs (.po) read at start-up, chosen per request."""

from __future__ import annotations

from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
LOCALES = {"en": "English", "zh-CN": "简体中文"}
# Console locale → Babel catalog folder.
_CATALOG_DIRS = {"zh-CN": "zh_Hans_CN"}
_current: ContextVar[str] = ContextVar("hostwarden_locale", default="en")


def N_(message: str) -> str:  # noqa: N802  (the conventional name for "mark, translate later")
    """Marks a string for extraction; it is translated where it is shown."""
    return message


@cache
def _catalog(locale: str) -> dict[str, str]:
    folder = _CATALOG_DIRS.get(locale)
    if folder is None:
        return {}
    path = LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=folder)
    return {
        str(m.id): str(m.string)
        for m in catalog
        if m.id and isinstance(m.id, str) and m.string and not m.fuzzy
    }


def set_locale(locale: str) -> None:
    _current.set(locale if locale in LOCALES else "en")


def current_locale() -> str:
    return _current.get()


def gettext(message: str, **variables: object) -> str:
    text = _catalog(_current.get()).get(message, message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    # The console's catalog has no plural forms yet: Chinese has none, English uses two.
    text = gettext(singular if n == 1 else plural)
    return text % {"num": n, **variables}


def pick_locale(accept_language: str, cookie: str | None) -> str:
    if cookie in LOCALES:
        return str(cookie)
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


# Titles of hostwarden.errors classes, shown on console error pages; listed here so that
# extraction finds them (the errors module sits below the web layer and imports nothing).
ERROR_TITLES = (
    N_("Request failed"),
    N_("Configuration is invalid"),
    N_("Input is invalid"),
    N_("Not found"),
    N_("Conflicts with stored data"),
    N_("Authentication required"),
    N_("Account is locked"),
    N_("Not allowed for your role"),
    N_("Form token missing or wrong"),
    N_("Data directory not initialised"),
    N_("Tamper evidence check failed"),
    N_("Database unavailable"),
)
