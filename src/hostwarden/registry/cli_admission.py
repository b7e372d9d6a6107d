"""`hostwarden provisioning …` and `hostwarden commitment …`: the gate and the letter."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hostwarden.cli.common import JsonOpt, ReasonOpt, err, operator, out, print_json, state, table
from hostwarden.core.timeutil import isoformat
from hostwarden.errors import ValidationFailed
from hostwarden.registry import commitments, gate, scans
from hostwarden.registry.commitments import LetterText
from hostwarden.registry.schemas_admission import AcceptanceOut, CommitmentVersionOut, DecisionOut

provisioning_app = typer.Typer(
    help="The provisioning gate: may a customer get a new server?", no_args_is_help=True
)
commitment_app = typer.Typer(
    help="The commitment letter (承诺书): versions, acceptances, signed PDFs.",
    no_args_is_help=True,
)

CustomerArg = Annotated[
    str,
    typer.Argument(help="hostwarden's customer id (digits) or the billing system's external id."),
]
ExternalOpt = Annotated[
    bool, typer.Option("--external", "-x", help="CUSTOMER is an external id even if all digits.")
]


def _print_decision(decision: gate.Decision) -> None:
    verdict = "[green]ALLOWED[/green]" if decision.allowed else "[red]DENIED[/red]"
    out.print(f"Customer {decision.customer_id}: {verdict} (decision {decision.decision_id})")
    for reason in decision.reasons:
        mark = "[green]ok[/green]  " if reason.ok else "[red]FAIL[/red]"
        out.print(f"  {mark} {reason.check:<12} {escape(reason.detail)}")


@provisioning_app.command("check")
def provisioning_check(
    ctx: typer.Context,
    customer: CustomerArg,
    external: ExternalOpt = False,
    as_json: JsonOpt = False,
    reason: ReasonOpt = "",
) -> None:
    """Decide and record whether CUSTOMER may be provisioned: exit 0 if allowed, 1 if not,
    listing every check either way."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        found = gate.customer_from_text(op.session, customer, external=external)
        decision = gate.check(op, found.id, reason=reason)
    if as_json:
        print_json(DecisionOut.of(decision).model_dump(mode="json"))
    else:
        _print_decision(decision)
    if not decision.allowed:
        raise typer.Exit(1)


