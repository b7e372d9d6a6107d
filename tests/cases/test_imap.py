"""The IMAP poller against a real Debian dovecot on loopback: reports taken once, moved
only after they are stored, oversize mail left for a person, clear errors."""

from __future__ import annotations

import datetime as dt
import grp
import imaplib
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from sqlalchemy import func, select
from structlog.testing import capture_logs

from hostwarden.cases import intake_imap
from hostwarden.cases.models import AbuseCase, AbuseReport
from hostwarden.core.runtime import Runtime
from hostwarden.errors import ConfigError, HostwardenError

from .support import build, mail

USER = "abuse"
PASSWORD = "s3cret-Passw0rd"
DONE = "hostwarden-done"
SPAM = "Spam from 203.0.113.10 received 2026-05-01 10:00:00 +0800"
MORE_SPAM = "Spam from 203.0.113.10 received 2026-05-02 11:30:00 +0800"


def _dovecot_binary() -> str:
    found = shutil.which("dovecot", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is not None:
        return found
    reason = "dovecot is not installed (Debian: dovecot-imapd; scripts/system-deps.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: the IMAP poller's tests must run in CI")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Dovecot:
    """One dovecot serving a single mailbox on loopback."""

    imap_port: int
    imaps_port: int
    cert: Path
    log: Path

    def url(self, scheme: str = "imap") -> str:
        return f"{scheme}://127.0.0.1:{self.imaps_port if scheme == 'imaps' else self.imap_port}"

    @contextmanager
    def session(self) -> Iterator[imaplib.IMAP4]:
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            conn.login(USER, PASSWORD)
            yield conn
        finally:
            conn.logout()

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        with self.session() as conn:
            for raw in messages:
                typ, data = conn.append(folder, None, None, raw)
                assert typ == "OK", data

    def uids(self, folder: str) -> list[int]:
        """The messages of ``folder`` (``[]`` when it does not exist)."""
        with self.session() as conn:
            typ, _ = conn.select(folder, readonly=True)
            if typ != "OK":
                return []
            _, data = conn.uid("SEARCH", "ALL")
            return [int(uid) for uid in data[0].split()]

    def flags(self, folder: str) -> list[bytes]:
        with self.session() as conn:
            conn.select(folder, readonly=True)
            _, data = conn.fetch("1:*", "(FLAGS)")
            return [line for line in data if isinstance(line, bytes)]

    def folders(self) -> list[bytes]:
        with self.session() as conn:
            _, data = conn.list('""', "*")
            return [line for line in data if isinstance(line, bytes)]


def _config(root: Path, run: Path, dovecot: Dovecot, key: Path, extra: str) -> str:
    mail = root / "mail"
    mail.mkdir()
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::\n")
    if os.geteuid() == 0:
        # Run as root: login processes must not run as root (the package's dovenull user
        # does); auth runs as root so it can read the passwd file in this 0700 tree; mail
        # processes may not run as root, so they run as nobody, chrooted ("/./") into the
        # mail folder, which nobody cannot reach through pytest's 0700 directories.
        (mail / USER).mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(mail / USER, nobody.pw_uid, nobody.pw_gid)
        users = (
            "default_internal_user = root\n"
            f"valid_chroot_dirs = {mail}\n"
            "userdb {\n  driver = static\n"
            f"  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={mail}/./%u\n}}\n"
        )
    else:
        # Run as an ordinary user: every process is that user and nothing chroots.
        me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        users = (
            f"default_internal_user = {me}\ndefault_login_user = {me}\n"
            f"default_internal_group = {group}\n"
            "service imap-login {\n  chroot =\n}\nservice anvil {\n  chroot =\n}\n"
            "userdb {\n  driver = static\n"
            f"  args = uid={os.getuid()} gid={os.getgid()} home={mail}/%u\n}}\n"
        )
    # Dovecot 2.3 spells "cleartext allowed without TLS" disable_plaintext_auth = no
    # (2.4: auth_allow_cleartext = yes); loopback counts as secured either way.
    return f"""
base_dir = {run}
state_dir = {root / "state"}
log_path = {dovecot.log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{dovecot.cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {root / "passwd"}
}}
{users}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {dovecot.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {dovecot.imaps_port}
    ssl = yes
  }}
}}
{extra}
"""


