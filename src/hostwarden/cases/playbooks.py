"""Playbooks: per category, the customer's deadline, when a case escalates, what
escalation does by itself, and whether the desk must decide on reporting to authorities."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.cases.models import Playbook
from hostwarden.cases.parsers.base import CATEGORIES
from hostwarden.core.runtime import Operation
from hostwarden.core.timeutil import utcnow
from hostwarden.errors import ValidationFailed

ESCALATION_ACTIONS = ("none", "suspend")

#: English and Chinese names of the categories, for the console and notifications.
CATEGORY_LABELS: dict[str, tuple[str, str]] = {
    "spam": ("Spam", "垃圾邮件"),
    "phishing": ("Phishing", "网络钓鱼"),
    "malware": ("Malware / webshell", "恶意软件 / 挂马"),
    "ddos": ("DDoS", "DDoS 攻击"),
    "scanning": ("Scanning", "端口扫描"),
    "bruteforce": ("Brute force", "暴力破解"),
    "copyright": ("Copyright", "版权侵权"),
    "fraud": ("Fraud", "网络诈骗"),
    "gambling": ("Gambling", "网络赌博"),
    "illegal-content": ("Illegal content", "违法信息"),
    "data-leak": ("Personal-data leak", "个人信息泄露"),
    "unfiled-site": ("Unfiled site (未备案)", "未备案网站"),
    "other": ("Other", "其他"),
}


@dataclass(frozen=True)
class PlaybookRule:
    category: str
    deadline_hours: int
    escalate_after_events: int
    escalation_action: str
    authority_decision: bool
    auto_notify: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rule(
    category: str, hours: int, events: int, action: str, authority: bool, auto: bool
) -> PlaybookRule:
    return PlaybookRule(category, hours, events, action, authority, auto)


# Why these defaults: content that the law makes the provider stop at once (illegal
# content, gambling, fraud, phishing, malware, data leaks) gets a short deadline and a
# decision on reporting to the public-security authorities (网安); nuisance traffic
# (spam, scanning, brute force) gets a day and escalates on repetition.
DEFAULTS: dict[str, PlaybookRule] = {
    r.category: r
    for r in (
        _rule("spam", 24, 20, "none", False, False),
        _rule("phishing", 4, 3, "suspend", True, False),
        _rule("malware", 4, 3, "suspend", True, False),
        _rule("ddos", 2, 5, "suspend", False, False),
        _rule("scanning", 24, 20, "none", False, False),
        _rule("bruteforce", 24, 20, "none", False, False),
        _rule("copyright", 72, 5, "none", False, False),
        _rule("fraud", 4, 2, "suspend", True, False),
        _rule("gambling", 4, 2, "suspend", True, False),
        _rule("illegal-content", 1, 1, "suspend", True, False),
        _rule("data-leak", 4, 2, "none", True, False),
        _rule("unfiled-site", 24, 3, "suspend", False, False),
        _rule("other", 48, 10, "none", False, False),
    )
}
assert set(DEFAULTS) == set(CATEGORIES)


def _from_row(row: Playbook) -> PlaybookRule:
    return PlaybookRule(
        row.category,
        row.deadline_hours,
        row.escalate_after_events,
        row.escalation_action,
        row.authority_decision,
        row.auto_notify,
    )


def all_playbooks(session: Session) -> dict[str, PlaybookRule]:
    """Every category's playbook: the stored one, else the default."""
    rules = dict(DEFAULTS)
    for row in session.scalars(select(Playbook)):
        rules[row.category] = _from_row(row)
    return rules


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise ValidationFailed(
            f"{category!r} is not a category.", hint=f"Use one of: {', '.join(CATEGORIES)}."
        )
    return category


def set_playbook(
    op: Operation,
    category: str,
    *,
    deadline_hours: int,
    escalate_after_events: int,
    escalation_action: str,
    authority_decision: bool,
    auto_notify: bool,
    reason: str = "",
) -> PlaybookRule:
    check_category(category)
    if not 1 <= deadline_hours <= 24 * 90:
        raise ValidationFailed(
            f"deadline of {deadline_hours} hours is out of range.", hint="Use 1 to 2160 hours."
        )
    if not 1 <= escalate_after_events <= 1_000_000:
        raise ValidationFailed(
            f"escalation after {escalate_after_events} events is out of range.",
            hint="Use 1 or more events.",
        )
    if escalation_action not in ESCALATION_ACTIONS:
        raise ValidationFailed(
            f"{escalation_action!r} is not an escalation action.",
            hint=f"Use one of: {', '.join(ESCALATION_ACTIONS)}.",
        )
    before = all_playbooks(op.session)[category]
    row = op.session.get(Playbook, category)
    if row is None:
        row = Playbook(category=category)
        op.session.add(row)
    row.deadline_hours = deadline_hours
    row.escalate_after_events = escalate_after_events
    row.escalation_action = escalation_action
    row.authority_decision = authority_decision
    row.auto_notify = auto_notify
    row.updated_by = op.actor.name
    row.updated_at = utcnow()
    after = _from_row(row)
    op.audit(
        "playbook.set",
        "playbook",
        category,
        before=before.as_dict(),
        after=after.as_dict(),
        reason=reason,
    )
    return after
