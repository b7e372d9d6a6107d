"""The data directory's Ed25519 key that signs audit and flow-store chain checkpoints."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from hostwarden.errors import ConfigError, NotInitialised

PRIVATE_KEY_FILE = "signing-ed25519.pem"
PUBLIC_KEY_FILE = "signing-ed25519.pub.pem"


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class ChainVerifier:
    """Checks signatures with the public half only (an auditor can hold just this)."""

    def __init__(self, public: Ed25519PublicKey) -> None:
        self.public = public
        self.key_id = _key_id(public)

    def verify(self, signature_hex: str, message: bytes) -> bool:
        try:
            self.public.verify(bytes.fromhex(signature_hex), message)
        except (InvalidSignature, ValueError):
            return False
        return True


class ChainSigner(ChainVerifier):
    def __init__(self, private: Ed25519PrivateKey) -> None:
        super().__init__(private.public_key())
        self._private = private

    def sign(self, message: bytes) -> str:
        return self._private.sign(message).hex()


def create_signing_key(keys_dir: Path) -> ChainSigner:
    """Create the key pair (private file mode 0600); refuses to replace an existing key."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    private_path = keys_dir / PRIVATE_KEY_FILE
    if private_path.exists():
        raise ConfigError(
            f"a signing key already exists at {private_path}.",
            hint="Keep it: replacing it would make earlier checkpoints unverifiable.",
        )
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (keys_dir / PUBLIC_KEY_FILE).write_bytes(public_pem)
    return ChainSigner(private)


def load_signing_key(keys_dir: Path) -> ChainSigner:
    path = keys_dir / PRIVATE_KEY_FILE
    if not path.is_file():
        raise NotInitialised(
            f"no signing key at {path}.",
            hint="Run `hostwarden init` for this data directory (or pass the right --home).",
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"signing key {path} is readable by others (mode {mode:o}).",
            hint=f"Run `chmod 600 {path}`.",
        )
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{path} does not hold an Ed25519 private key.")
    return ChainSigner(private)
