"""The change-feed endpoint: signed by HMAC instead of a bearer token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hostwarden.api.deps import public, runtime_of
from hostwarden.core.runtime import Actor
from hostwarden.registry import feed, webhooks

router = APIRouter(prefix="/api/v1/webhooks", tags=["change feed"])


# Public to the token layer: the HMAC signature over the raw body is the authentication.
@router.post("/{source}", dependencies=[public()])
async def receive(source: str, request: Request) -> dict[str, Any]:
    """Apply one inventory event from a registered source (see docs/webhooks.md)."""
    runtime = runtime_of(request)
    body = await request.body()
    header = request.headers.get(webhooks.SIGNATURE_HEADER, "")
    source_id = webhooks.verify(runtime, source, header, body)
    event = webhooks.parse_event(body)
    actor = Actor(f"webhook:{source}", ("system",), str(request.state.request_id))
    return webhooks.deliver(runtime, actor, source_id, event, feed.HANDLERS)
