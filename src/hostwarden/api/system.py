"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from hostwarden import __version__
from hostwarden.api.deps import public, runtime_of
from hostwarden.core import migrate
from hostwarden.core.models import AuditEntry, User
from hostwarden.core.runtime import Runtime
from hostwarden.errors import HostwardenError

router = APIRouter(tags=["system"])


@router.get("/healthz", dependencies=[public()])
def healthz() -> dict[str, str]:
    """The process answers. Says nothing about the database: see /readyz."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", dependencies=[public()], responses={503: {"description": "not ready"}})
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and its schema is at the newest migration."""
    runtime = runtime_of(request)
    checks: dict[str, str] = {}
    try:
        runtime.db.ping()
        checks["database"] = "ok"
        current = migrate.current_revision(runtime.db.engine)
        head = migrate.head_revision()
        checks["migrations"] = (
            "ok"
            if current == head
            else f"at {current or 'none'}, newest is {head}: run `hostwarden db upgrade`"
        )
    except HostwardenError as exc:
        checks["database"] = str(exc)
    except Exception as exc:  # any driver error means "not ready", with its text
        checks["database"] = f"error: {exc.__class__.__name__}: {exc}"
    ready = all(v == "ok" for v in checks.values()) and "migrations" in checks
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


class DomainCollector(Collector):
    """Figures read from the database at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        from hostwarden.cases.service import sla_by_category

        yield InfoMetricFamily(
            "hostwarden_build", "Version of hostwarden.", value={"version": __version__}
        )
        try:
            with self.runtime.reading() as session:
                entries = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
                users = (
                    session.scalar(
                        select(func.count()).select_from(User).where(User.is_active.is_(True))
                    )
                    or 0
                )
                sla = sla_by_category(session)
        except Exception:  # the database being down must not break the scrape
            return
        yield GaugeMetricFamily(
            "hostwarden_audit_entries", "Entries in the audit trail.", value=entries
        )
        yield GaugeMetricFamily("hostwarden_users_active", "Active user accounts.", value=users)
        yield from _sla_metrics(sla)


def _sla_metrics(rows: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    """The abuse desk's SLA per category (cases.service.sla_by_category)."""
    families = {
        "cases": GaugeMetricFamily(
            "hostwarden_cases", "Abuse cases per category.", labels=["category"]
        ),
        "open": GaugeMetricFamily(
            "hostwarden_cases_open", "Open abuse cases per category.", labels=["category"]
        ),
        "first_action_seconds": GaugeMetricFamily(
            "hostwarden_case_first_action_seconds",
            "Mean seconds from a case opening to the desk's first action.",
            labels=["category"],
        ),
        "mitigation_seconds": GaugeMetricFamily(
            "hostwarden_case_mitigation_seconds",
            "Mean seconds from a case opening to the abuse being stopped.",
            labels=["category"],
        ),
    }
    for row in rows:
        for key, family in families.items():
            if row[key] is not None:
                family.add_metric([row["category"]], float(row[key]))
    yield from families.values()


@router.get("/metrics", dependencies=[public()], response_class=Response)
def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
