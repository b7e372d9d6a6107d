"""Roles and what each may do: the single table every permission check reads."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    SALES = "sales"
    ABUSE = "abuse"
    NOC = "noc"
    COMPLIANCE = "compliance"
    LEGAL = "legal"
    AUDITOR = "auditor"


ROLE_LABELS: dict[Role, tuple[str, str]] = {
    Role.ADMIN: ("Administrator", "管理员"),
    Role.SALES: ("Sales / onboarding", "销售 / 客户准入"),
    Role.ABUSE: ("Abuse desk", "滥用投诉处理"),
    Role.NOC: ("Security / NOC", "安全 / 网络运维"),
    Role.COMPLIANCE: ("Compliance officer", "合规专员"),
    Role.LEGAL: ("Legal", "法务"),
    Role.AUDITOR: ("Auditor (read-only)", "审计员（只读）"),
}


class Perm(StrEnum):
    CONSOLE_VIEW = "console:view"
    #: Change one's own password and language: every signed-in person, auditors included.
    ACCOUNT_SELF = "account:self"
    #: Create and revoke one's own API tokens (auditors get theirs from an admin).
    TOKENS_OWN = "tokens:own"
    TOKENS_ADMIN = "tokens:admin"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    AUDIT_READ = "audit:read"
    #: Customers (masked), inventory, attribution: everyone who works a case needs them.
    REGISTRY_READ = "registry:read"
    #: Full ID numbers and phone numbers; every full view is audited.
    PII_VIEW = "pii:view"
    CUSTOMERS_WRITE = "customers:write"
    #: Approve or reject identity verification; accept a number that fails validation.
    KYC_REVIEW = "kyc:review"
    COMMITMENTS_PUBLISH = "commitments:publish"
    PROVISIONING_CHECK = "provisioning:check"
    INVENTORY_WRITE = "inventory:write"
    WEBHOOKS_ADMIN = "webhooks:admin"
    #: See and place/release legal holds that keep flow and log records past retention.
    LEGAL_HOLDS_READ = "legal_holds:read"
    LEGAL_HOLDS_WRITE = "legal_holds:write"
    #: Stored flow and log records (queries, top talkers, time series): the people who
    #: investigate abuse or answer the authorities, not sales.
    FLOWS_READ = "flows:read"
    #: Run an integrity check of the flow/log store (hashes every segment; recorded).
    LOGS_VERIFY = "logs:verify"
    #: Detection alerts and suppressions: see them; close them and give feedback; add
    #: and remove suppressions (which keep findings from becoming alerts).
    ALERTS_READ = "alerts:read"
    ALERTS_WRITE = "alerts:write"
    SUPPRESSIONS_WRITE = "suppressions:write"
    #: Abuse cases, reports and their queues: see them; act on cases (notify, notes,
    #: state, the decision on reporting to authorities); change playbooks and allowlists.
    CASES_READ = "cases:read"
    CASES_WRITE = "cases:write"
    CASES_ADMIN = "cases:admin"
    #: Send abuse reports through the API (partners' and feeds' tokens get only this).
    REPORTS_SUBMIT = "reports:submit"


_READ_ALL = {
    Perm.CONSOLE_VIEW,
    Perm.ACCOUNT_SELF,
    Perm.USERS_READ,
    Perm.AUDIT_READ,
    Perm.REGISTRY_READ,
    Perm.LEGAL_HOLDS_READ,
    Perm.FLOWS_READ,
    Perm.ALERTS_READ,
    Perm.CASES_READ,
}
_STAFF = {Perm.CONSOLE_VIEW, Perm.ACCOUNT_SELF, Perm.TOKENS_OWN, Perm.REGISTRY_READ}

_COMPLIANCE = {
    Perm.AUDIT_READ,
    Perm.PII_VIEW,
    Perm.COMMITMENTS_PUBLISH,
    Perm.LEGAL_HOLDS_READ,
    Perm.LEGAL_HOLDS_WRITE,
    Perm.FLOWS_READ,
    Perm.LOGS_VERIFY,
    Perm.ALERTS_READ,
    Perm.CASES_READ,
    Perm.CASES_WRITE,
}
#: Those who act on what detection finds: the abuse desk and the NOC.
_RESPONDERS = {
    Perm.FLOWS_READ,
    Perm.ALERTS_READ,
    Perm.ALERTS_WRITE,
    Perm.SUPPRESSIONS_WRITE,
    Perm.CASES_READ,
    Perm.CASES_WRITE,
    Perm.REPORTS_SUBMIT,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.ADMIN: frozenset(Perm),
    Role.SALES: frozenset(
        _STAFF
        | {
            Perm.PII_VIEW,
            Perm.CUSTOMERS_WRITE,
            Perm.KYC_REVIEW,
            Perm.PROVISIONING_CHECK,
            Perm.INVENTORY_WRITE,
        }
    ),
    Role.ABUSE: frozenset(_STAFF | _RESPONDERS | {Perm.CASES_ADMIN}),
    Role.NOC: frozenset(_STAFF | _RESPONDERS | {Perm.INVENTORY_WRITE, Perm.LOGS_VERIFY}),
    Role.COMPLIANCE: frozenset(_STAFF | _COMPLIANCE),
    Role.LEGAL: frozenset(_STAFF | _COMPLIANCE),
    # Read-only everywhere: every *:read permission and nothing that changes state,
    # except the person's own password and language.
    Role.AUDITOR: frozenset(_READ_ALL),
}


def parse_roles(values: Iterable[str]) -> list[Role]:
    """Validate role names; raises ValidationFailed naming the unknown one."""
    from hostwarden.errors import ValidationFailed

    roles: set[Role] = set()
    for raw in values:
        for name in str(raw).split(","):
            name = name.strip().lower()
            if not name:
                continue
            try:
                roles.add(Role(name))
            except ValueError:
                known = ", ".join(r.value for r in Role)
                raise ValidationFailed(
                    f"'{name}' is not a role.", hint=f"Use one or more of: {known}."
                ) from None
    if not roles:
        raise ValidationFailed("at least one role is needed.", hint="For example --role abuse.")
    return sorted(roles, key=lambda r: list(Role).index(r))


def permissions_for(roles: Iterable[str]) -> frozenset[Perm]:
    granted: set[Perm] = set()
    for name in roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(name)]
        except ValueError:
            continue  # a role removed from the code grants nothing
    return frozenset(granted)
