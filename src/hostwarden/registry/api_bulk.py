"""API routes of bulk import and export: the files `hostwarden import` and `export` read
and write, sent as the request body and streamed back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hostwarden.api.deps import Principal, read_body, require, runtime_of
from hostwarden.api.problems import problem
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Actor, Runtime
from hostwarden.errors import TooLarge, ValidationFailed
from hostwarden.registry import bulk, importers
from hostwarden.registry.bulk import Importer, ImportReport
from hostwarden.registry.schemas_bulk import ImportReportOut

router = APIRouter(prefix="/api/v1/registry", tags=["bulk import and export"])

#: Who may import each kind: the permission its single-record API routes need.
IMPORT_PERMISSIONS: dict[str, Perm] = {
    "customers": Perm.CUSTOMERS_WRITE,
    "ranges": Perm.INVENTORY_WRITE,
    "instances": Perm.INVENTORY_WRITE,
    "assignments": Perm.INVENTORY_WRITE,
}
#: Who may export each kind. A customer export holds e-mail and postal addresses in full,
#: which the API shows every other role masked or not at all, so it stays with the people
#: who maintain customers; inventory is readable by everyone who works a case.
EXPORT_PERMISSIONS: dict[str, Perm] = {
    "customers": Perm.CUSTOMERS_WRITE,
    "ranges": Perm.REGISTRY_READ,
    "instances": Perm.REGISTRY_READ,
    "assignments": Perm.REGISTRY_READ,
}
#: Request body content types and the bulk format each one is.
BODY_FORMATS = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "application/x-ndjson": "json",
    "application/jsonl": "json",
}
EXPORT_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/x-ndjson"}
EXPORT_SUFFIXES = {"csv": "csv", "json": "jsonl"}
MIB = 1024 * 1024

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file itself: CSV with a header row, a JSON array of objects, "
        "or JSON lines.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}
_REFUSED_DOC: dict[int | str, dict[str, Any]] = {
    413: {"description": "The body is larger than server.import_max_mb."},
    422: {
        "description": "The file cannot be read, or rows were refused and nothing was "
        "written: a problem whose extra members are the report (errors lists each row)."
    },
}


def _body_format(request: Request, explicit: str | None) -> str:
    if explicit:
        return bulk.check_format(explicit.lower(), "import")
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media in BODY_FORMATS:
        return BODY_FORMATS[media]
    raise ValidationFailed(
        f"a request body of type '{media or 'none'}' is not taken as a bulk file.",
        hint="Send the file itself as the body with Content-Type text/csv or "
        "application/json (curl -H 'Content-Type: text/csv' --data-binary @file.csv), "
        "or add ?format=csv or ?format=json.",
    )


def _too_large(max_mb: int) -> TooLarge:
    return TooLarge(
        f"the file is larger than {max_mb} MiB, the most the import API takes "
        "(server.import_max_mb).",
        hint="Split it into smaller files, or import it on the server with `hostwarden import`.",
    )


async def _read_body(request: Request, max_mb: int) -> bytes:
    """The body, refused as soon as it passes the limit rather than after reading it all."""
    body = await read_body(request, max_mb * MIB, lambda: _too_large(max_mb))
    if not body:
        raise ValidationFailed(
            "the request body is empty.",
            hint="Send the file as the body, e.g. curl --data-binary @customers.csv.",
        )
    return body


def _run(
    runtime: Runtime,
    actor: Actor,
    importer: Importer,
    data: bytes,
    fmt: str,
    *,
    dry_run: bool,
    skip_invalid: bool,
) -> ImportReport:
    rows = bulk.read_rows(data, fmt)
    return bulk.run_import(
        runtime, actor, importer, rows, dry_run=dry_run, skip_invalid=skip_invalid
    )


async def _import(
    request: Request,
    who: Principal,
    kind: str,
    fmt: str | None,
    *,
    dry_run: bool,
    skip_invalid: bool,
) -> Response:
    runtime = runtime_of(request)
    fmt = _body_format(request, fmt)
    data = await _read_body(request, runtime.settings.server.import_max_mb)
    report = await run_in_threadpool(
        _run,
        runtime,
        who.actor(),
        importers.IMPORTERS[kind],
        data,
        fmt,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
    )
    answer = ImportReportOut.of(report).model_dump(mode="json")
    if report.errors and not report.written and not dry_run:
        return problem(
            request,
            422,
            "import-refused",
            "Import refused",
            f"{len(report.errors)} of {report.total} rows were refused, so nothing was "
            "written. Fix the rows listed in errors, or send skip_invalid=true to write "
            "the good rows.",
            **answer,
        )
    return JSONResponse(answer)


def _add_import_route(kind: str) -> None:
    async def import_kind(
        request: Request,
        dry_run: bool = Query(False, description="Check everything, write nothing."),
        skip_invalid: bool = Query(False, description="Write the good rows, report the bad."),
        fmt: str | None = Query(
            None, alias="format", description="csv or json; default: from Content-Type."
        ),
        who: Principal = require(IMPORT_PERMISSIONS[kind]),
    ) -> Response:
        return await _import(request, who, kind, fmt, dry_run=dry_run, skip_invalid=skip_invalid)

    router.add_api_route(
        f"/import/{kind}",
        import_kind,
        methods=["POST"],
        name=f"import_{kind}",
        summary=f"Import {kind}",
        description=f"Upsert {kind} from the file in the body, as `hostwarden import "
        f"{kind}` does. Any bad row stops the whole file (nothing is written) unless "
        "skip_invalid.",
        response_model=ImportReportOut,
        responses=_REFUSED_DOC,
        openapi_extra=_BODY_DOC,
    )


def _add_export_route(kind: str) -> None:
    def export_kind(
        request: Request,
        fmt: str = Query("csv", alias="format", description="csv or json (JSON lines)."),
        who: Principal = require(EXPORT_PERMISSIONS[kind]),
    ) -> StreamingResponse:
        chunks = importers.export_chunks(runtime_of(request), kind, fmt, who.actor())
        return StreamingResponse(
            chunks,
            media_type=EXPORT_MEDIA_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="{kind}.{EXPORT_SUFFIXES[fmt]}"'
            },
        )

    router.add_api_route(
        f"/export/{kind}",
        export_kind,
        methods=["GET"],
        name=f"export_{kind}",
        summary=f"Export {kind}",
        description=f"Stream {kind} in the shape the import reads (no phone or ID numbers).",
        response_class=StreamingResponse,
    )


for _kind in importers.KINDS:
    _add_import_route(_kind)
    _add_export_route(_kind)


# Registered after the routes of the known kinds, so these answer only the others, with
# the list of kinds instead of a bare 404.
@router.post("/import/{kind}", include_in_schema=False)
@router.get("/export/{kind}", include_in_schema=False)
def refuse_unknown_kind(kind: str, who: Principal = require(Perm.REGISTRY_READ)) -> None:
    raise importers.unknown_kind(kind)
