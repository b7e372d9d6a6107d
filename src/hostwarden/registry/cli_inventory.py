"""`hostwarden attribute` and `hostwarden inventory …`: rooms, ranges, instances, IP and NAT
assignments and domains from the shell."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from hostwarden.cli.common import JsonOpt, ReasonOpt, err, operator, out, print_json, state, table
from hostwarden.core.timeutil import isoformat, isoformat_or_none
from hostwarden.registry import attribution, inventory
from hostwarden.registry.schemas_inventory import (
    AssignmentOut,
    DomainOut,
    InstanceOut,
    NatOut,
    RangeOut,
    RoomOut,
)

inventory_app = typer.Typer(
    help="Machine rooms, IP ranges, instances, IP/NAT assignments and domains.",
    no_args_is_help=True,
)
room_app = typer.Typer(help="Machine rooms (IDC sites).", no_args_is_help=True)
range_app = typer.Typer(help="IP ranges the provider announces.", no_args_is_help=True)
instance_app = typer.Typer(help="VPS, dedicated and colocated servers.", no_args_is_help=True)
nat_app = typer.Typer(help="NAT/CGNAT port blocks.", no_args_is_help=True)
domain_app = typer.Typer(help="Domains served from customers' instances.", no_args_is_help=True)
inventory_app.add_typer(room_app, name="room")
inventory_app.add_typer(range_app, name="range")
inventory_app.add_typer(instance_app, name="instance")
inventory_app.add_typer(nat_app, name="nat")
inventory_app.add_typer(domain_app, name="domain")

FromOpt = Annotated[
    str | None,
    typer.Option("--from", help="Start, ISO 8601 with zone (e.g. …T10:00:00+08:00); default now."),
]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="End, ISO 8601 with zone; default: still holds.")
]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="When it ended, ISO 8601 with zone; default now.")
]


def _dump(rows: list[Any]) -> None:
    print_json([r.model_dump(mode="json") for r in rows])


def attribute_command(
    ctx: typer.Context,
    ip: Annotated[str, typer.Argument(help="IPv4 or IPv6 address.")],
    at: Annotated[
        str, typer.Option("--at", help="The moment, with its zone: 2026-05-01T10:00:00+08:00.")
    ],
    port: Annotated[
        int | None, typer.Option("--port", help="Port, to see behind a NAT public address.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who held an address (and port) at a moment; exit 1 when nobody did."""
    runtime = state(ctx).runtime()
    try:
        found = attribution.attribute(runtime, ip, at, port)
        if found is None:
            hint = attribution.nobody_hint(runtime, ip, at, port)
            err.print(f"nobody held {escape(ip)} at {escape(at)}. {escape(hint)}")
            raise typer.Exit(1)
    finally:
        runtime.close()
    if as_json:
        print_json(found.as_dict())
        return
    held = found.assignment
    rows: list[list[Any]] = [
        ["customer", found.customer_id],
        ["instance", found.instance_id],
        ["assignment", f"#{held.id} {held.prefix}"],
        ["valid from", isoformat_or_none(held.valid_from)],
        ["valid to", isoformat_or_none(held.valid_to) or "still holds"],
    ]
    if found.nat is not None:
        nat = found.nat
        rows.append(
            [
                "via NAT",
                f"#{nat.id} {nat.public_ip}:{nat.port_start}-{nat.port_end} → {nat.private_ip}",
            ]
        )
    rows.append(["domains", ", ".join(found.domains)])
    where = f"{found.ip}:{found.port}" if found.port is not None else found.ip
    table(f"{where} at {isoformat(found.at)}", ["", ""], rows)


# --- rooms ------------------------------------------------------------------------------


@room_app.command("add")
def room_add(
    ctx: typer.Context,
    name: str,
    address: Annotated[str, typer.Option(help="Postal address of the site.")] = "",
    licence: Annotated[
        list[str] | None, typer.Option("--licence", help="Operator licence number; repeat.")
    ] = None,
    reason: ReasonOpt = "",
) -> None:
    """Add a machine room."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        room = inventory.create_room(
            op, name, address=address, licences=licence or [], reason=reason
        )
    out.print(f"Machine room {room.id} '{room.name}' added.")


@room_app.command("list")
def room_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List machine rooms."""
    with state(ctx).runtime().reading() as session:
        rows = [RoomOut.of(r) for r in inventory.list_rooms(session)]
    if as_json:
        _dump(rows)
        return
    table(
        "Machine rooms",
        ["id", "name", "address", "licences"],
        [[r.id, r.name, r.address, ", ".join(r.licences)] for r in rows],
    )


# --- ranges -----------------------------------------------------------------------------


