"""The ``[cases]`` and ``[mail]`` sections: the abuse desk's intake, deadlines and the
SMTP relay its notifications leave through."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CasesSettings(_Section):
    #: Recipients the SMTP/LMTP intake accepts mail for (others are refused with 550).
    abuse_addresses: list[str] = Field(default_factory=lambda: ["abuse@localhost"])
    #: The SMTP (or LMTP) intake listener that ``serve`` starts when ``listen`` is on.
    listen: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(2525, ge=1, le=65535)
    lmtp: bool = False
    #: Largest report accepted by any intake path (mail, API, form, import).
    max_report_mb: int = Field(25, ge=1, le=512)
    #: A case with no new event and no action for this long is closed as idle.
    idle_close_days: int = Field(30, ge=1, le=3650)
    #: Language of customer notifications unless the person sending one picks another.
    customer_locale: Literal["en", "zh-CN"] = "zh-CN"
    #: Base of the links in notifications (the customer response page).
    public_url: str = "http://127.0.0.1:8080"
    #: Reports the public web form takes from one client address per hour.
    form_per_hour: int = Field(10, ge=1, le=10_000)
    #: An existing abuse mailbox polled over IMAP: ``imaps://host:993`` or
    #: ``imap://host:143`` (STARTTLS is used when the server offers it); empty: off.
    imap_url: str = ""
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = "INBOX"
    #: Taken messages are moved here (created if missing), so none is taken twice.
    imap_done_folder: str = "hostwarden-done"
    imap_poll_seconds: float = Field(60.0, gt=0, le=86400)
    #: Verify the server's certificate (turn off only for a server on loopback).
    imap_verify_tls: bool = True
    #: Acknowledge reporters by mail (a reporter allowlist entry may turn it off for one).
    acknowledge_reporters: bool = True

    @field_validator("abuse_addresses")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        cleaned = [a.strip().lower() for a in value if a.strip()]
        for address in cleaned:
            if "@" not in address:
                raise ValueError(f"{address!r} is not a mail address")
        return cleaned


class MailSettings(_Section):
    #: The SMTP relay outgoing mail goes through; empty: mail waits in the outbox.
    relay_host: str = ""
    relay_port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str = ""
    password: SecretStr = SecretStr("")
    from_address: str = "abuse@localhost"
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    #: Give up on a message after this many failed attempts (it stays, marked failed).
    max_attempts: int = Field(8, ge=1, le=100)
    #: First retry after this long; each later one waits twice as long (capped at 6 h).
    retry_seconds: float = Field(60.0, gt=0, le=86400)
