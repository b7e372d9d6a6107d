"""The one place where requests are authenticated and checked against the role table."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from hostwarden.core import auth
from hostwarden.core.rbac import Perm, permissions_for
from hostwarden.core.runtime import Actor, Runtime
from hostwarden.errors import AuthenticationFailed, CsrfFailed, PermissionDenied

SESSION_COOKIE = "hw_session"
CSRF_COOKIE = "hw_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    roles: tuple[str, ...]
    locale: str
    via: str  # "token" | "session"
    request_id: str

    @property
    def permissions(self) -> frozenset[Perm]:
        return permissions_for(self.roles)

    def can(self, perm: Perm) -> bool:
        return perm in self.permissions

    def actor(self) -> Actor:
        return Actor(self.username, self.roles, self.request_id, self.user_id)


@dataclass(frozen=True)
class AccessRule:
    """Attached to each route's dependency so tests can read every route's rule."""

    permission: Perm | None  # None: public
    kind: str  # "api" | "page" | "public"


class LoginRequired(AuthenticationFailed):
    """A console page was asked for without a session; answered with a redirect."""


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _check(principal: Principal, permission: Perm) -> Principal:
    if not principal.can(permission):
        raise PermissionDenied(
            f"your role(s) {', '.join(principal.roles) or 'none'} may not do this "
            f"(needs '{permission.value}').",
            hint="Ask an admin for a role that allows it.",
        )
    return principal


def _bearer_secret(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationFailed(
            "this API needs a bearer token.",
            hint="Send 'Authorization: Bearer <token>'; create one with `hostwarden token create`.",
        )
    return value.strip()


def _token_principal(request: Request, ident: auth.TokenIdentity) -> Principal:
    return Principal(
        ident.user_id, ident.username, ident.roles, ident.locale, "token", request_id_of(request)
    )


def _bearer_principal(request: Request) -> Principal:
    return _token_principal(
        request, auth.resolve_token(runtime_of(request), _bearer_secret(request))
    )


def session_principal(request: Request) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    user = auth.resolve_session(runtime_of(request), token)
    if user is None:
        return None
    return Principal(
        user.id,
        user.username,
        tuple(user.role_list),
        user.locale,
        "session",
        request_id_of(request),
    )


async def check_csrf(request: Request) -> None:
    """Double-submit check: the form field (or htmx header) must equal the CSRF cookie.

    Written here rather than taken from a CSRF middleware package because it has to read
    either a form field or a header and run inside the same per-route dependency as the
    permission check, so that no console route can exist without both."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD, "")
        sent = value if isinstance(value, str) else ""
    if not cookie or not sent or not secrets.compare_digest(cookie, sent):
        raise CsrfFailed(
            "the form's security token is missing or does not match.",
            hint="Reload the page and submit the form again.",
        )


def _mark(dependency: Callable[..., Any], rule: AccessRule) -> Any:
    dependency.__access_rule__ = rule  # type: ignore[attr-defined]
    return Depends(dependency)


def require(permission: Perm) -> Any:
    """API route dependency: a valid bearer token whose roles grant ``permission``."""

    async def dependency(request: Request) -> Principal:
        # A token resolved a moment ago is answered on the event loop; only a database
        # lookup goes to the thread pool (the hop costs more than the rest of a request).
        ident = auth.cached_token(runtime_of(request), _bearer_secret(request))
        if ident is not None:
            return _check(_token_principal(request, ident), permission)
        return _check(await run_in_threadpool(_bearer_principal, request), permission)

    return _mark(dependency, AccessRule(permission, "api"))


def page(permission: Perm) -> Any:
    """Console route dependency: a session whose roles grant ``permission``, and on any
    state-changing method a matching CSRF token."""

    async def dependency(request: Request) -> Principal:
        await check_csrf(request)
        principal = session_principal(request)
        if principal is None:
            raise LoginRequired("please sign in.", hint="Your session ended or never began.")
        request.state.principal = principal
        return _check(principal, permission)

    return _mark(dependency, AccessRule(permission, "page"))


def public(*, csrf: bool = False) -> Any:
    """Marks a route reachable without signing in (health, metrics, login form)."""

    async def dependency(request: Request) -> None:
        if csrf:
            await check_csrf(request)

    return _mark(dependency, AccessRule(None, "public"))


def access_rule_of(route: Any) -> AccessRule | None:
    """The rule attached to a route through its dependencies, if any."""
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dep = stack.pop()
        rule = getattr(dep.call, "__access_rule__", None)
        if rule is not None:
            return rule  # type: ignore[no-any-return]
        stack.extend(dep.dependencies)
    return None


async def read_body(request: Request, limit: int, too_large: Callable[[], Exception]) -> bytes:
    """The request body, refused with ``too_large()`` as soon as it passes ``limit``
    bytes (by Content-Length, or while reading a chunked upload) rather than after
    reading it all into memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large()
    return bytes(body)
