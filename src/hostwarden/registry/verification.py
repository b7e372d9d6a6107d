"""Identity verification: the provider protocol, the built-in providers and the review queue.

Providers are plugins found through the ``hostwarden.identity_providers`` entry-point
group; the built-ins (``manual`` and ``http``) are registered the same way in
pyproject.toml. A provider gets a snapshot of the customer and their documents (full
numbers: verifying them is its job) and answers pending, approved, rejected or error.

The ``http`` provider reads at call time:

- ``HOSTWARDEN_IDV_HTTP_URL``: where to POST (https, or http to a loopback address only);
- ``HOSTWARDEN_IDV_HTTP_TOKEN``: sent as ``Authorization: Bearer …`` when set;
- ``HOSTWARDEN_IDV_HTTP_TIMEOUT``: seconds to wait for the answer (default 10).

A person's approval follows the four-eyes rule (``registry.four_eyes_verification``, on by
default): whoever requested the verification or created the customer may not approve it.
Rejecting is not restricted: it grants nothing, and lets the requester withdraw a request
made by mistake.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.config import Settings
from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Actor, Operation, Runtime
from hostwarden.core.timeutil import utcnow
from hostwarden.errors import Conflict, HostwardenError, NotFound, ValidationFailed
from hostwarden.registry import customers
from hostwarden.registry.models import Customer, VerificationRequest

PROVIDER_GROUP = "hostwarden.identity_providers"
ProviderStatus = Literal["pending", "approved", "rejected", "error"]
PROVIDER_STATUSES: tuple[ProviderStatus, ...] = ("pending", "approved", "rejected", "error")
DEFAULT_HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Applicant:
    """What a provider is told about the customer behind verification request ``request_id``."""

    request_id: int
    customer_id: int
    kind: str
    name: str
    email: str
    phone: str
    address: str


@dataclass(frozen=True)
class DocumentForCheck:
    doc_type: str
    type_name: str
    number: str


@dataclass(frozen=True)
class ProviderResult:
    status: ProviderStatus
    reference: str = ""
    reason: str = ""


class IdentityProvider(Protocol):
    """One way of verifying identity. ``submit`` must not raise for the provider's own
    failures: it answers status ``error`` with a reason instead."""

    def submit(
        self, runtime: Runtime, applicant: Applicant, documents: list[DocumentForCheck]
    ) -> ProviderResult: ...


class ProviderUnavailable(HostwardenError):
    code = "provider-unavailable"
    title = "Identity provider unavailable"
    status = 500


class FourEyesRequired(Conflict):
    code = "four-eyes-required"
    title = "Another reviewer must approve"


def available_providers() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=PROVIDER_GROUP)})


def load_provider(name: str) -> IdentityProvider:
    """Instantiate the provider registered under ``name``."""
    found = [ep for ep in entry_points(group=PROVIDER_GROUP) if ep.name == name]
    if not found:
        known = ", ".join(available_providers()) or "none installed"
        raise ValidationFailed(
            f"'{name}' is not an identity verification provider.", hint=f"Use one of: {known}."
        )
    try:
        factory = found[0].load()
        provider = factory()
    except Exception as exc:
        raise ProviderUnavailable(
            f"identity provider '{name}' ({found[0].value}) cannot be loaded: "
            f"{exc.__class__.__name__}: {exc}.",
            hint="Reinstall the package that provides it, or choose another provider.",
        ) from exc
    if not callable(getattr(provider, "submit", None)):
        raise ProviderUnavailable(
            f"identity provider '{name}' ({found[0].value}) has no submit method.",
            hint="An identity provider implements hostwarden.registry.verification."
            "IdentityProvider.",
        )
    return cast(IdentityProvider, provider)


# --- built-in providers -----------------------------------------------------------------


class ManualProvider:
    """A person checks the documents: the request waits in the review queue."""

    def submit(
        self, runtime: Runtime, applicant: Applicant, documents: list[DocumentForCheck]
    ) -> ProviderResult:
        return ProviderResult("pending", "", "waiting in the review queue")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpProvider:
    """POSTs the applicant and documents as JSON to a verification service and maps its
    answer ``{"status": "approved"|"rejected"|"pending", "reference": …, "reason": …}``.
    The constructor arguments, when given, win over the environment (tests use them)."""

    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float | None = None
    ) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout

    def _settings(self) -> tuple[str, str, float] | ProviderResult:
        url = self._url or os.environ.get("HOSTWARDEN_IDV_HTTP_URL", "")
        token = self._token or os.environ.get("HOSTWARDEN_IDV_HTTP_TOKEN", "")
        if not url:
            return ProviderResult("error", "", "HOSTWARDEN_IDV_HTTP_URL is not set.")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return ProviderResult("error", "", f"HOSTWARDEN_IDV_HTTP_URL '{url}' is not a URL.")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            return ProviderResult(
                "error",
                "",
                "ID numbers are only sent over https (plain http only to a loopback address).",
            )
        timeout = self._timeout
        if timeout is None:
            raw = os.environ.get("HOSTWARDEN_IDV_HTTP_TIMEOUT", "")
            try:
                timeout = float(raw) if raw else DEFAULT_HTTP_TIMEOUT
            except ValueError:
                return ProviderResult(
                    "error", "", f"HOSTWARDEN_IDV_HTTP_TIMEOUT '{raw}' is not a number of seconds."
                )
        return url, token, timeout

    def submit(
        self, runtime: Runtime, applicant: Applicant, documents: list[DocumentForCheck]
    ) -> ProviderResult:
        settings = self._settings()
        if isinstance(settings, ProviderResult):
            return settings
        url, token, timeout = settings
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = {"applicant": asdict(applicant), "documents": [asdict(d) for d in documents]}
        try:
            response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return ProviderResult("error", "", f"the service did not answer within {timeout:g} s.")
        except httpx.HTTPError as exc:
            return ProviderResult(
                "error", "", f"cannot reach the service: {exc.__class__.__name__}: {exc}"
            )
        if not response.is_success:
            return ProviderResult("error", "", f"the service answered HTTP {response.status_code}.")
        try:
            answer: Any = response.json()
        except ValueError:
            return ProviderResult("error", "", "the service's answer is not JSON.")
        if not isinstance(answer, dict):
            return ProviderResult("error", "", "the service's answer is not a JSON object.")
        status = answer.get("status")
        if status not in ("approved", "rejected", "pending"):
            return ProviderResult(
                "error", "", f"the service answered an unknown status {status!r}."
            )
        return ProviderResult(
            cast(ProviderStatus, status),
            str(answer.get("reference") or "")[:200],
            str(answer.get("reason") or ""),
        )


# --- requests and decisions -------------------------------------------------------------


def get_request(session: Session, request_id: int) -> VerificationRequest:
    request = session.get(VerificationRequest, request_id)
    if request is None:
        raise NotFound(
            f"no verification request with id {request_id}.", hint="List the review queue."
        )
    return request


def list_requests(
    session: Session, *, status: str | None = "pending", customer_id: int | None = None
) -> list[VerificationRequest]:
    query = select(VerificationRequest).order_by(VerificationRequest.id)
    if status:
        if status not in PROVIDER_STATUSES:
            raise ValidationFailed(
                f"'{status}' is not a verification status.",
                hint=f"Use one of: {', '.join(PROVIDER_STATUSES)}.",
            )
        query = query.where(VerificationRequest.status == status)
    if customer_id is not None:
        query = query.where(VerificationRequest.customer_id == customer_id)
    return list(session.scalars(query))


def _open_request(
    op: Operation, customer_id: int, provider: str
) -> tuple[VerificationRequest, Applicant, list[DocumentForCheck]]:
    customer = customers.get_customer(op.session, customer_id)
    if customer.status == "terminated":
        raise Conflict(f"customer {customer.id} is terminated.", hint="Nothing to verify.")
    pending = op.session.scalar(
        select(VerificationRequest.id).where(
            VerificationRequest.customer_id == customer.id,
            VerificationRequest.status == "pending",
        )
    )
    if pending is not None:
        raise Conflict(
            f"customer {customer.id} already has verification request {pending} pending.",
            hint="Approve or reject it first.",
        )
    stored = customers.list_documents(op.session, customer.id)
    if not stored:
        raise ValidationFailed(
            f"customer {customer.id} has no identity document to verify.",
            hint="Add an identity document first.",
        )
    vault = op.runtime.vault
    request = VerificationRequest(
        customer_id=customer.id,
        provider=provider,
        status="pending",
        requested_by=op.actor.name[:200],
    )
    op.session.add(request)
    op.session.flush()
    before = customer.identity_status
    if customer.identity_status != "verified":
        customer.identity_status = "pending"
    op.audit(
        "verification.submit",
        "verification_request",
        request.id,
        before={"identity_status": before},
        after={
            "customer_id": customer.id,
            "provider": provider,
            "documents": [d.id for d in stored],
            "identity_status": customer.identity_status,
        },
    )
    phone = vault.decrypt(customers.PHONE_FIELD, customer.phone_enc) if customer.phone_enc else ""
    applicant = Applicant(
        request.id,
        customer.id,
        customer.kind,
        customer.name,
        customer.email,
        phone,
        customer.address,
    )
    documents = [
        DocumentForCheck(
            d.doc_type, d.other_type, vault.decrypt(customers.ID_NUMBER_FIELD, d.number_enc)
        )
        for d in stored
    ]
    return request, applicant, documents


def request_verification(
    runtime: Runtime, actor: Actor, customer_id: int, provider: str = "manual"
) -> VerificationRequest:
    """Open a verification request and hand it to ``provider``. The provider is called
    between two units of work, so a slow service holds no database transaction; whatever
    it does (answers, fails, raises) ends up recorded on the request."""
    plugin = load_provider(provider)
    with runtime.operation(actor) as op:
        request, applicant, documents = _open_request(op, customer_id, provider)
        request_id = request.id
    try:
        result = plugin.submit(runtime, applicant, documents)
        if result.status not in PROVIDER_STATUSES:
            result = ProviderResult("error", "", f"the provider answered {result.status!r}.")
    except Exception as exc:  # a plugin's bug must not lose the request
        result = ProviderResult(
            "error", "", f"the provider failed: {exc.__class__.__name__}: {exc}"
        )
    with runtime.operation(actor) as op:
        return _record(op, request_id, result)


def _record(op: Operation, request_id: int, result: ProviderResult) -> VerificationRequest:
    request = get_request(op.session, request_id)
    by = f"provider:{request.provider}"
    if result.status in ("approved", "rejected"):
        request.provider_reference = result.reference
        return _decide(op, request, result.status, result.reason, by)
    if result.status == "error":
        request.provider_reference = result.reference
        return _decide(op, request, "error", result.reason, by)
    if result.reference and result.reference != request.provider_reference:
        request.provider_reference = result.reference
        op.audit(
            "verification.reference",
            "verification_request",
            request.id,
            after={"provider_reference": result.reference},
        )
    return request


def _decide(
    op: Operation, request: VerificationRequest, outcome: ProviderStatus, reason: str, by: str
) -> VerificationRequest:
    if request.status != "pending":
        raise Conflict(
            f"verification request {request.id} is already {request.status}.",
            hint="Open a new request to verify again.",
        )
    customer = customers.get_customer(op.session, request.customer_id)
    before = {"status": request.status, "identity_status": customer.identity_status}
    request.status = outcome
    request.reason = reason
    request.decided_at = utcnow()
    request.decided_by = by
    if outcome == "approved":
        customer.identity_status = "verified"
    elif outcome == "rejected":
        customer.identity_status = "rejected"
    elif customer.identity_status == "pending":  # error: as if never asked
        customer.identity_status = "unverified"
    op.audit(
        f"verification.{outcome}",
        "verification_request",
        request.id,
        before=before,
        after={
            "status": outcome,
            "identity_status": customer.identity_status,
            "customer_id": customer.id,
            "decided_by": by,
        },
        reason=reason,
    )
    if outcome == "approved":
        customers.screen(op, customer.id)
    return request


def four_eyes_conflict(
    settings: Settings, request: VerificationRequest, customer: Customer, reviewer: str
) -> str:
    """What ``reviewer`` did that bars them from approving ``request`` under the four-eyes
    rule ("requested this verification", …), or "" when they may approve it."""
    if not settings.registry.four_eyes_verification:
        return ""
    done = []
    if request.requested_by == reviewer:
        done.append("requested this verification")
    if customer.created_by == reviewer:
        done.append(f"created customer {customer.id}")
    return " and ".join(done)


def approve(op: Operation, request_id: int, reason: str) -> VerificationRequest:
    """A reviewer accepts the identity: the customer becomes verified and is screened.
    The reviewer must be another person than whoever requested it or created the customer."""
    customers.require_permission(op, Perm.KYC_REVIEW, "approving identity verification")
    why = customers.required_reason(reason, "approving identity verification")
    request = get_request(op.session, request_id)
    if request.status == "pending":  # otherwise _decide says it is already decided
        customer = customers.get_customer(op.session, request.customer_id)
        done = four_eyes_conflict(op.runtime.settings, request, customer, op.actor.name)
        if done:
            raise FourEyesRequired(
                f"you ({op.actor.name}) {done}; the same person may not also approve "
                f"verification request {request.id}.",
                hint="Another reviewer must approve: identity verification needs four eyes.",
            )
    return _decide(op, request, "approved", why, op.actor.name)


def reject(op: Operation, request_id: int, reason: str) -> VerificationRequest:
    customers.require_permission(op, Perm.KYC_REVIEW, "rejecting identity verification")
    why = customers.required_reason(reason, "rejecting identity verification")
    return _decide(op, get_request(op.session, request_id), "rejected", why, op.actor.name)
