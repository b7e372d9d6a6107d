"""First-run set-up of a data directory: layout, config file, key, schema, first admin."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import func, select

from hostwarden.core import auth, migrate
from hostwarden.core.config import CONFIG_FILE_NAME, DEFAULT_TOML, Settings
from hostwarden.core.db import Database
from hostwarden.core.models import User
from hostwarden.core.rbac import Role
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.signing import PRIVATE_KEY_FILE, create_signing_key, load_signing_key
from hostwarden.core.vault import create_vault_key


@dataclass(frozen=True)
class InitResult:
    created_home: bool
    created_key: bool
    migrated_from: str | None
    migrated_to: str
    admin_password: str | None  # only on the run that created the first admin


def is_initialised(settings: Settings) -> bool:
    return (settings.keys_dir / PRIVATE_KEY_FILE).is_file()


def init(settings: Settings, *, admin_username: str = "admin") -> InitResult:
    """Idempotent: creates only what is missing, and never replaces a key or a user."""
    home = settings.home
    created_home = not home.exists()
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    config_path = home / CONFIG_FILE_NAME
    if not config_path.exists():
        config_path.write_text(DEFAULT_TOML, encoding="utf-8")
    created_key = not is_initialised(settings)
    signer = (
        create_signing_key(settings.keys_dir)
        if created_key
        else load_signing_key(settings.keys_dir)
    )
    # Added on every run, so data directories made before the vault existed get one.
    create_vault_key(settings.keys_dir)
    db = Database(settings.database_url)
    try:
        before, after = migrate.upgrade(db.engine)
        runtime = Runtime(settings, db, signer)
        password = None
        with runtime.reading() as session:
            users = session.scalar(select(func.count()).select_from(User)) or 0
        if users == 0:
            password = auth.generate_password()
            with runtime.operation(system_actor("init")) as op:
                auth.create_user(
                    op,
                    admin_username,
                    password,
                    [Role.ADMIN.value],
                    display_name="Administrator",
                    reason="first administrator created by hostwarden init",
                )
    finally:
        db.dispose()
    return InitResult(created_home, created_key, before, after, password)
