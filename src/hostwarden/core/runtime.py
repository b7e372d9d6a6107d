"""The per-process runtime (settings, database, signing key) and the unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from hostwarden.core.config import Settings
from hostwarden.core.db import Database
from hostwarden.core.signing import ChainSigner, load_signing_key
from hostwarden.core.vault import PiiVault, load_vault


@dataclass(frozen=True)
class Actor:
    """Who does something: a person (username), a token, or automation ("system:…")."""

    name: str
    roles: tuple[str, ...]
    request_id: str = ""
    user_id: int | None = None

    @property
    def role_text(self) -> str:
        return ",".join(self.roles)


def system_actor(component: str) -> Actor:
    return Actor(name=f"system:{component}", roles=("system",), request_id=new_request_id())


def new_request_id() -> str:
    return uuid.uuid4().hex


class Runtime:
    """What one process needs to serve: built once by the app, the CLI or a test."""

    def __init__(self, settings: Settings, db: Database, signer: ChainSigner) -> None:
        self.settings = settings
        self.db = db
        self.signer = signer
        self._vault: PiiVault | None = None
        from hostwarden.core.auth import TokenCache

        self.token_cache = TokenCache()

    @property
    def vault(self) -> PiiVault:
        """The PII vault, loaded on first use (most commands never touch personal data)."""
        if self._vault is None:
            self._vault = load_vault(self.settings.keys_dir)
        return self._vault

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        signer = load_signing_key(settings.keys_dir)
        return cls(settings, Database(settings.database_url, echo=settings.database.echo), signer)

    @contextmanager
    def operation(self, actor: Actor) -> Iterator[Operation]:
        """A unit of work by one actor: its changes and their audit entries commit together."""
        from hostwarden.core import audit

        with self.db.session() as session:
            op = Operation(session=session, actor=actor, runtime=self)
            yield op
            if op.audited:
                audit.seal(op)
        if op.checkpoint is not None:
            audit.publish_head(self, op.checkpoint)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reading: never committed. Closing it (which rolls back) keeps the
        loaded objects usable, detached, for rendering after the block."""
        session = self.db.read_session()
        try:
            yield session
        finally:
            session.close()

    def close(self) -> None:
        self.db.dispose()


@dataclass
class Operation:
    session: Session
    actor: Actor
    runtime: Runtime
    audited: list[int] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    #: (seq, hash) of the chain head after this unit's last append: the chain is locked
    #: for the unit after its first append, so the head need not be read again. Whoever
    #: rolls back to a savepoint that held appends must set it to None.
    audit_head: tuple[int, str] | None = None

    def audit(
        self,
        action: str,
        object_type: str,
        object_id: str | int,
        *,
        before: Any = None,
        after: Any = None,
        reason: str = "",
    ) -> None:
        from hostwarden.core import audit

        entry = audit.append(self, action, object_type, str(object_id), before, after, reason)
        self.audited.append(entry.seq)

    @contextmanager
    def automated(self, component: str) -> Iterator[Operation]:
        """Inside, changes are audited as automation (``system:<component>``), not as the
        actor: a rule's consequence of the actor's change, in the same unit of work and
        tied to it by the request id."""
        person = self.actor
        self.actor = Actor(f"system:{component}", ("system",), person.request_id)
        try:
            yield self
        finally:
            self.actor = person
