"""`hostwarden registry check-id` and `hostwarden customer …`: admission from the shell."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from hostwarden.cli.common import JsonOpt, ReasonOpt, operator, out, print_json, state, table
from hostwarden.core.timeutil import isoformat
from hostwarden.errors import ValidationFailed
from hostwarden.registry import customers, identity, scans, verification
from hostwarden.registry.schemas_customers import (
    CustomerDetail,
    CustomerOut,
    FlagOut,
    PiiOut,
    VerificationOut,
    customer_detail,
)

registry_app = typer.Typer(help="Registry tools: identity number checks.", no_args_is_help=True)
customer_app = typer.Typer(
    help="Customers: admission, identity documents, verification, ban-evasion flags.",
    no_args_is_help=True,
)

NeededReason = Annotated[str, typer.Option("--reason", help="Why (required; audited).")]
TYPES_HELP = ", ".join(t.value for t in identity.DocType)


def _number(value: str) -> str:
    """'-' reads the number from stdin, so it stays out of shell history."""
    return sys.stdin.readline().strip() if value == "-" else value


@registry_app.command("check-id")
def check_id(
    doc_type: Annotated[str, typer.Argument(metavar="TYPE", help=TYPES_HELP)],
    number: Annotated[str, typer.Argument(help="The number; '-' reads it from stdin.")],
    type_name: Annotated[str, typer.Option(help="The document's name, for type other.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Check an identity number; exit 0 when valid, 1 naming the rule it fails."""
    kind = identity.parse_doc_type(doc_type)
    result = identity.validate(kind, _number(number), type_name=type_name)
    if as_json:
        print_json(
            {"type": kind.value, "ok": result.ok, "rule": result.rule, "message": result.message}
        )
    elif result.ok:
        out.print(f"valid: {result.message}")
    else:
        out.print(f"invalid ({result.rule}): {result.message}")
    if not result.ok:
        raise typer.Exit(1)


def _print_flags(flags: list[FlagOut]) -> None:
    for flag in flags:
        if flag.status == "open":
            out.print(
                f"[yellow]ban-evasion flag {flag.id}[/yellow]: shares "
                f"{', '.join(flag.attributes)} with customer {flag.matched_customer_id}, "
                "who was terminated for abuse."
            )


@customer_app.command("add")
def customer_add(
    ctx: typer.Context,
    name: str,
    kind: Annotated[str, typer.Option(help="individual or organisation.")] = "individual",
    email: Annotated[str, typer.Option(help="E-mail address.")] = "",
    phone: Annotated[str, typer.Option(help="Phone number, with country code.")] = "",
    address: Annotated[str, typer.Option(help="Postal address.")] = "",
    risk_tier: Annotated[str, typer.Option(help="low, medium or high.")] = "low",
    external_id: Annotated[str, typer.Option(help="Id in the billing system.")] = "",
    signup_ip: Annotated[str, typer.Option(help="Address the customer signed up from.")] = "",
    device_fingerprint: Annotated[str, typer.Option(help="Sign-up device fingerprint.")] = "",
    payment_fingerprint: Annotated[str, typer.Option(help="Payment method fingerprint.")] = "",
    reason: ReasonOpt = "",
) -> None:
    """Admit a customer (status pending) and screen them against banned customers."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        customer = customers.create_customer(
            op,
            kind=kind,
            name=name,
            email=email,
            phone=phone,
            address=address,
            risk_tier=risk_tier,
            external_id=external_id or None,
            signup_ip=signup_ip,
            device_fingerprint=device_fingerprint,
            payment_fingerprint=payment_fingerprint,
            reason=reason,
        )
        detail = customer_detail(op.session, customer)
    out.print(f"Customer {detail.id} ({detail.name}) created, status pending.")
    _print_flags(detail.ban_evasion_flags)


@customer_app.command("update")
def customer_update(
    ctx: typer.Context,
    customer_id: int,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    email: Annotated[str | None, typer.Option(help="New e-mail ('' clears).")] = None,
    phone: Annotated[str | None, typer.Option(help="New phone ('' clears).")] = None,
    address: Annotated[str | None, typer.Option(help="New address.")] = None,
    risk_tier: Annotated[str | None, typer.Option(help="low, medium or high.")] = None,
    external_id: Annotated[str | None, typer.Option(help="Id in the billing system.")] = None,
    reason: ReasonOpt = "",
) -> None:
    """Change a customer's details."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        customers.update_customer(
            op,
            customer_id,
            name=name,
            email=email,
            phone=phone,
            address=address,
            risk_tier=risk_tier,
            external_id=external_id,
            reason=reason,
        )
    out.print(f"Customer {customer_id} updated.")


