"""Signed checkpoints and full verification on a real PostgreSQL store."""

from __future__ import annotations

from pathlib import Path

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)


def _no_spec(value: str) -> None:
    return None


def test_checkpoints_sign_and_verify_on_postgres(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    ledger = open_ledger(
        tmp_path / "home", create=True, backend=MemoryKeyring(), database_url=pg_url
    )
    try:
        ledger.checkpoint_every = 5
        cred = Credential(token=ledger.initialize("alice").token)
        for n in range(6):
            ledger.write(
                cred, SecretAddress("default", "svc", f"k{n}"), "v" * 20, spec_check=_no_spec
            )
        at, signed = ledger.checkpoint(cred)
        assert signed.sequence >= 2
        report, alarmed = ledger.audit_verify(cred)
        assert report.ok and not alarmed
        assert report.checkpoints_valid == report.checkpoints_checked == signed.sequence
        assert report.last_position == at
    finally:
        ledger.close()
