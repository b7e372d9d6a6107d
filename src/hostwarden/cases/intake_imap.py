"""The IMAP(S) poller that takes reports from an existing abuse mailbox into the desk."""

# The standard library's imaplib is enough here: one short blocking session per poll, run
# by the scheduler off any event loop, using a handful of commands (AUTHENTICATE or LOGIN,
# SELECT, UID SEARCH/FETCH/MOVE/COPY/STORE/EXPUNGE, LIST, CREATE). A third-party client
# would be one more dependency to keep patched without a feature this poller needs.
#
# Nothing is lost and nothing is taken twice: bodies are read with BODY.PEEK[] (no \Seen
# flag), a message is moved to the done folder only after receive_many has committed its
# report, and a message whose exact bytes are already stored as an IMAP report (a poll that
# stopped between the commit and the move) is moved without being recorded again.

from __future__ import annotations

import base64
import hashlib
import imaplib
import ipaddress
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from hostwarden.cases import service
from hostwarden.cases.models import AbuseReport
from hostwarden.core.config_cases import CasesSettings
from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Runtime
from hostwarden.errors import ConfigError, HostwardenError, TooLarge

log = get_logger("hostwarden.cases.imap")

CHANNEL = "imap"
#: Reports handed to receive_many (one transaction) at a time.
BATCH_MESSAGES = 100
#: A batch also closes at this many bytes, so a full mailbox is not read into memory.
BATCH_BYTES = 64 * 1024 * 1024
#: Seconds any one network operation with the server may take.
TIMEOUT_SECONDS = 60.0

_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)", re.IGNORECASE)
_SETTINGS_HINT = "Check [cases] imap_url and that the IMAP server runs and accepts "


class MailboxUnavailable(HostwardenError):
    """The abuse mailbox could not be reached, logged in to or changed."""

    code = "imap-unavailable"
    title = "Abuse mailbox unavailable"
    status = 502


@dataclass(frozen=True)
class MailboxServer:
    """Where the mailbox is, from ``[cases] imap_url``."""

    host: str
    port: int
    implicit_tls: bool

    def __str__(self) -> str:
        scheme = "imaps" if self.implicit_tls else "imap"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def on_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_url(url: str) -> MailboxServer:
    """``imaps://host[:993]`` or ``imap://host[:143]``; anything else is a ConfigError."""
    hint = "Write it as imaps://host:993 (TLS) or imap://host:143 (STARTTLS when offered)."
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"[cases] imap_url {url!r} is not a URL: {exc}.", hint=hint) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps") or not parts.hostname:
        raise ConfigError(
            f"[cases] imap_url {url!r} is not an imap:// or imaps:// URL with a host.", hint=hint
        )
    if parts.username or parts.password:
        raise ConfigError(
            "[cases] imap_url carries a login name or password.",
            hint="Remove it from the URL and set [cases] imap_user and imap_password instead.",
        )
    implicit = scheme == "imaps"
    return MailboxServer(parts.hostname, port or (993 if implicit else 143), implicit)


def mailbox_name(name: str) -> str:
    """A folder name as an IMAP quoted string, in modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def close_run() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(utf16).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if " " <= char <= "~":
            close_run()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    close_run()
    escaped = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def uid_set(uids: list[int]) -> str:
    """``[1, 2, 3, 7]`` → ``1:3,7``."""
    runs: list[str] = []
    ordered = sorted(set(uids))
    start = previous = ordered[0]
    for uid in [*ordered[1:], -1]:
        if uid == previous + 1:
            previous = uid
            continue
        runs.append(str(start) if start == previous else f"{start}:{previous}")
        start = previous = uid
    return ",".join(runs)


def _server_text(exc: BaseException) -> str:
    """The server's words in an imaplib error (often bytes) as text."""
    arg = exc.args[0] if exc.args else exc
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text.strip() or type(exc).__name__


