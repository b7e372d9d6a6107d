"""Console routes: sign-in, dashboard, users, audit trail, account, and the area pages."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hostwarden.api.deps import (
    SESSION_COOKIE,
    Principal,
    page,
    public,
    runtime_of,
)
from hostwarden.core import audit, auth
from hostwarden.core.rbac import Perm, Role
from hostwarden.errors import HostwardenError
from hostwarden.web import i18n
from hostwarden.web.areas import AREAS, Area
from hostwarden.web.render import LANG_COOKIE, render, set_csrf_cookie

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect after login would help phishing.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


@router.get("/login", dependencies=[public()])
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", dependencies=[public(csrf=True)])
def login_submit(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    try:
        result = auth.login(
            runtime_of(request),
            username,
            password,
            ip=_client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
        )
    except HostwardenError as exc:
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": str(exc), "username": username},
            status=exc.status,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    settings = runtime_of(request).settings.auth
    response.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        max_age=settings.session_hours * 3600,
        path="/",
    )
    # A fresh CSRF token after sign-in, so a token planted before it is worthless.
    set_csrf_cookie(request, response, secrets.token_urlsafe(32))
    response.set_cookie(LANG_COOKIE, result.locale, samesite="lax", path="/")
    return response


@router.post("/logout")
def logout(request: Request, who: Principal = page(Perm.CONSOLE_VIEW)) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    auth.logout(runtime_of(request), token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/language", dependencies=[public()])
def choose_language(request: Request, set: str = "en", back: str = "/login") -> Response:
    """Language of the sign-in page (before there is a user to store it on)."""
    response = RedirectResponse(_safe_next(back), status_code=303)
    if set in i18n.LOCALES:
        response.set_cookie(LANG_COOKIE, set, samesite="lax", path="/")
    return response


@router.get("/")
def dashboard(request: Request, who: Principal = page(Perm.CONSOLE_VIEW)) -> HTMLResponse:
    runtime = runtime_of(request)
    with runtime.reading() as session:
        users = len(auth.list_users(session)) if who.can(Perm.USERS_READ) else None
        recent, total = (
            audit.list_entries(session, limit=5) if who.can(Perm.AUDIT_READ) else ([], None)
        )
    return render(
        request,
        "dashboard.html",
        {"users": users, "audit_total": total, "recent": recent},
        principal=who,
    )


@router.get("/users")
def users_page(request: Request, who: Principal = page(Perm.USERS_READ)) -> HTMLResponse:
    return _users(request, who)


def _users(
    request: Request,
    who: Principal,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    with runtime_of(request).reading() as session:
        users = auth.list_users(session)
    return render(
        request,
        "users.html",
        {"users": users, "roles": list(Role), "error": error, "notice": notice},
        principal=who,
        status=status,
    )


@router.post("/users")
def users_create(
    request: Request,
    username: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    roles: Annotated[list[str] | None, Form()] = None,
    locale: Annotated[str, Form()] = "en",
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.USERS_WRITE),
) -> HTMLResponse:
    generated = not password
    secret = password or auth.generate_password()
    try:
        with runtime_of(request).operation(who.actor()) as op:
            user = auth.create_user(
                op,
                username,
                secret,
                roles or [],
                display_name=display_name,
                email=email,
                locale=locale,
                reason=reason,
            )
    except HostwardenError as exc:
        return _users(request, who, error=str(exc), status=exc.status)
    i18n.set_locale(who.locale)
    notice = i18n.gettext("User %(name)s created.", name=user.username)
    if generated:
        notice += " " + i18n.gettext("Initial password (shown once): %(password)s", password=secret)
    return _users(request, who, notice=notice, status=201)


@router.post("/users/{user_id}/active")
def users_set_active(
    request: Request,
    user_id: int,
    active: Annotated[bool, Form()],
    reason: Annotated[str, Form()] = "",
    who: Principal = page(Perm.USERS_WRITE),
) -> HTMLResponse:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            auth.update_user(op, user_id, is_active=active, reason=reason)
    except HostwardenError as exc:
        return _users(request, who, error=str(exc), status=exc.status)
    return _users(request, who)


@router.get("/audit")
def audit_page(
    request: Request,
    action: str = "",
    actor: str = "",
    object_type: str = "",
    offset: int = Query(0, ge=0),
    who: Principal = page(Perm.AUDIT_READ),
) -> HTMLResponse:
    with runtime_of(request).reading() as session:
        rows, total = audit.list_entries(
            session,
            action=action or None,
            actor=actor or None,
            object_type=object_type or None,
            limit=PAGE_SIZE,
            offset=offset,
        )
        entries = [audit.entry_dict(e) for e in rows]
    for entry in entries:
        entry["changes"] = audit.changes(entry)
    query = f"action={quote(action)}&actor={quote(actor)}&object_type={quote(object_type)}"
    return render(
        request,
        "audit.html",
        {
            "entries": entries,
            "total": total,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "filters": {"action": action, "actor": actor, "object_type": object_type},
            "query": query,
        },
        principal=who,
    )


@router.get("/audit/verify")
def audit_verify(request: Request, who: Principal = page(Perm.AUDIT_READ)) -> HTMLResponse:
    report = audit.verify(runtime_of(request))
    return render(request, "_verify_result.html", {"report": report}, principal=who)


@router.get("/account")
def account_page(request: Request, who: Principal = page(Perm.ACCOUNT_SELF)) -> HTMLResponse:
    return render(request, "account.html", {"error": None, "notice": None}, principal=who)


@router.post("/account/password")
def account_password(
    request: Request,
    current: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
    who: Principal = page(Perm.ACCOUNT_SELF),
) -> Response:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            auth.change_own_password(op, who.user_id, current, new)
    except HostwardenError as exc:
        return render(
            request,
            "account.html",
            {"error": str(exc), "notice": None},
            principal=who,
            status=exc.status,
        )
    # The password change ended every session of this user: sign in again.
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/account/locale")
def account_locale(
    request: Request,
    locale: Annotated[str, Form()],
    back: Annotated[str, Form()] = "/",
    who: Principal = page(Perm.ACCOUNT_SELF),
) -> Response:
    try:
        with runtime_of(request).operation(who.actor()) as op:
            auth.update_user(op, who.user_id, locale=locale, reason="language chosen in console")
    except HostwardenError as exc:
        return render(
            request,
            "account.html",
            {"error": str(exc), "notice": None},
            principal=who,
            status=exc.status,
        )
    response = RedirectResponse(_safe_next(back), status_code=303)
    response.set_cookie(LANG_COOKIE, locale, samesite="lax", path="/")
    return response


def _area_view(area: Area) -> Callable[..., Awaitable[HTMLResponse]]:
    async def view(request: Request, who: Principal = page(area.permission)) -> HTMLResponse:
        return render(request, "area.html", {"area": area}, principal=who)

    view.__name__ = f"area_{area.slug}"
    return view


for _area in AREAS:
    if _area.ready:
        continue  # a built area's own package serves its pages
    router.add_api_route(
        f"/{_area.slug}", _area_view(_area), methods=["GET"], response_class=HTMLResponse
    )
