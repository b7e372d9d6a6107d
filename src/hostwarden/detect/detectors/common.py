"""Pieces the built-in detectors share: port sets as lookup tables, and a finding about
one provider-side address filled from a row of the frame."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.config_detect import Severity
from hostwarden.detect.findings import Finding, address_text, held, number
from hostwarden.detect.frame import Frame, Groups, top_per_group

#: Ports are uint16: a 65,536-entry table answers "is this port in the set" for a whole
#: column with one gather, cheaper than ``np.isin`` for any set size.
PORTS = 65536


def port_set(ports: Iterable[int]) -> NDArray[np.bool_]:
    table = np.zeros(PORTS, dtype=bool)
    table[[p for p in ports if 0 <= p < PORTS]] = True
    return table


def port_codes(codes: Mapping[int, int]) -> NDArray[np.int16]:
    """Port → small code (-1: none) as a lookup table."""
    table = np.full(PORTS, -1, dtype=np.int16)
    for port, code in codes.items():
        if 0 <= port < PORTS:
            table[port] = code
    return table


def packets_per_record(frame: Frame) -> NDArray[np.uint64]:
    """Packets a record saw before sampling scaled it (1:100 → one sampled packet is 1)."""
    per: NDArray[np.uint64] = frame["packets"] // np.maximum(frame["sampling"], 1).astype(np.uint64)
    return per


def about_local(
    frame: Frame,
    row: int,
    *,
    category: str,
    severity: Severity,
    direction: str,
    kind: str,
    summary: str,
    counts: dict[str, float],
    top_peers: list[dict[str, Any]] | None = None,
    top_ports: list[dict[str, Any]] | None = None,
) -> Finding:
    """A finding about the provider-side address of ``row`` and who held it."""
    return Finding(
        category=category,
        severity=severity,
        ip=local_ip(frame, row),
        direction=direction,
        window_start_ms=frame.start_ms,
        window_seconds=frame.seconds,
        customer_id=held(frame["customer_id"][row]),
        instance_id=held(frame["instance_id"][row]),
        kind=kind,
        summary=summary,
        counts=counts,
        top_peers=top_peers or [],
        top_ports=top_ports or [],
    )


def local_ip(frame: Frame, row: int) -> str:
    return address_text(frame["local_hi"][row], frame["local_lo"][row])


def top_remotes(
    frame: Frame,
    groups: Groups,
    wanted: NDArray[np.intp],
    mask: NDArray[np.bool_],
    weight: str = "flows",
    k: int = 10,
) -> dict[int, list[dict[str, Any]]]:
    """Per wanted group, its heaviest remote addresses (by ``weight``, a frame column)."""
    tops = top_per_group(
        groups, wanted, [frame["remote_hi"], frame["remote_lo"]], frame[weight], k, mask
    )
    return {
        g: [{"ip": address_text(*key), weight: number(w)} for key, w in peers]
        for g, peers in tops.items()
    }


def top_remote_ports(
    frame: Frame,
    groups: Groups,
    wanted: NDArray[np.intp],
    mask: NDArray[np.bool_],
    weight: str = "flows",
    k: int = 10,
) -> dict[int, list[dict[str, Any]]]:
    tops = top_per_group(groups, wanted, [frame["remote_port"]], frame[weight], k, mask)
    return {
        g: [{"port": key[0], weight: number(w)} for key, w in ports] for g, ports in tops.items()
    }


def ranked(
    owner: NDArray[np.intp], weight: NDArray[Any], owners: int, k: int | None = None
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices of ``owner`` (values 0 … owners - 1) ordered by owner and, within one,
    heaviest ``weight`` first (ties in index order), at most ``k`` per owner: owner o's
    are ``order[bounds[o]:bounds[o + 1]]``. One sort for all alerting groups, so the
    loop that builds their findings only slices."""
    order = np.lexsort((-np.asarray(weight, dtype=np.float64), owner))
    if k is not None and len(order):
        ordered = owner[order]
        rank = np.arange(len(order)) - np.searchsorted(ordered, ordered, "left")
        order = order[rank < k]
    bounds = np.searchsorted(owner[order], np.arange(owners + 1), "left")
    return order, bounds


def megabytes(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"