@customer_app.command("set-status")
def customer_set_status(
    ctx: typer.Context,
    customer_id: int,
    status: Annotated[str, typer.Argument(help="active, restricted, suspended or terminated.")],
    reason: NeededReason,
    for_abuse: Annotated[
        bool, typer.Option("--for-abuse", help="A termination for abuse (screened against).")
    ] = False,
) -> None:
    """Move a customer to another status."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        customer = customers.set_status(op, customer_id, status, reason=reason, for_abuse=for_abuse)
        now = customer.status
    out.print(f"Customer {customer_id} is now {now}{' (for abuse)' if for_abuse else ''}.")


@customer_app.command("list")
def customer_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="individual or organisation.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List customers (e-mail and phone masked)."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows, _ = customers.list_customers(session, status=status, kind=kind, limit=limit)
        items = [CustomerOut.of(c) for c in rows]
    if as_json:
        print_json([c.model_dump(mode="json") for c in items])
        return
    table(
        "Customers",
        ["id", "kind", "name", "email", "phone", "status", "identity", "risk"],
        [
            [c.id, c.kind, c.name, c.email, c.phone, c.status, c.identity_status, c.risk_tier]
            for c in items
        ],
    )


def _show(detail: CustomerDetail) -> None:
    table(
        f"Customer {detail.id}",
        ["field", "value"],
        [
            ["name", detail.name],
            ["kind", detail.kind],
            ["external id", detail.external_id],
            ["e-mail", detail.email],
            ["phone", detail.phone],
            ["address", detail.address],
            ["status", detail.status + (" (for abuse)" if detail.terminated_for_abuse else "")],
            ["identity", detail.identity_status],
            ["risk tier", detail.risk_tier],
        ],
    )
    if detail.documents:
        table(
            "Identity documents",
            ["id", "type", "number", "override"],
            [
                [d.id, d.other_type or d.doc_type, d.number, d.override_reason]
                for d in detail.documents
            ],
        )
    if detail.verification:
        table(
            "Verification",
            ["id", "provider", "status", "reason", "decided by"],
            [[r.id, r.provider, r.status, r.reason, r.decided_by] for r in detail.verification],
        )
    _print_flags(detail.ban_evasion_flags)


@customer_app.command("show")
def customer_show(ctx: typer.Context, customer_id: int, as_json: JsonOpt = False) -> None:
    """Show one customer, masked, with documents, verification and flags."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        detail = customer_detail(session, customers.get_customer(session, customer_id))
    if as_json:
        print_json(detail.model_dump(mode="json"))
    else:
        _show(detail)


