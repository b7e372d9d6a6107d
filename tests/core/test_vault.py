"""Personal identifiers are encrypted at rest and found by a keyed blind index."""

from __future__ import annotations

import os
import stat

import pytest

from hostwarden.core.runtime import Runtime
from hostwarden.core.vault import (
    VAULT_KEY_FILE,
    PiiVault,
    load_vault,
    normalise_identifier,
    normalise_phone,
)
from hostwarden.errors import ConfigError, IntegrityBroken


def test_init_creates_a_private_vault_key(runtime: Runtime) -> None:
    path = runtime.settings.keys_dir / VAULT_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 64


def test_values_round_trip_and_the_ciphertext_hides_them(runtime: Runtime) -> None:
    stored = runtime.vault.encrypt("customer.phone", "13812345678")
    assert b"13812345678" not in stored
    assert runtime.vault.decrypt("customer.phone", stored) == "13812345678"
    assert runtime.vault.encrypt("customer.phone", "13812345678") != stored, "random nonce"


def test_a_value_moved_to_another_field_or_altered_does_not_decrypt(runtime: Runtime) -> None:
    stored = runtime.vault.encrypt("customer.phone", "13812345678")
    with pytest.raises(IntegrityBroken):
        runtime.vault.decrypt("document.number", stored)
    altered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(IntegrityBroken, match="integrity check"):
        runtime.vault.decrypt("customer.phone", altered)


def test_blind_index_matches_equal_values_only_under_the_same_key(runtime: Runtime) -> None:
    vault = runtime.vault
    a = vault.blind_index("phone", normalise_phone("+86 138-1234-5678"))
    assert a == vault.blind_index("phone", normalise_phone("13812345678"))
    assert a != vault.blind_index("phone", normalise_phone("13812345679"))
    assert a != vault.blind_index("id", normalise_phone("13812345678")), "fields are separated"
    other = PiiVault(os.urandom(64))
    assert other.blind_index("phone", "13812345678") != a


def test_identifiers_normalise_spaces_dashes_and_case() -> None:
    assert normalise_identifier(" 110105 1949-1231 002x ") == "11010519491231002X"
    assert normalise_phone("0086 13812345678") == "13812345678"
    assert normalise_phone("+44 20 7946 0958") == "442079460958"


def test_a_key_readable_by_others_is_refused(runtime: Runtime) -> None:
    path = runtime.settings.keys_dir / VAULT_KEY_FILE
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_vault(runtime.settings.keys_dir)
