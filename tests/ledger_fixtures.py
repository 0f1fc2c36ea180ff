"""The `ledger` fixture: a fresh CLI ledger with a logged-in senior-engineer, per real vault
and per event store.

Three variants: the Secret Service and the encrypted file vault on the embedded SQLite store,
and the Secret Service on a real PostgreSQL server (a fresh database per test): the shared-ledger
setup. A test that opens or damages the SQLite file itself is marked `sqlite_file`: its
PostgreSQL variant is deselected at collection (the same attacks on PostgreSQL are in
tests/integration/test_chain_postgres.py and tests/integration/test_verify_fast.py), never
skipped at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, start_ledger

LEDGER_VARIANTS = ["secret-service", "file-vault", "postgres"]


@pytest.fixture(params=LEDGER_VARIANTS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """A fresh ledger with a logged-in senior-engineer, on each real vault backend and store."""
    home = tmp_path / "ledger-home"
    if request.param in ("secret-service", "postgres"):
        service = request.getfixturevalue("secret_service")
        url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
        return start_ledger(home, dict(service.env), service.backend, database_url=url)
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


def _sqlite_only(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return bool(item.get_closest_marker("sqlite_file")) and params.get("ledger") == "postgres"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the PostgreSQL variant of tests that work on the SQLite file itself."""
    dropped = [item for item in items if _sqlite_only(item)]
    if dropped:
        items[:] = [item for item in items if not _sqlite_only(item)]
        config.hook.pytest_deselected(items=dropped)
