"""Rendering console pages: Jinja2 environment, CSRF cookie, locale, error pages."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from babel.dates import format_datetime
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hostwarden import __version__
from hostwarden.api.deps import CSRF_COOKIE, CSRF_FIELD, Principal
from hostwarden.core.masking import mask_email
from hostwarden.core.rbac import ROLE_LABELS, Perm, Role
from hostwarden.web import i18n
from hostwarden.web.areas import AREAS

TEMPLATES = Path(__file__).resolve().parent / "templates"
LANG_COOKIE = "hw_lang"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]


def _when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    babel_locale = "zh_Hans_CN" if i18n.current_locale() == "zh-CN" else "en"
    return format_datetime(value, "yyyy-MM-dd HH:mm:ss 'UTC'", tzinfo=None, locale=babel_locale)


def _role_label(role: str) -> str:
    try:
        en, zh = ROLE_LABELS[Role(role)]
    except ValueError:
        return role
    return zh if i18n.current_locale() == "zh-CN" else en


def _plain(value: Any) -> str:
    """A stored value as a person reads it: lists joined, no JSON escapes."""
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


_env.filters["when"] = _when
_env.filters["plain"] = _plain
_env.filters["role_label"] = _role_label
_env.filters["mask_email"] = mask_email


def locale_for(request: Request, principal: Principal | None) -> str:
    if principal is not None:
        return principal.locale
    return i18n.pick_locale(
        request.headers.get("accept-language", ""), request.cookies.get(LANG_COOKIE)
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    principal: Principal | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render a page in the person's language, carrying the CSRF token for its forms."""
    i18n.set_locale(locale_for(request, principal))
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    html = _env.get_template(template).render(
        request=request,
        me=principal,
        Perm=Perm,
        csrf_token=csrf,
        csrf_field=CSRF_FIELD,
        locale=i18n.current_locale(),
        locales=i18n.LOCALES,
        areas=AREAS,
        version=__version__,
        path=request.url.path,
        **(context or {}),
    )
    response = HTMLResponse(html, status_code=status)
    if request.cookies.get(CSRF_COOKIE) != csrf:
        set_csrf_cookie(request, response, csrf)
    return response


def set_csrf_cookie(request: Request, response: HTMLResponse | Any, value: str) -> None:
    runtime = request.app.state.runtime
    response.set_cookie(
        CSRF_COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=runtime.settings.auth.cookie_secure,
        path="/",
    )


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    return render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        principal=principal,
        status=status,
    )