@customer_app.command("search")
def customer_search(
    ctx: typer.Context,
    id_number: Annotated[str, typer.Option(help="Exact ID number; '-' reads stdin.")] = "",
    phone: Annotated[str, typer.Option(help="Exact phone number.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Find customers by exact ID number or phone (through the blind index)."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        found = customers.search_customers(
            session, runtime.vault, id_number=_number(id_number), phone=phone
        )
        items = [CustomerOut.of(c) for c in found]
    if as_json:
        print_json([c.model_dump(mode="json") for c in items])
        return
    table(
        "Matching customers",
        ["id", "name", "status", "identity"],
        [[c.id, c.name, c.status, c.identity_status] for c in items],
    )


@customer_app.command("reveal")
def customer_reveal(
    ctx: typer.Context,
    customer_id: int,
    reason: NeededReason,
    as_json: JsonOpt = False,
) -> None:
    """Show full e-mail, phone and ID numbers; the view is recorded in the audit trail."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        view = PiiOut.of(customers.reveal(op, customer_id, reason))
    if as_json:
        print_json(view.model_dump(mode="json"))
        return
    rows = [["e-mail", view.email], ["phone", view.phone]] + [
        [d.other_type or d.doc_type, d.number] for d in view.documents
    ]
    table(f"Customer {customer_id} (full view, audited)", ["item", "value"], rows)


@customer_app.command("document-add")
def customer_document_add(
    ctx: typer.Context,
    customer_id: int,
    doc_type: Annotated[str, typer.Argument(metavar="TYPE", help=TYPES_HELP)],
    number: Annotated[str, typer.Argument(help="The number; '-' reads it from stdin.")],
    type_name: Annotated[str, typer.Option(help="The document's name, for type other.")] = "",
    override_reason: Annotated[
        str, typer.Option(help="Accept a number that fails validation, saying why.")
    ] = "",
    reason: ReasonOpt = "",
) -> None:
    """Add an identity document (validated; stored encrypted)."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        document = customers.add_document(
            op,
            customer_id,
            doc_type,
            _number(number),
            type_name=type_name,
            override_reason=override_reason,
            reason=reason,
        )
        shown = f"Document {document.id} ({document.doc_type} {document.number_masked}) added"
    out.print(shown + (" with an override." if override_reason else "."))


@customer_app.command("scan-add")
def customer_scan_add(
    ctx: typer.Context,
    customer_id: int,
    file: Annotated[Path, typer.Argument(help="PDF, JPEG or PNG of the ID card or licence.")],
    reason: ReasonOpt = "",
) -> None:
    """Keep a scan of an identity document (stored once by its SHA-256)."""
    if not file.is_file():
        raise ValidationFailed(f"{file} is not a file.", hint="Give the path of the scan.")
    data = file.read_bytes()
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        scan = scans.store_scan(op, customer_id, "identity", file.name, data, reason=reason)
        scan_id, digest = scan.id, scan.sha256
    out.print(f"Scan {scan_id} stored (sha256 {digest}).")


@customer_app.command("scan-get")
def customer_scan_get(
    ctx: typer.Context,
    scan_id: int,
    output: Annotated[
        Path, typer.Option("--out", "-o", help="File to write (must not exist yet).")
    ],
    reason: NeededReason = "",
) -> None:
    """Write a stored scan to a file after checking it against its SHA-256; the download
    is recorded in the audit trail (so is a file found altered)."""
    if output.exists():
        raise ValidationFailed(
            f"{output} already exists.", hint="Give a new file name or move that file away."
        )
    runtime = state(ctx).runtime()
    found = scans.download_scan(runtime, operator(), scan_id, reason=reason)
    # Owner-only from the first byte: the scan is an identity document.
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(found.data)
    scan = found.scan
    out.print(
        f"Scan {scan.id} ({scan.purpose}, {scan.filename}, {scan.content_type}, "
        f"{scan.size} bytes, sha256 {scan.sha256}) written to {output}."
    )


@customer_app.command("verify")
def customer_verify(
    ctx: typer.Context,
    customer_id: int,
    provider: Annotated[str, typer.Option(help="Identity provider (entry point name).")] = "manual",
) -> None:
    """Send the customer's documents to an identity provider (manual: the review queue)."""
    runtime = state(ctx).runtime()
    row = verification.request_verification(runtime, operator(), customer_id, provider)
    detail = f": {row.reason}" if row.reason else ""
    out.print(f"Verification request {row.id} via {row.provider} is {row.status}{detail}.")
    if row.status == "error":
        raise typer.Exit(1)


@customer_app.command("queue")
def customer_queue(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="pending, approved, rejected or error.")] = "pending",
    as_json: JsonOpt = False,
) -> None:
    """List verification requests (by default those waiting for review)."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows = [VerificationOut.of(r) for r in verification.list_requests(session, status=status)]
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table(
        "Verification requests",
        ["id", "customer", "provider", "status", "created", "reason"],
        [
            [r.id, r.customer_id, r.provider, r.status, isoformat(r.created_at), r.reason]
            for r in rows
        ],
    )


@customer_app.command("approve")
def customer_approve(ctx: typer.Context, request_id: int, reason: NeededReason) -> None:
    """Approve a verification request: the customer is verified, then screened."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = verification.approve(op, request_id, reason)
        flags = [
            FlagOut.of(f) for f in customers.list_flags(op.session, customer_id=row.customer_id)
        ]
        customer_id = row.customer_id
    out.print(f"Request {request_id} approved; customer {customer_id} is verified.")
    _print_flags(flags)


@customer_app.command("reject")
def customer_reject(ctx: typer.Context, request_id: int, reason: NeededReason) -> None:
    """Reject a verification request."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        verification.reject(op, request_id, reason)
    out.print(f"Request {request_id} rejected.")


@customer_app.command("flags")
def customer_flags(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="open, cleared or confirmed.")] = "open",
    customer_id: Annotated[int | None, typer.Option("--customer", help="Only this one.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List ban-evasion flags (matched attribute names only, never values)."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        rows = [
            FlagOut.of(f)
            for f in customers.list_flags(session, status=status, customer_id=customer_id)
        ]
    if as_json:
        print_json([f.model_dump(mode="json") for f in rows])
        return
    table(
        "Ban-evasion flags",
        ["id", "customer", "matches", "on", "status", "reason"],
        [
            [
                f.id,
                f.customer_id,
                f.matched_customer_id,
                ", ".join(f.attributes),
                f.status,
                f.resolution_reason,
            ]
            for f in rows
        ],
    )


@customer_app.command("resolve-flag")
def customer_resolve_flag(
    ctx: typer.Context,
    flag_id: int,
    resolution: Annotated[str, typer.Argument(help="cleared or confirmed.")],
    reason: NeededReason,
) -> None:
    """Close a ban-evasion flag as cleared (a different person) or confirmed."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        customers.resolve_flag(op, flag_id, resolution, reason)
    out.print(f"Flag {flag_id} {resolution}.")