@range_app.command("add")
def range_add(
    ctx: typer.Context,
    cidr: str,
    room: Annotated[str | None, typer.Option(help="Machine room id or name.")] = None,
    purpose: Annotated[str, typer.Option(help="e.g. vps, dedicated, cgnat-pool.")] = "",
    reason: ReasonOpt = "",
) -> None:
    """Register an IP range (IPv4 or IPv6 CIDR); overlapping ranges are refused."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        room_id = inventory.get_room(op.session, room).id if room else None
        row = inventory.create_range(op, cidr, room_id=room_id, purpose=purpose, reason=reason)
    out.print(f"Range {row.id} {row.cidr} registered.")


@range_app.command("list")
def range_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List IP ranges."""
    with state(ctx).runtime().reading() as session:
        rows = [RangeOut.of(r) for r in inventory.list_ranges(session)]
    if as_json:
        _dump(rows)
        return
    table(
        "IP ranges",
        ["id", "cidr", "room", "purpose"],
        [[r.id, r.cidr, r.room_id, r.purpose] for r in rows],
    )


# --- instances --------------------------------------------------------------------------


@instance_app.command("add")
def instance_add(
    ctx: typer.Context,
    hostname: str,
    customer: Annotated[int, typer.Option("--customer", help="Customer id.")],
    kind: Annotated[str, typer.Option(help="vps, dedicated or colocation.")] = "vps",
    room: Annotated[str | None, typer.Option(help="Machine room id or name.")] = None,
    external_id: Annotated[str | None, typer.Option(help="Id in the billing system.")] = None,
    created_at: Annotated[
        str | None, typer.Option("--created-at", help="ISO 8601 with zone; default now.")
    ] = None,
    reason: ReasonOpt = "",
) -> None:
    """Add an instance of a customer."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        room_id = inventory.get_room(op.session, room).id if room else None
        row = inventory.create_instance(
            op,
            hostname,
            kind,
            customer,
            room_id=room_id,
            external_id=external_id,
            created_at=created_at,
            reason=reason,
        )
    out.print(f"Instance {row.id} '{row.hostname}' ({row.kind}) of customer {customer} added.")


@instance_app.command("list")
def instance_list(
    ctx: typer.Context,
    customer: Annotated[
        int | None, typer.Option("--customer", help="Only this customer's.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List instances."""
    with state(ctx).runtime().reading() as session:
        rows = [InstanceOut.of(r) for r in inventory.list_instances(session, customer_id=customer)]
    if as_json:
        _dump(rows)
        return
    table(
        "Instances",
        ["id", "hostname", "kind", "customer", "room", "status", "created", "terminated"],
        [
            [
                r.id,
                r.hostname,
                r.kind,
                r.customer_id,
                r.room_id,
                r.status,
                isoformat_or_none(r.created_at),
                isoformat_or_none(r.terminated_at),
            ]
            for r in rows
        ],
    )


@instance_app.command("terminate")
def instance_terminate(
    ctx: typer.Context, instance_id: int, at: AtOpt = None, reason: ReasonOpt = ""
) -> None:
    """Terminate an instance; its current IP assignments end at the same moment."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = inventory.terminate_instance(op, instance_id, at=at, reason=reason)
    out.print(f"Instance {row.id} terminated at {isoformat_or_none(row.terminated_at)}.")


# --- IP assignments ---------------------------------------------------------------------


@inventory_app.command("assign")
def assign(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="Address or CIDR prefix, IPv4 or IPv6.")],
    customer: Annotated[int, typer.Option("--customer", help="Customer id.")],
    instance: Annotated[int | None, typer.Option("--instance", help="Instance id.")] = None,
    valid_from: FromOpt = None,
    valid_to: ToOpt = None,
    reassign: Annotated[
        bool, typer.Option("--reassign", help="End the current holder's interval at --from.")
    ] = False,
    reason: ReasonOpt = "",
) -> None:
    """Record that a customer (and instance) holds an address or prefix from a moment on."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = inventory.assign(
            op,
            prefix,
            customer,
            instance_id=instance,
            valid_from=valid_from,
            valid_to=valid_to,
            reassign=reassign,
            source="cli",
            reason=reason,
        )
    out.print(
        f"Assignment {row.id}: {row.prefix} → customer {row.customer_id} from "
        f"{isoformat_or_none(row.valid_from)}"
        f"{' to ' + str(isoformat_or_none(row.valid_to)) if row.valid_to else ''}."
    )


