"""The change-feed endpoint: signed by HMAC instead of a bearer token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from hostwarden.api.deps import public, read_body, runtime_of
from hostwarden.core.runtime import Actor, Runtime
from hostwarden.errors import TooLarge
from hostwarden.registry import feed, webhooks

router = APIRouter(prefix="/api/v1/webhooks", tags=["change feed"])

#: Largest event body accepted; a real event is a few hundred bytes.
MAX_EVENT_BYTES = 64 * 1024


# Public to the token layer: the HMAC signature over the raw body is the authentication.
@router.post("/{source}", dependencies=[public()])
async def receive(source: str, request: Request) -> dict[str, Any]:
    """Apply one inventory event from a registered source (see docs/webhooks.md)."""
    runtime = runtime_of(request)
    body = await read_body(request, MAX_EVENT_BYTES, _too_large)
    header = request.headers.get(webhooks.SIGNATURE_HEADER, "")
    actor = Actor(f"webhook:{source}", ("system",), str(request.state.request_id))
    # Verifying reads the source's secret and delivering writes the inventory: database
    # work, so it runs in a worker thread, not on the event loop.
    return await run_in_threadpool(_apply, runtime, actor, source, header, body)


def _apply(runtime: Runtime, actor: Actor, source: str, header: str, body: bytes) -> Any:
    source_id = webhooks.verify(runtime, source, header, body)
    event = webhooks.parse_event(body)
    return webhooks.deliver(runtime, actor, source_id, event, feed.HANDLERS)


def _too_large() -> TooLarge:
    return TooLarge(
        f"a change-feed event is at most {MAX_EVENT_BYTES // 1024} KiB.",
        hint="Send one event per request; events carry ids and addresses, not documents.",
    )