@pytest.fixture
def start_dovecot(tmp_path: Path) -> Iterator[Callable[..., Dovecot]]:
    """Starts dovecot (``dovecot -F``) with its own configuration in tmp_path, stopped
    when the test ends; ``extra`` is appended to the configuration."""
    binary = _dovecot_binary()
    running: list[subprocess.Popen[bytes]] = []
    scratch: list[Path] = []

    def start(extra: str = "") -> Dovecot:
        root = tmp_path / f"dovecot{len(running)}"
        root.mkdir()
        run = root / "run"
        # Unix sockets take at most 107 bytes of path; dovecot's longest is 26 below it.
        if len(str(run)) > 75:
            run = Path(tempfile.mkdtemp(prefix="hw-dovecot-"))
            scratch.append(run)
        cert, key = _self_signed(root)
        server = Dovecot(_free_port(), _free_port(), cert, root / "dovecot.log")
        conf = root / "dovecot.conf"
        conf.write_text(_config(root, run, server, key, extra))
        process = subprocess.Popen(
            [binary, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        running.append(process)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", server.imap_port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.communicate()[0].decode(errors="replace")
                    log = server.log.read_text() if server.log.exists() else ""
                    pytest.fail(f"dovecot did not start:\n{output}\n{log}")
                time.sleep(0.05)
        return server

    yield start
    for process in running:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    for folder in scratch:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dovecot(start_dovecot: Callable[..., Dovecot]) -> Dovecot:
    return start_dovecot()


def _point_at(runtime: Runtime, server: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = runtime.settings.cases
    cases.imap_url = server.url("imap")
    cases.imap_user = USER
    cases.imap_password = SecretStr(PASSWORD)
    cases.imap_folder = "INBOX"
    cases.imap_done_folder = DONE
    cases.imap_verify_tls = True
    # The test's self-signed certificate is the only trusted one, so STARTTLS and imaps
    # are verified as in production.
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))


@pytest.fixture
def desk(runtime: Runtime, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """The runtime, with customers holding 203.0.113.10 and the mailbox configured."""
    build(runtime)
    _point_at(runtime, dovecot, monkeypatch)
    return runtime


def _reports(runtime: Runtime) -> int:
    with runtime.reading() as session:
        return int(session.scalar(select(func.count()).select_from(AbuseReport)) or 0)


def _big_mail() -> bytes:
    filler = "\n".join(
        f"Received: from relay{n} [203.0.113.10] bounce log line" for n in range(25_000)
    )
    return mail(f"{SPAM}\n{filler}")


def test_reports_in_the_mailbox_are_taken_once_and_moved_to_the_done_folder(
    desk: Runtime, dovecot: Dovecot
) -> None:
    dovecot.append(mail(SPAM), mail(MORE_SPAM, subject="More abuse"))

    assert intake_imap.poll(desk) == {"taken": 2, "refused": 0, "left": 0}

    with desk.reading() as session:
        cases = session.scalars(select(AbuseCase)).all()
        reports = session.scalars(select(AbuseReport)).all()
    assert [(c.subject, c.category, c.events) for c in cases] == [("203.0.113.10", "spam", 2)]
    assert sorted(r.channel for r in reports) == ["imap", "imap"]
    assert dovecot.uids("INBOX") == []
    assert len(dovecot.uids(DONE)) == 2
    # Read with BODY.PEEK[]: the desk's mail clients still see the messages as unread.
    assert all(b"\\Seen" not in line for line in dovecot.flags(DONE))

    assert intake_imap.poll(desk) == {"taken": 0, "refused": 0, "left": 0}
    assert _reports(desk) == 2


def test_the_login_is_encrypted_by_starttls_or_imaps_and_the_certificate_checked(
    desk: Runtime, dovecot: Dovecot
) -> None:
    for number, scheme in enumerate(("imap", "imaps")):
        desk.settings.cases.imap_url = dovecot.url(scheme)
        dovecot.append(mail(f"{SPAM} attempt {number}"))
        assert intake_imap.poll(desk)["taken"] == 1
    logins = [line for line in dovecot.log.read_text().splitlines() if "method=PLAIN" in line]
    # The test's own appends log in over plain IMAP; the poller's two logins used TLS.
    assert sum(", TLS," in line for line in logins) == 2


def test_an_untrusted_certificate_is_refused_unless_verification_is_turned_off(
    desk: Runtime, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk.settings.cases.imap_url = dovecot.url("imaps")
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    dovecot.append(mail(SPAM))

    with pytest.raises(intake_imap.MailboxUnavailable) as refused:
        intake_imap.poll(desk)
    assert "certificate" in refused.value.message
    assert "imap_verify_tls" in str(refused.value)

    desk.settings.cases.imap_verify_tls = False
    assert intake_imap.poll(desk)["taken"] == 1


@pytest.mark.parametrize("sizes_known", [True, False], ids=["server-size", "read-size"])
def test_an_oversize_report_stays_in_the_mailbox_and_is_counted_refused(
    desk: Runtime, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, sizes_known: bool
) -> None:
    desk.settings.cases.max_report_mb = 1
    big = _big_mail()
    assert len(big) > 1024 * 1024
    dovecot.append(mail(SPAM), big)
    big_uid = dovecot.uids("INBOX")[1]
    if not sizes_known:
        # A server that does not say the size: the report reader refuses it instead.
        monkeypatch.setattr(intake_imap._Mailbox, "sizes", lambda self, uids: {})

    with capture_logs() as logs:
        assert intake_imap.poll(desk) == {"taken": 1, "refused": 1, "left": 1}

    assert dovecot.uids("INBOX") == [big_uid]
    assert len(dovecot.uids(DONE)) == 1
    [refusal] = [entry for entry in logs if entry["event"] == "imap.report_refused"]
    assert refusal["uid"] == big_uid
    assert "max_report_mb" in refusal["reason"]
    assert _reports(desk) == 1
    # Left for a person, not lost: the next poll refuses it again and takes nothing.
    assert intake_imap.poll(desk) == {"taken": 0, "refused": 1, "left": 1}


def test_reports_stored_before_a_failed_move_are_moved_but_not_recorded_again(
    desk: Runtime, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.append(mail(SPAM), mail(MORE_SPAM))

    def broken_move(self: object, uids: list[int], folder: str) -> None:
        raise intake_imap.MailboxUnavailable("connection lost while moving")

    with monkeypatch.context() as patch:
        patch.setattr(intake_imap._Mailbox, "move", broken_move)
        with pytest.raises(intake_imap.MailboxUnavailable):
            intake_imap.poll(desk)
    assert _reports(desk) == 2
    assert len(dovecot.uids("INBOX")) == 2

    assert intake_imap.poll(desk) == {"taken": 0, "refused": 0, "left": 0}
    assert _reports(desk) == 2
    assert len(dovecot.uids(DONE)) == 2


@pytest.mark.parametrize("capabilities", ["IMAP4rev1 UIDPLUS", "IMAP4rev1"])
def test_a_server_without_move_gets_copy_delete_and_expunge(
    runtime: Runtime,
    start_dovecot: Callable[..., Dovecot],
    monkeypatch: pytest.MonkeyPatch,
    capabilities: str,
) -> None:
    server = start_dovecot(f"imap_capability = {capabilities}")
    build(runtime)
    _point_at(runtime, server, monkeypatch)
    server.append(mail(SPAM), mail(MORE_SPAM))
    sent: list[str] = []
    uid_command = imaplib.IMAP4.uid

    def spy(self: imaplib.IMAP4, command: str, *args: str) -> tuple[str, list[object]]:
        sent.append(command)
        return uid_command(self, command, *args)

    monkeypatch.setattr(imaplib.IMAP4, "uid", spy)

    assert intake_imap.poll(runtime) == {"taken": 2, "refused": 0, "left": 0}
    assert "MOVE" not in sent and "COPY" in sent
    assert ("EXPUNGE" in sent) == ("UIDPLUS" in capabilities)
    assert server.uids("INBOX") == []
    assert len(server.uids(DONE)) == 2
    assert intake_imap.poll(runtime)["taken"] == 0


def test_a_done_folder_with_a_chinese_name_is_created_in_modified_utf7(
    desk: Runtime, dovecot: Dovecot
) -> None:
    desk.settings.cases.imap_done_folder = "已处理 reports"
    dovecot.append(mail(SPAM))

    assert intake_imap.poll(desk)["taken"] == 1

    assert any(line.endswith(b'"&XfJZBHQG- reports"') for line in dovecot.folders())
    assert len(dovecot.uids('"&XfJZBHQG- reports"')) == 1


def test_a_wrong_password_says_which_settings_to_check(desk: Runtime, dovecot: Dovecot) -> None:
    wrong = "not-the-Passw0rd"
    desk.settings.cases.imap_password = SecretStr(wrong)
    dovecot.append(mail(SPAM))

    with capture_logs() as logs, pytest.raises(intake_imap.MailboxUnavailable) as refused:
        intake_imap.poll(desk)

    text = str(refused.value)
    assert "refused the login of 'abuse'" in text
    assert "[cases] imap_user and imap_password" in text
    assert wrong not in text and wrong not in repr(logs)
    assert isinstance(refused.value, HostwardenError)
    assert len(dovecot.uids("INBOX")) == 1


def test_a_server_that_does_not_run_says_to_check_the_url(runtime: Runtime) -> None:
    runtime.settings.cases.imap_url = f"imap://127.0.0.1:{_free_port()}"
    runtime.settings.cases.imap_user = USER

    with pytest.raises(intake_imap.MailboxUnavailable) as refused:
        intake_imap.poll(runtime)

    assert "cannot connect to the IMAP server at imap://127.0.0.1:" in refused.value.message
    assert "[cases] imap_url" in str(refused.value)


def test_a_missing_folder_names_the_setting(desk: Runtime) -> None:
    desk.settings.cases.imap_folder = "No such folder"

    with pytest.raises(ConfigError, match=r"\[cases\] imap_folder"):
        intake_imap.poll(desk)


@pytest.mark.parametrize(
    "url", ["https://mail.example.net", "imap://", "imaps://user:pw@mail.example.net"]
)
def test_an_imap_url_that_is_not_one_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"\[cases\] imap_url"):
        intake_imap.parse_url(url)


def test_urls_default_to_the_standard_ports() -> None:
    assert str(intake_imap.parse_url("imaps://Mail.Example.net")) == "imaps://mail.example.net:993"
    assert str(intake_imap.parse_url("imap://[::1]")) == "imap://[::1]:143"


def test_folder_names_are_quoted_in_modified_utf7() -> None:
    assert intake_imap.mailbox_name('Abuse & "done"') == '"Abuse &- \\"done\\""'
    assert intake_imap.mailbox_name("已处理") == '"&XfJZBHQG-"'


def test_uid_sets_are_written_as_ranges() -> None:
    assert intake_imap.uid_set([7, 1, 2, 3, 9, 10]) == "1:3,7,9:10"


def test_the_done_folder_must_differ_from_the_polled_one(runtime: Runtime) -> None:
    runtime.settings.cases.imap_url = "imap://127.0.0.1:143"
    runtime.settings.cases.imap_done_folder = "inbox"

    with pytest.raises(ConfigError, match="imap_done_folder"):
        intake_imap.poll(runtime)
