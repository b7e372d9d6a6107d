"""The SMTP/LMTP listener that takes abuse mail for the configured abuse addresses.

A message is answered 250 only after it is stored and recorded, so the sending server
keeps it (and retries) until then: a temporary failure here answers 451 and loses
nothing. A message over ``[cases] max_report_mb`` is refused with 552 and a reason the
sender's bounce shows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from hostwarden.cases import service
from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Runtime
from hostwarden.errors import HostwardenError, TooLarge

log = get_logger("hostwarden.cases.smtp")


class ReportHandler:
    """aiosmtpd handler: checks recipients, then takes the message in as a report."""

    def __init__(self, runtime: Runtime, channel: str) -> None:
        self.runtime = runtime
        self.channel = channel
        self.accepted = set(runtime.settings.cases.abuse_addresses)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() not in self.accepted:
            return f"550 5.1.1 <{address}>: not an abuse address of this desk"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()
        try:
            # The database work runs off the listener's loop, so one slow report does
            # not stall other connections.
            result = await loop.run_in_executor(None, self._receive, raw, envelope.mail_from)
            status = f"250 2.0.0 report {result.report_id} accepted ({result.status})"
        except TooLarge as exc:
            status = f"552 5.3.4 {exc.message}"
        except HostwardenError as exc:
            log.error("cases.smtp_failed", error=str(exc), peer=str(session.peer))
            status = f"451 4.3.0 report not stored, try again later: {exc.message}"
        except Exception as exc:  # any other failure must still answer the sender
            log.exception("cases.smtp_failed", peer=str(session.peer))
            status = f"451 4.3.0 report not stored, try again later ({exc.__class__.__name__})"
        if self.channel == "lmtp":
            # LMTP answers once per recipient (RFC 2033 §4.2).
            return "\r\n".join(status for _ in envelope.rcpt_tos)
        return status

    def _receive(self, raw: bytes, mail_from: str | None) -> service.ReceiveResult:
        return service.receive(
            self.runtime, raw, channel=self.channel, envelope_from=mail_from or ""
        )


class _LmtpController(Controller):
    def factory(self) -> Any:
        return LMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class Listener:
    controller: Controller
    where: str

    def stop(self) -> None:
        self.controller.stop()


def start(runtime: Runtime, *, port: int | None = None) -> Listener:
    """Start the intake listener in its own thread (on ``port`` instead of the
    configured one when given)."""
    settings = runtime.settings.cases
    channel = "lmtp" if settings.lmtp else "smtp"
    handler = ReportHandler(runtime, channel)
    limit = settings.max_report_mb * 1024 * 1024
    kind = _LmtpController if settings.lmtp else Controller
    controller = kind(
        handler,
        hostname=settings.smtp_host,
        port=settings.smtp_port if port is None else port,
        data_size_limit=limit,
        enable_SMTPUTF8=True,
        ident="hostwarden abuse intake",
    )
    controller.start()
    where = f"{channel}://{settings.smtp_host}:{controller.port}"
    log.info("cases.smtp_listening", where=where)
    return Listener(controller, where)