@inventory_app.command("release")
def release(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Assignment id, or the prefix currently held.")],
    at: AtOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """End an IP assignment (its history stays)."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        if target.isdigit():
            assignment_id = int(target)
        else:
            assignment_id = inventory.current_assignment(op.session, target).id
        row = inventory.release(op, assignment_id, at=at, reason=reason)
    out.print(f"Assignment {row.id} ({row.prefix}) ended at {isoformat_or_none(row.valid_to)}.")


@inventory_app.command("assignments")
def assignments(
    ctx: typer.Context,
    customer: Annotated[
        int | None, typer.Option("--customer", help="Only this customer's.")
    ] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="Only prefixes with this address.")] = None,
    current: Annotated[bool, typer.Option("--current", help="Only those still holding.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List IP assignments, newest first."""
    with state(ctx).runtime().reading() as session:
        rows = [
            AssignmentOut.of(r)
            for r in inventory.list_assignments(
                session, customer_id=customer, ip=ip, current_only=current, limit=limit
            )
        ]
    if as_json:
        _dump(rows)
        return
    table(
        "IP assignments",
        ["id", "prefix", "customer", "instance", "from", "to", "source"],
        [
            [
                r.id,
                r.prefix,
                r.customer_id,
                r.instance_id,
                isoformat_or_none(r.valid_from),
                isoformat_or_none(r.valid_to) or "still holds",
                r.source,
            ]
            for r in rows
        ],
    )


# --- NAT --------------------------------------------------------------------------------


@nat_app.command("add")
def nat_add(
    ctx: typer.Context,
    public_ip: Annotated[str, typer.Argument(help="Public address.")],
    ports: Annotated[str, typer.Argument(help="Port block, e.g. 40000-40999.")],
    private_ip: Annotated[str, typer.Argument(help="Private (inside) address.")],
    valid_from: FromOpt = None,
    valid_to: ToOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Record that a port block of a public address maps to a private address."""
    first, last = inventory.parse_ports(ports)
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = inventory.create_nat(
            op,
            public_ip,
            first,
            last,
            private_ip,
            valid_from=valid_from,
            valid_to=valid_to,
            reason=reason,
        )
    out.print(
        f"NAT mapping {row.id}: {row.public_ip}:{row.port_start}-{row.port_end} → "
        f"{row.private_ip} from {isoformat_or_none(row.valid_from)}."
    )


@nat_app.command("list")
def nat_list(
    ctx: typer.Context,
    public_ip: Annotated[str | None, typer.Option("--public-ip", help="Only this address.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List NAT port blocks."""
    with state(ctx).runtime().reading() as session:
        rows = [NatOut.of(r) for r in inventory.list_nat(session, public_ip=public_ip)]
    if as_json:
        _dump(rows)
        return
    table(
        "NAT port blocks",
        ["id", "public", "ports", "private", "from", "to"],
        [
            [
                r.id,
                r.public_ip,
                f"{r.port_start}-{r.port_end}",
                r.private_ip,
                isoformat_or_none(r.valid_from),
                isoformat_or_none(r.valid_to) or "still holds",
            ]
            for r in rows
        ],
    )


@nat_app.command("release")
def nat_release(ctx: typer.Context, nat_id: int, at: AtOpt = None, reason: ReasonOpt = "") -> None:
    """End a NAT port block."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = inventory.release_nat(op, nat_id, at=at, reason=reason)
    out.print(f"NAT mapping {row.id} ended at {isoformat_or_none(row.valid_to)}.")


# --- domains ----------------------------------------------------------------------------


@domain_app.command("add")
def domain_add(
    ctx: typer.Context,
    name: str,
    customer: Annotated[int, typer.Option("--customer", help="Customer id.")],
    instance: Annotated[int | None, typer.Option("--instance", help="Instance id.")] = None,
    valid_from: FromOpt = None,
    valid_to: ToOpt = None,
    reason: ReasonOpt = "",
) -> None:
    """Record that a customer's (instance) serves a domain from a moment on."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = inventory.create_domain(
            op,
            name,
            customer,
            instance_id=instance,
            valid_from=valid_from,
            valid_to=valid_to,
            reason=reason,
        )
    out.print(f"Domain record {row.id}: {row.name} → customer {row.customer_id}.")


@domain_app.command("list")
def domain_list(
    ctx: typer.Context,
    customer: Annotated[
        int | None, typer.Option("--customer", help="Only this customer's.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List domain records."""
    with state(ctx).runtime().reading() as session:
        rows = [DomainOut.of(r) for r in inventory.list_domains(session, customer_id=customer)]
    if as_json:
        _dump(rows)
        return
    table(
        "Domains",
        ["id", "name", "customer", "instance", "from", "to"],
        [
            [
                r.id,
                r.name,
                r.customer_id,
                r.instance_id,
                isoformat_or_none(r.valid_from),
                isoformat_or_none(r.valid_to) or "still holds",
            ]
            for r in rows
        ],
    )


@domain_app.command("release")
def domain_release(
    ctx: typer.Context, domain_id: int, at: AtOpt = None, reason: ReasonOpt = ""
) -> None:
    """End a domain record."""
    runtime = state(ctx).runtime()
    with runtime.operation(operator()) as op:
        row = inventory.release_domain(op, domain_id, at=at, reason=reason)
    out.print(f"Domain record {row.id} ended at {isoformat_or_none(row.valid_to)}.")