def _response_text(data: list[Any]) -> str:
    """The text of a tagged NO or BAD answer."""
    words = [d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in data if d]
    return " ".join(words).strip() or "no reason given"


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Mailbox:
    """One logged-in IMAP session with the folder selected."""

    def __init__(self, conn: imaplib.IMAP4, server: MailboxServer, capabilities: set[str]) -> None:
        self.conn = conn
        self.server = server
        self.capabilities = capabilities
        self.ready_folders: set[str] = set()

    def _fail(self, doing: str, detail: str) -> MailboxUnavailable:
        return MailboxUnavailable(
            f"the IMAP server at {self.server} failed while {doing}: {detail}.",
            hint="Nothing was lost: messages not yet moved stay in the mailbox and are taken "
            "on the next poll. If it persists, check the server's log and the mailbox "
            "(quota, permissions).",
        )

    def command(self, doing: str, call: Callable[[], tuple[str, list[Any]]]) -> list[Any]:
        """Run one command; an answer other than OK raises MailboxUnavailable."""
        try:
            typ, data = call()
        except (imaplib.IMAP4.error, OSError) as exc:
            raise self._fail(doing, _server_text(exc)) from exc
        if typ != "OK":
            raise self._fail(doing, _response_text(data))
        return list(data)

    def select(self, folder: str) -> None:
        try:
            typ, data = self.conn.select(mailbox_name(folder))
        except (imaplib.IMAP4.error, OSError) as exc:
            raise self._fail(f"opening the folder {folder!r}", _server_text(exc)) from exc
        if typ != "OK":
            raise ConfigError(
                f"the IMAP server at {self.server} cannot open the folder {folder!r}: "
                f"{_response_text(data)}.",
                hint="Check [cases] imap_folder (the name as the mail client shows it, "
                "e.g. INBOX) and that imap_user may read it.",
            )

    def uids(self) -> list[int]:
        """The folder's messages not already marked deleted, oldest first."""
        data = self.command("listing the messages", lambda: self.conn.uid("SEARCH", "UNDELETED"))
        return sorted(int(word) for line in data if line for word in line.split())

    def sizes(self, uids: list[int]) -> dict[int, int]:
        if not uids:
            return {}
        data = self.command(
            "reading message sizes",
            lambda: self.conn.uid("FETCH", uid_set(uids), "(UID RFC822.SIZE)"),
        )
        found: dict[int, int] = {}
        for line in data:
            head = line[0] if isinstance(line, tuple) else line
            uid, size = _UID.search(head or b""), _SIZE.search(head or b"")
            if uid and size:
                found[int(uid.group(1))] = int(size.group(1))
        return found

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        """The raw messages, read without setting \\Seen."""
        data = self.command(
            "reading messages", lambda: self.conn.uid("FETCH", uid_set(uids), "(UID BODY.PEEK[])")
        )
        found: dict[int, bytes] = {}
        for position, item in enumerate(data):
            if not isinstance(item, tuple):
                continue
            head, body = item
            match = _UID.search(head)
            # Some servers put UID after the literal, in the line's closing part.
            if match is None and position + 1 < len(data) and isinstance(data[position + 1], bytes):
                match = _UID.search(data[position + 1])
            if match is not None:
                found[int(match.group(1))] = bytes(body)
        return found

    def ensure_folder(self, folder: str) -> None:
        if folder in self.ready_folders:
            return
        name = mailbox_name(folder)
        listed = self.command(
            f"looking for the folder {folder!r}", lambda: self.conn.list('""', name)
        )
        if not any(listed):
            try:
                typ, data = self.conn.create(name)
            except (imaplib.IMAP4.error, OSError) as exc:
                raise self._fail(f"creating the folder {folder!r}", _server_text(exc)) from exc
            text = _response_text(data)
            if typ != "OK" and "ALREADYEXISTS" not in text.upper():
                raise MailboxUnavailable(
                    f"the IMAP server at {self.server} refused to create the folder "
                    f"{folder!r}: {text}.",
                    hint="Create it in a mail client, or set [cases] imap_done_folder to an "
                    "existing folder imap_user may write to. Taken reports stay in the "
                    "mailbox until then and are not recorded twice.",
                )
            # Subscribed, so mail clients of the desk show the folder.
            with suppress(imaplib.IMAP4.error, OSError):
                self.conn.subscribe(name)
            log.info("imap.folder_created", server=str(self.server), folder=folder)
        self.ready_folders.add(folder)

    def move(self, uids: list[int], folder: str) -> None:
        self.ensure_folder(folder)
        doing = f"moving {len(uids)} stored reports to {folder!r}"
        target, which = mailbox_name(folder), uid_set(uids)
        if "MOVE" in self.capabilities:
            self.command(doing, lambda: self.conn.uid("MOVE", which, target))
            return
        self.command(doing, lambda: self.conn.uid("COPY", which, target))
        self.command(doing, lambda: self.conn.uid("STORE", which, "+FLAGS.SILENT", "(\\Deleted)"))
        if "UIDPLUS" in self.capabilities:
            self.command(doing, lambda: self.conn.uid("EXPUNGE", which))
        else:
            # Without UIDPLUS a plain EXPUNGE also removes what another client of the
            # mailbox marked deleted; that is what the client asked for anyway.
            self.command(doing, self.conn.expunge)


