"""Errors as RFC 9457 problem details for the API, and as pages for the console."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hostwarden.api.deps import LoginRequired
from hostwarden.core.logs import get_logger
from hostwarden.errors import HostwardenError

PROBLEM_TYPE = "urn:hostwarden:problem:"
log = get_logger("hostwarden.api")


def problem(
    request: Request, status: int, code: str, title: str, detail: str, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", ""),
    }
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(HostwardenError)
    async def _hostwarden_error(request: Request, exc: HostwardenError) -> Response:
        if isinstance(exc, LoginRequired) and not request.url.path.startswith("/api/"):
            if request.headers.get("hx-request"):
                return Response(status_code=401, headers={"HX-Redirect": "/login"})
            target = quote(str(request.url.path))
            return RedirectResponse(f"/login?next={target}", status_code=303)
        if wants_html(request):
            from hostwarden.web.render import error_page

            return error_page(request, exc.status, exc.title, str(exc))
        return problem(request, exc.status, exc.code, exc.title, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"] if p != "body"), "message": err["msg"]}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(request, 422, "validation-failed", "Input is invalid", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = str(exc.detail)
        if wants_html(request):
            from hostwarden.web.render import error_page

            return error_page(request, exc.status_code, detail, detail)
        return problem(request, exc.status_code, f"http-{exc.status_code}", detail, detail)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> Response:
        # The driver's text names hosts and ports: it goes to the log, not to the caller.
        log.error("database unreachable", path=request.url.path, error=str(exc.orig))
        response = problem(
            request,
            503,
            "database-unavailable",
            "Database unavailable",
            "the database does not answer; try again shortly, and tell the operators "
            "the request id in this answer.",
        )
        response.headers["Retry-After"] = "30"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", path=request.url.path)
        response = problem(
            request,
            500,
            "internal",
            "Internal error",
            "the server failed; the request id in this answer finds the log line.",
        )
        # Starlette answers this one from its outermost middleware, outside the one that
        # adds X-Request-ID to every other answer.
        request_id = getattr(request.state, "request_id", "")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        return response
