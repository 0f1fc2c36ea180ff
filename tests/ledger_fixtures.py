"""The `ledger` fixture: a fresh CLI ledger with a logged-in senior-engineer, per real vault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, start_ledger


@pytest.fixture(params=["secret-service", "file-vault"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """A fresh ledger with a logged-in senior-engineer, on each real vault backend."""
    home = tmp_path / "ledger-home"
    if request.param == "secret-service":
        service = request.getfixturevalue("secret_service")
        return start_ledger(home, dict(service.env), service.backend)
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    env.update({"SECRETS_LEDGER_VAULT": "file", "SECRETS_LEDGER_PASSPHRASE": FILE_VAULT_PASSPHRASE})
    return start_ledger(
        home,
        env,
        lambda: EncryptedFileKeyring(
            path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE
        ),
    )