def _connect(server: MailboxServer, settings: CasesSettings) -> tuple[imaplib.IMAP4, bool]:
    """An unauthenticated connection, and whether it is encrypted."""
    context = _tls_context(settings.imap_verify_tls)
    conn: imaplib.IMAP4 | None = None
    try:
        if server.implicit_tls:
            conn = imaplib.IMAP4_SSL(
                server.host, server.port, ssl_context=context, timeout=TIMEOUT_SECONDS
            )
            return conn, True
        conn = imaplib.IMAP4(server.host, server.port, timeout=TIMEOUT_SECONDS)
        if "STARTTLS" in conn.capabilities:
            conn.starttls(context)
            return conn, True
        return conn, False
    except ssl.SSLCertVerificationError as exc:
        _close(conn)
        raise MailboxUnavailable(
            f"the certificate of the IMAP server at {server} is not trusted: {exc.verify_message}.",
            hint="Give the server a certificate for this host name from a CA in the system "
            "trust store; only for a server on loopback set [cases] imap_verify_tls = false.",
        ) from exc
    except ssl.SSLError as exc:
        _close(conn)
        raise MailboxUnavailable(
            f"TLS with the IMAP server at {server} failed: {exc.reason or exc}.",
            hint="imaps:// expects TLS from the first byte (port 993); for a port that "
            "speaks plain IMAP first (143) write imap:// in [cases] imap_url.",
        ) from exc
    except OSError as exc:
        _close(conn)
        raise MailboxUnavailable(
            f"cannot connect to the IMAP server at {server}: {exc.strerror or exc}.",
            hint=_SETTINGS_HINT + "connections from this host (firewall, port).",
        ) from exc
    except imaplib.IMAP4.error as exc:
        _close(conn)
        raise MailboxUnavailable(
            f"{server} did not answer as an IMAP server: {_server_text(exc)}.",
            hint=_SETTINGS_HINT + "IMAP on that port.",
        ) from exc


def _close(conn: imaplib.IMAP4 | None) -> None:
    if conn is not None:
        with suppress(imaplib.IMAP4.error, OSError):
            conn.shutdown()


def _login(conn: imaplib.IMAP4, server: MailboxServer, settings: CasesSettings) -> set[str]:
    """Log in; returns the capabilities the server has after login."""
    user = settings.imap_user
    secret = settings.imap_password.get_secret_value()
    credentials_hint = (
        "Check [cases] imap_user and imap_password (the abuse mailbox's own login) and "
        "that the account may use IMAP."
    )
    if not user:
        raise ConfigError("[cases] imap_user is empty.", hint=credentials_hint)
    if "LOGINDISABLED" in conn.capabilities and "AUTH=PLAIN" not in conn.capabilities:
        raise MailboxUnavailable(
            f"the IMAP server at {server} refuses to log in over an unencrypted connection "
            "and offers no STARTTLS.",
            hint="Use imaps://host:993 in [cases] imap_url, or enable STARTTLS on the server.",
        )
    try:
        if "AUTH=PLAIN" in conn.capabilities:
            # SASL PLAIN carries UTF-8, where LOGIN is limited to ASCII.
            token = f"\0{user}\0{secret}".encode()
            conn.authenticate("PLAIN", lambda _challenge: token)
        else:
            conn.login(user, secret)
        typ, data = conn.capability()
    except imaplib.IMAP4.abort as exc:
        raise MailboxUnavailable(
            f"the IMAP server at {server} closed the connection during login: {_server_text(exc)}.",
            hint="Check the server's log; it may limit connections from this host.",
        ) from exc
    except imaplib.IMAP4.error as exc:
        raise MailboxUnavailable(
            f"the IMAP server at {server} refused the login of {user!r}: {_server_text(exc)}.",
            hint=credentials_hint,
        ) from exc
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"the IMAP server at {server} takes only ASCII logins (no AUTH=PLAIN) and "
            "[cases] imap_user or imap_password has other characters.",
            hint=credentials_hint,
        ) from exc
    except OSError as exc:
        raise MailboxUnavailable(
            f"the connection to the IMAP server at {server} broke during login: "
            f"{exc.strerror or exc}.",
            hint=_SETTINGS_HINT + "connections from this host.",
        ) from exc
    words = data[-1] if typ == "OK" and data and isinstance(data[-1], bytes) else b""
    return {word.upper() for word in words.decode("ascii", "replace").split()}


@contextmanager
def open_mailbox(runtime: Runtime) -> Iterator[_Mailbox]:
    """A logged-in session on ``[cases] imap_folder``, logged out at the end."""
    settings = runtime.settings.cases
    server = parse_url(settings.imap_url)
    conn, encrypted = _connect(server, settings)
    try:
        if not encrypted and not server.on_loopback:
            log.warning(
                "imap.cleartext",
                server=str(server),
                reason="the server offers no STARTTLS; the login travels unencrypted",
            )
        capabilities = _login(conn, server, settings)
        mailbox = _Mailbox(conn, server, capabilities)
        mailbox.select(settings.imap_folder)
        yield mailbox
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            conn.logout()


