"""The value-vault contract over a real Secret Service (a throwaway gnome-keyring daemon).

The session-scoped `secret_service` fixture (tests/conftest.py) starts the daemon on a private
D-Bus session bus; its `.env` runs other programs against the same daemon and `.backend()` is a
keyring Secret Service backend usable in this process.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from ledger.vault.keyring_vault import KeyringVault, open_vault
from tests.vault_contract import ListingContract, PersistedVaultContract

pytestmark = pytest.mark.slow


def _run_env(secret_service: Any) -> dict[str, str]:
    # The fixture's env names the bus and home; PATH and the rest come from this process.
    return {**os.environ, **secret_service.env}


class TestSecretServiceVault(ListingContract, PersistedVaultContract):
    @pytest.fixture(autouse=True)
    def _backend(self, secret_service: Any) -> None:
        self.secret_service = secret_service
        self.backend = secret_service.backend()
        # The daemon lives for the whole session: a per-test prefix keeps tests apart.
        self.prefix = f"contract-{uuid.uuid4().hex[:12]}"

    def make_vault(self, namespace: str = "contract") -> KeyringVault:
        return open_vault(self.backend, f"{self.prefix}:{namespace}")

    def raw_bytes(self) -> bytes:
        # gnome-keyring writes its collections under the daemon's HOME.
        keyrings = Path(self.secret_service.env["HOME"]) / ".local" / "share" / "keyrings"
        files = sorted(keyrings.glob("*.keyring")) if keyrings.is_dir() else []
        assert files, f"gnome-keyring wrote no keyring file under {keyrings}"
        return b"".join(f.read_bytes() for f in files)


def test_secret_tool_reads_what_keyring_vault_stored(secret_service: Any) -> None:
    namespace = f"secrets-ledger:{uuid.uuid4().hex}"
    entry = "prod/db#3:password"
    value = 'tool-visible value ✓ with "quotes" and \\ backslash'
    vault = KeyringVault(secret_service.backend(), namespace)
    vault.put(entry, value)

    found = subprocess.run(
        ["secret-tool", "lookup", "service", namespace, "username", entry],
        env=_run_env(secret_service),
        capture_output=True,
        check=True,
        timeout=30,
    )
    # secret-tool adds a newline only when printing to a terminal.
    assert found.stdout.decode() == value

    assert vault.delete(entry) is True
    gone = subprocess.run(
        ["secret-tool", "lookup", "service", namespace, "username", entry],
        env=_run_env(secret_service),
        capture_output=True,
        timeout=30,
    )
    assert gone.returncode != 0
    assert gone.stdout == b""


def test_keyring_vault_reads_what_secret_tool_stored(secret_service: Any) -> None:
    namespace = f"secrets-ledger:{uuid.uuid4().hex}"
    subprocess.run(
        ["secret-tool", "store", "--label=ledger test", "service", namespace, "username", "e"],
        input=b"stored by secret-tool",
        env=_run_env(secret_service),
        check=True,
        timeout=30,
    )
    assert KeyringVault(secret_service.backend(), namespace).get("e") == "stored by secret-tool"


def test_listing_a_locked_collection_is_unavailable_and_never_prompts(
    secret_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secretstorage

    from ledger.errors import KeychainUnavailable
    from ledger.vault.port import ListableVault

    vault = open_vault(secret_service.backend(), f"secrets-ledger:{uuid.uuid4().hex}")
    assert isinstance(vault, ListableVault)
    vault.put("entry", "value")

    def no_prompt(*_: object, **__: object) -> bool:
        raise AssertionError("listing asked to unlock the collection")

    # Locking the shared daemon's collection would need a prompt to undo: pretend instead.
    monkeypatch.setattr(secretstorage.Collection, "is_locked", lambda _self: True)
    monkeypatch.setattr(secretstorage.Collection, "unlock", no_prompt)
    monkeypatch.setattr(secretstorage.Item, "unlock", no_prompt)
    with pytest.raises(KeychainUnavailable, match="locked"):
        vault.entries()
    monkeypatch.undo()
    assert vault.entries() == ["entry"]
    assert vault.delete("entry") is True


def test_entries_stored_by_secret_tool_under_the_namespace_are_listed(secret_service: Any) -> None:
    namespace = f"secrets-ledger:{uuid.uuid4().hex}"
    subprocess.run(
        ["secret-tool", "store", "--label=by hand", "service", namespace, "username", "x#v1"],
        input=b"typed by hand",
        env=_run_env(secret_service),
        check=True,
        timeout=30,
    )
    vault = open_vault(secret_service.backend(), namespace)
    assert vault.entries() == ["x#v1"]  # type: ignore[attr-defined]
    assert vault.delete("x#v1") is True
