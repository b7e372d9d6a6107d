"""Personal identifiers at rest: AES-GCM encryption and a keyed blind index for search."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hostwarden.errors import ConfigError, IntegrityBroken, NotInitialised

VAULT_KEY_FILE = "pii-vault.key"
_FORMAT = b"\x01"  # version byte of the stored form: 0x01 ‖ 12-byte nonce ‖ ciphertext+tag


def normalise_identifier(value: str) -> str:
    """The form that equal identifiers share: no spaces or dashes, upper case."""
    return re.sub(r"[\s-]+", "", value).upper()


def normalise_phone(value: str) -> str:
    """Digits only; a mainland mobile written with +86 / 0086 / 86 keeps just 11 digits."""
    digits = re.sub(r"\D", "", value)
    for prefix in ("0086", "86"):
        if (
            digits.startswith(prefix)
            and len(digits) == len(prefix) + 11
            and digits[len(prefix)] == "1"
        ):
            return digits[len(prefix) :]
    return digits


class PiiVault:
    """Encrypts with one 256-bit AES-GCM key and indexes with a separate HMAC key, both
    from the data directory. The field name is authenticated with each value, so a
    ciphertext moved to another column does not decrypt."""

    def __init__(self, key_material: bytes) -> None:
        if len(key_material) != 64:
            raise ConfigError("the PII vault key must be 64 bytes.", hint="Restore it from backup.")
        self._aead = AESGCM(key_material[:32])
        self._index_key = key_material[32:]

    def encrypt(self, field: str, value: str) -> bytes:
        nonce = os.urandom(12)
        return _FORMAT + nonce + self._aead.encrypt(nonce, value.encode("utf-8"), field.encode())

    def decrypt(self, field: str, stored: bytes) -> str:
        if not stored.startswith(_FORMAT) or len(stored) < 1 + 12 + 16:
            raise IntegrityBroken(f"a stored {field} value is not in the vault's format.")
        try:
            plain = self._aead.decrypt(stored[1:13], stored[13:], field.encode())
        except InvalidTag as exc:
            raise IntegrityBroken(
                f"a stored {field} value fails its integrity check (altered, or another key).",
                hint="Check that pii-vault.key is the one this database was written with.",
            ) from exc
        return plain.decode("utf-8")

    def blind_index(self, field: str, normalised: str) -> str:
        """Equal values give equal indexes; without the key the index reveals nothing."""
        message = field.encode() + b"\x00" + normalised.encode("utf-8")
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()


def create_vault_key(keys_dir: Path) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True)
    path = keys_dir / VAULT_KEY_FILE
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(64))


def load_vault(keys_dir: Path) -> PiiVault:
    path = keys_dir / VAULT_KEY_FILE
    if not path.is_file():
        raise NotInitialised(
            f"no PII vault key at {path}.",
            hint="Run `hostwarden init` (it adds missing keys and keeps existing ones).",
        )
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by others.", hint=f"Run `chmod 600 {path}`.")
    return PiiVault(path.read_bytes())