def _already_stored(runtime: Runtime, digests: list[str]) -> set[str]:
    with runtime.reading() as session:
        rows = session.scalars(
            select(AbuseReport.sha256).where(
                AbuseReport.sha256.in_(digests), AbuseReport.channel == CHANNEL
            )
        )
        return set(rows)


def _batches(
    runtime: Runtime, mailbox: _Mailbox, uids: list[int], refused: list[int]
) -> Iterator[list[int]]:
    """The UIDs to read, in batches; those over the size limit go to ``refused``
    unread (the server's size is enough to refuse them)."""
    limit = runtime.settings.cases.max_report_mb * 1024 * 1024
    sizes = mailbox.sizes(uids)
    batch: list[int] = []
    batch_bytes = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if size > limit:
            refused.append(uid)
            _log_refused(
                mailbox,
                uid,
                f"the message is {size:,} bytes; the limit is {limit:,} "
                f"([cases] max_report_mb = {runtime.settings.cases.max_report_mb}).",
            )
            continue
        if batch and (len(batch) >= BATCH_MESSAGES or batch_bytes + size > BATCH_BYTES):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(uid)
        batch_bytes += size
    if batch:
        yield batch


def _log_refused(mailbox: _Mailbox, uid: int, reason: str) -> None:
    log.warning(
        "imap.report_refused",
        server=str(mailbox.server),
        uid=uid,
        reason=reason,
        left_in_mailbox=True,
    )


def _take(runtime: Runtime, mailbox: _Mailbox, uids: list[int], refused: list[int]) -> int:
    """Record one batch, then move what was recorded; returns how many were taken."""
    bodies = mailbox.bodies(uids)
    items: list[tuple[int, service.Incoming, str]] = []
    for uid in uids:
        raw = bodies.get(uid)
        if raw is None:
            continue  # expunged by another client since the listing
        try:
            message, parsed = service.read_report(runtime, raw)
        except TooLarge as exc:
            refused.append(uid)
            _log_refused(mailbox, uid, str(exc))
            continue
        incoming = service.Incoming(raw, CHANNEL, parsed=parsed, message=message)
        items.append((uid, incoming, hashlib.sha256(raw).hexdigest()))
    if not items:
        return 0
    stored = _already_stored(runtime, [digest for _, _, digest in items])
    fresh = [(uid, item) for uid, item, digest in items if digest not in stored]
    if len(fresh) < len(items):
        log.info(
            "imap.already_stored",
            server=str(mailbox.server),
            uids=[uid for uid, _, digest in items if digest in stored],
        )
    results = service.receive_many(runtime, [item for _, item in fresh])
    # Only now, with the reports committed, may the messages leave the folder.
    mailbox.move([uid for uid, _, _ in items], runtime.settings.cases.imap_done_folder)
    if fresh:
        log.info(
            "imap.reports_taken",
            server=str(mailbox.server),
            uids=[uid for uid, _ in fresh],
            report_ids=[result.report_id for result in results],
        )
    return len(fresh)


def _same_folder(one: str, other: str) -> bool:
    # INBOX is the one folder name that is case-insensitive (RFC 3501 5.1).
    return one == other or one.upper() == other.upper() == "INBOX"


def poll(runtime: Runtime) -> dict[str, int]:
    """Take every message of ``[cases] imap_folder`` in as a report and move it to
    ``imap_done_folder``. Returns how many were taken, refused (over the size limit, left
    in the folder) and left in the folder after the poll."""
    settings = runtime.settings.cases
    if not settings.imap_url:
        raise ConfigError(
            "[cases] imap_url is empty, so there is no abuse mailbox to poll.",
            hint="Set it to imaps://host:993 or imap://host:143, with imap_user and imap_password.",
        )
    if _same_folder(settings.imap_done_folder, settings.imap_folder):
        raise ConfigError(
            f"[cases] imap_done_folder is the polled folder {settings.imap_folder!r}.",
            hint="Give taken reports a folder of their own, e.g. hostwarden-done.",
        )
    taken = 0
    refused: list[int] = []
    with open_mailbox(runtime) as mailbox:
        for batch in _batches(runtime, mailbox, mailbox.uids(), refused):
            taken += _take(runtime, mailbox, batch, refused)
        left = len(mailbox.uids())
    counts = {"taken": taken, "refused": len(refused), "left": left}
    log.info("imap.polled", server=str(mailbox.server), folder=settings.imap_folder, **counts)
    return counts
