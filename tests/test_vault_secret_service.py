"""The value-vault contract over a real Secret Service (a throwaway gnome-keyring daemon).

The session-scoped `secret_service` fixture (tests/conftest.py) starts the daemon on a private
D-Bus session bus; its `.env` runs other programs against the same daemon and `.backend()` is a
keyring Secret Service backend usable in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ledger.vault.keyring_vault import KeyringVault
from tests.vault_contract import PersistedVaultContract

pytestmark = pytest.mark.slow


def _run_env(secret_service: Any) -> dict[str, str]:
    # The fixture's env names the bus and home; PATH and the rest come from this process.
    return {**os.environ, **secret_service.env}


class TestSecretServiceVault(PersistedVaultContract):
    @pytest.fixture(autouse=True)
    def _backend(self, secret_service: Any) -> None:
        self.secret_service = secret_service
        self.backend = secret_service.backend()
        # The daemon lives for the whole session: a per-test prefix keeps tests apart.
        self.prefix = f"contract-{uuid.uuid4().hex[:12]}"

    def make_vault(self, namespace: str = "contract") -> KeyringVault:
        return KeyringVault(self.backend, f"{self.prefix}:{namespace}")

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


class TestDirectSecretServiceVault(TestSecretServiceVault):
    """The same contract over ledger/vault/secret_service.py (no keyring import)."""

    @pytest.fixture(autouse=True)
    def _backend(self, secret_service: Any) -> None:
        from ledger.vault.secret_service import SecretServiceKeyring

        self.secret_service = secret_service
        self.backend = SecretServiceKeyring()
        self.prefix = f"direct-{uuid.uuid4().hex[:12]}"


def test_direct_backend_and_keyrings_read_each_others_items(secret_service: Any) -> None:
    from ledger.vault.secret_service import SecretServiceKeyring

    namespace = f"secrets-ledger:{uuid.uuid4().hex}"
    direct = KeyringVault(SecretServiceKeyring(), namespace)  # type: ignore[arg-type]
    keyrings = KeyringVault(secret_service.backend(), namespace)
    assert direct.description == keyrings.description == "keyring.backends.SecretService.Keyring"
    direct.put("a", "written directly ✓")
    keyrings.put("b", "written by keyring")
    assert keyrings.get("a") == "written directly ✓"
    assert direct.get("b") == "written by keyring"
    direct.put("b", "replaced directly")  # one item per entry, as keyring keeps it
    assert keyrings.get("b") == "replaced directly"
    assert keyrings.delete("a") is True and direct.get("a") is None
    assert direct.delete("b") is True and keyrings.get("b") is None
    assert direct.delete("b") is False


def test_select_backend_takes_the_direct_path_only_when_keyrings_class_is_named(
    secret_service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.vault.keyring_vault import select_backend
    from ledger.vault.secret_service import SecretServiceKeyring

    monkeypatch.delenv("SECRETS_LEDGER_VAULT", raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.SecretService.Keyring")
    assert isinstance(select_backend(str(tmp_path)), SecretServiceKeyring)
    # keyring applies KEYRING_PROPERTY_* to its backend: then keyring's own class is used.
    monkeypatch.setenv("KEYRING_PROPERTY_SCHEME", "default")
    assert type(select_backend(str(tmp_path))).__module__ == "keyring.backends.SecretService"


def test_a_read_imports_no_keyring(secret_service: Any, tmp_path: Path) -> None:
    from tests.clikit import REPO

    namespace = f"secrets-ledger:{uuid.uuid4().hex}"
    KeyringVault(secret_service.backend(), namespace).put("e", "value")
    probe = (
        "import sys\n"
        "from ledger.vault.keyring_vault import KeyringVault, select_backend\n"
        f"vault = KeyringVault(select_backend('.'), {namespace!r})\n"
        "assert vault.get('e') == 'value'\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'keyring', 'jaraco'}))\n"
    )
    env = {**_run_env(secret_service), "PYTHONPATH": str(REPO)}
    env.pop("SECRETS_LEDGER_VAULT", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
