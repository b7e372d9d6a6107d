"""The FastAPI application factory: API, console, health and metrics in one app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from hostwarden import __version__
from hostwarden.api import problems, system
from hostwarden.api.middleware import HttpMetrics, RequestContextMiddleware
from hostwarden.core import api as core_api
from hostwarden.core.runtime import Runtime
from hostwarden.flows.collector import CollectorMetrics

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def routers() -> list[APIRouter]:
    """Every router the app serves; a domain package adds its API and console routers here."""
    from hostwarden.cases import api as cases_api
    from hostwarden.cases import web as cases_web
    from hostwarden.detect import api_alerts
    from hostwarden.detect import web as detect_web
    from hostwarden.flows import api_flows, api_holds
    from hostwarden.flows import web as flows_web
    from hostwarden.registry import (
        api_admission,
        api_bulk,
        api_customers,
        api_inventory,
        api_webhooks,
    )
    from hostwarden.registry import web as registry_web
    from hostwarden.web import routes as web_routes

    # Starlette tries routes in this order: the hottest API route goes first.
    return [
        system.router,
        api_inventory.attribution_router,
        core_api.users,
        core_api.tokens,
        core_api.audit_router,
        api_admission.provisioning,
        api_admission.letters,
        api_customers.customers_router,
        api_customers.verification_router,
        api_customers.flags_router,
        api_inventory.inventory_router,
        api_webhooks.router,
        api_bulk.router,
        api_holds.router,
        api_flows.router,
        api_alerts.alerts_router,
        api_alerts.suppressions_router,
        cases_api.reports_router,
        cases_api.cases_router,
        cases_api.settings_router,
        registry_web.router,
        flows_web.router,
        detect_web.router,
        cases_web.router,
        web_routes.router,
    ]


def api_routes(app: FastAPI) -> list[APIRoute]:
    """The app's routes, flattened. FastAPI before 0.120 copies included routes into
    ``app.routes``; newer releases keep one entry per included router instead."""
    found: list[APIRoute] = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.append(route)
        router = getattr(route, "original_router", None)
        if router is not None:
            found.extend(r for r in router.routes if isinstance(r, APIRoute))
    return found


def create_app(runtime: Runtime, *, run_scheduler: bool = False) -> FastAPI:
    """Build the app around an open runtime. ``run_scheduler`` starts the job scheduler
    (leader-elected) with the app; tests and extra API replicas leave it off."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if run_scheduler and runtime.settings.scheduler.enabled:
            from hostwarden.core.scheduler import Scheduler

            scheduler = Scheduler(runtime)
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown()

    app = FastAPI(
        title="hostwarden",
        version=__version__,
        description="Compliance and abuse-response API of a hosting provider.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        redoc_url=None,
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    registry.register(system.DomainCollector(runtime))
    registry.register(CollectorMetrics(runtime.settings))
    app.state.runtime = runtime
    app.state.metrics_registry = registry
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(registry))
    problems.install(app)
    for router in routers():
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
