"""Faults in the parts the ledger builds on: a keychain that fails or locks midway, a ledger
held by another writer past the lock timeout, a full disk. Each must end in a clear error and
exit code, with nothing half-written and the chain intact."""

from __future__ import annotations

from pathlib import Path

from ledger.address import SecretAddress
from ledger.errors import LedgerUnavailable
from ledger.store.opening import open_ledger
from tests.fakes import FlakyKeyring
from tests.faults_kit import chain_ok, fault_value, fill_leaving, senior, tmpfs

# -- through the CLI: a full disk ----------------------------------------------------------


def test_a_full_disk_under_the_event_store_refuses_cleanly(tmp_path: Path) -> None:
    """The keychain has room, the event store does not: SQLite's "database or disk is full"."""
    keychain = FlakyKeyring()
    with tmpfs(tmp_path / "small", "4m") as mounted:
        app = open_ledger(mounted / "home", create=True, backend=keychain)
        alice = senior(app)
        filler = fill_leaving(mounted, leave=64 * 1024)
        written: dict[SecretAddress, str] = {}
        failure: LedgerUnavailable | None = None
        for n in range(400):
            address = SecretAddress("production", "nexus", f"full.key{n}")
            value = fault_value() + "y" * 2000
            try:
                app.write(alice, address, value)
            except LedgerUnavailable as exc:
                failure = exc
                break
            written[address] = value
        assert failure is not None and "full" in str(failure), failure
        assert written, "nothing fitted before the disk filled"
        stored = {u for (_, u) in keychain.entries if u.startswith("production/")}
        assert len(stored) == len(written)  # the refused value was removed again
        chain_ok(app)
        filler.unlink()
        assert app.doctor(alice).healthy
        for address, value in written.items():
            assert app.read(alice, address)[1] == value
        app.write(alice, SecretAddress("production", "nexus", "full.after"), fault_value())
        app.close()
