"""Scheduled work of the abuse desk: deadlines and idle cases, and the outgoing mail."""

from __future__ import annotations

from hostwarden.cases import detections, intake_imap, notify, service
from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime
from hostwarden.core.scheduler import JobSpec


def deadlines_job(runtime: Runtime) -> dict[str, int]:
    return service.run_deadlines(runtime)


def mail_job(runtime: Runtime) -> dict[str, int]:
    return notify.send_due(runtime).as_dict()


def imap_job(runtime: Runtime) -> dict[str, int]:
    return intake_imap.poll(runtime)


def detections_job(runtime: Runtime) -> dict[str, int]:
    return detections.take_alerts(runtime)


def jobs(settings: Settings) -> list[JobSpec]:
    """The ``hostwarden.jobs`` entry point of the abuse desk."""
    found = [
        JobSpec(
            "cases.detections",
            detections_job,
            60.0,
            "Turns new outbound detection alerts into case events.",
        ),
        JobSpec(
            "cases.deadlines",
            deadlines_job,
            60.0,
            "Escalates cases past the customer's deadline and closes idle ones.",
        ),
        JobSpec(
            "mail.send",
            mail_job,
            30.0,
            "Sends queued notifications through the SMTP relay, with retries.",
        ),
    ]
    if settings.cases.imap_url:
        found.append(
            JobSpec(
                "cases.imap",
                imap_job,
                settings.cases.imap_poll_seconds,
                "Takes new reports from the abuse mailbox over IMAP.",
            )
        )
    return found