@provisioning_app.command("decisions")
def provisioning_decisions(
    ctx: typer.Context,
    customer: CustomerArg,
    external: ExternalOpt = False,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The recorded gate decisions of CUSTOMER, newest first."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        found = gate.customer_from_text(session, customer, external=external)
        rows = [
            DecisionOut.of(
                gate.decision_of(r), decided_at=r.decided_at, requested_by=r.requested_by
            )
            for r in gate.list_decisions(session, found.id, limit=limit)
        ]
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table(
        f"Provisioning decisions of customer {found.id}",
        ["id", "decided at", "by", "allowed", "failed checks"],
        [
            [
                r.decision_id,
                r.decided_at and isoformat(r.decided_at),
                r.requested_by,
                "yes" if r.allowed else "no",
                ", ".join(x.check for x in r.reasons if not x.ok),
            ]
            for r in rows
        ],
    )


def _read_texts(values: list[str]) -> dict[str, LetterText]:
    texts: dict[str, LetterText] = {}
    for value in values:
        locale, sep, filename = value.partition("=")
        if not sep or not filename:
            raise ValidationFailed(
                f"'{value}' is not LOCALE=FILE.", hint="For example --text zh-CN=letter.zh.txt."
            )
        path = Path(filename)
        try:
            texts[commitments.check_locale(locale)] = commitments.parse_letter(
                path.read_text(encoding="utf-8")
            )
        except OSError as exc:
            raise ValidationFailed(
                f"cannot read {path}: {exc.strerror}.", hint="Check the file name."
            ) from None
        except UnicodeDecodeError:
            raise ValidationFailed(f"{path} is not UTF-8 text.", hint="Save it as UTF-8.") from None
    return texts


def _published(version: commitments.LetterVersion) -> None:
    out.print(f"Commitment letter version {version.version} published:")
    for locale, template in sorted(version.templates.items()):
        out.print(f"  {locale:<6} {escape(template.title)}  sha256 {template.sha256}")
    out.print("Every customer must accept it before their next provisioning.")


@commitment_app.command("publish")
def commitment_publish(
    ctx: typer.Context,
    text: Annotated[
        list[str],
        typer.Option(
            "--text",
            help="LOCALE=FILE, once per language (zh-CN and en). A file's first line is the "
            "title, the rest the body.",
        ),
    ],
    reason: ReasonOpt = "",
) -> None:
    """Publish the next version of the letter from text files, in every language at once."""
    texts = _read_texts(text)
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        version = commitments.publish(op, texts, reason=reason)
    _published(version)


@commitment_app.command("publish-default")
def commitment_publish_default(ctx: typer.Context, reason: ReasonOpt = "") -> None:
    """Publish the bilingual letter shipped with hostwarden as the next version."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        version = commitments.publish(
            op, commitments.default_letters(), reason=reason or "the letter shipped with hostwarden"
        )
    _published(version)


@commitment_app.command("list")
def commitment_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Published versions, newest first."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        versions = [CommitmentVersionOut.of(v) for v in commitments.list_versions(session)]
    if as_json:
        print_json([v.model_dump(mode="json") for v in versions])
        return
    table(
        "Commitment letter versions",
        ["version", "published at", "by", "language", "title", "sha256"],
        [
            [v.version, isoformat(v.published_at), v.published_by, t.locale, t.title, t.sha256]
            for v in versions
            for t in v.texts
        ],
    )


@commitment_app.command("show")
def commitment_show(
    ctx: typer.Context,
    version: Annotated[int | None, typer.Argument(help="Version (default: current).")] = None,
    locale: Annotated[str, typer.Option(help="zh-CN or en.")] = "zh-CN",
) -> None:
    """Print the text of a version in one language."""
    commitments.check_locale(locale)
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        template = commitments.get_version(session, version).templates[locale]
    sys.stdout.write(f"{template.title}\n\n{template.body}\n")


@commitment_app.command("accept")
def commitment_accept(
    ctx: typer.Context,
    customer: CustomerArg,
    locale: Annotated[str, typer.Option(help="Language the customer read: zh-CN or en.")],
    external: ExternalOpt = False,
    ip: Annotated[str, typer.Option(help="Address the customer accepted from.")] = "",
    user_agent: Annotated[str, typer.Option(help="The customer's browser User-Agent.")] = "",
    scan: Annotated[
        Path | None,
        typer.Option(
            help="Scan of the signed paper letter (PDF/JPEG/PNG); records a signed-scan "
            "acceptance.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="Version the customer saw; refused if not current.")
    ] = None,
    as_json: JsonOpt = False,
    reason: ReasonOpt = "",
) -> None:
    """Record that CUSTOMER accepted the current letter: online (with --ip) or by a signed
    paper letter (with --scan)."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        found = gate.customer_from_text(op.session, customer, external=external)
        scan_id = None
        if scan is not None:
            stored = scans.store_scan(
                op, found.id, "commitment", scan.name, scan.read_bytes(), reason=reason
            )
            scan_id = stored.id
        row = commitments.accept(
            op,
            found.id,
            locale,
            commitments.SIGNED_SCAN if scan is not None else commitments.CLICK_THROUGH,
            ip=ip,
            user_agent=user_agent,
            scan_id=scan_id,
            version=version,
            reason=reason,
        )
        summary = AcceptanceOut.of(row)
    if as_json:
        print_json(summary.model_dump(mode="json"))
        return
    out.print(
        f"Acceptance {summary.id}: customer {summary.customer_id} accepted version "
        f"{summary.version} ({locale}, {summary.method}), text sha256 {summary.text_sha256}."
    )


@commitment_app.command("acceptances")
def commitment_acceptances(
    ctx: typer.Context,
    customer: CustomerArg,
    external: ExternalOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A customer's acceptances, newest first."""
    runtime = state(ctx).runtime()
    with runtime.reading() as session:
        found = gate.customer_from_text(session, customer, external=external)
        rows = [AcceptanceOut.of(a) for a in commitments.list_acceptances(session, found.id)]
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table(
        f"Commitment acceptances of customer {found.id}",
        ["id", "version", "method", "accepted at", "ip", "scan", "text sha256"],
        [
            [r.id, r.version, r.method, isoformat(r.accepted_at), r.ip, r.scan_id, r.text_sha256]
            for r in rows
        ],
    )


@commitment_app.command("pdf")
def commitment_pdf(
    ctx: typer.Context,
    acceptance_id: int,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="File to write (default commitment-ID.pdf; - for stdout)."
        ),
    ] = None,
) -> None:
    """Write the accepted letter with its acceptance record as a PDF."""
    pdf = commitments.render_pdf(state(ctx).runtime(), acceptance_id)
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(pdf)
        return
    target = output or Path(f"commitment-{acceptance_id}.pdf")
    target.write_bytes(pdf)
    err.print(f"{target} written ({len(pdf)} bytes).")
