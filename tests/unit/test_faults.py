"""Faults in the parts the ledger builds on: a keychain that fails or locks midway, a ledger
held by another writer past the lock timeout, a full disk. Each must end in a clear error and
exit code, with nothing half-written and the chain intact."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.address import SecretAddress
from ledger.application import SecretsLedger, entry_name
from ledger.errors import KeychainUnavailable, LedgerUnavailable
from ledger.operator import Operator, operator_id
from ledger.secret import Secret
from ledger.store.opening import open_ledger
from tests.fakes import FlakyKeyring
from tests.faults_kit import chain_ok, fault_value, senior


@pytest.fixture()
def keychain() -> FlakyKeyring:
    return FlakyKeyring()


@pytest.fixture()
def app(tmp_path: Path, keychain: FlakyKeyring) -> Iterator[SecretsLedger]:
    found = open_ledger(tmp_path / "home", create=True, backend=keychain)
    yield found
    found.close()


# -- in-process: the keychain ---------------------------------------------------------------


def test_keychain_failing_midway_through_many_secrets_leaves_no_half_write(
    app: SecretsLedger, keychain: FlakyKeyring
) -> None:
    alice = senior(app)
    addresses = [SecretAddress("production", "nexus", f"batch.key{n}") for n in range(6)]
    values = {a: fault_value() for a in addresses}
    keychain.fail_sets_after = keychain.sets + 3
    written: list[SecretAddress] = []
    with pytest.raises(KeychainUnavailable, match="keychain error"):
        for a in addresses:
            app.write(alice, a, values[a])
            written.append(a)
    assert written == addresses[:3]
    keychain.fail_sets_after = None
    for a in addresses:
        found = app.uow.load_secret(a)
        if a in written:
            assert app.read(alice, a)[1] == values[a]
        else:
            assert found is None or not found.versions  # no event for an unwritten value
    assert app.doctor(alice).healthy
    chain_ok(app)
    for a in addresses[3:]:  # the operator re-runs the batch: it completes
        app.write(alice, a, values[a])
    assert app.doctor(alice).healthy


def test_keychain_locked_before_a_write_records_nothing(
    app: SecretsLedger, keychain: FlakyKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = senior(app)
    address = SecretAddress("production", "nexus", "locked.key")
    app.write(alice, address, fault_value())
    events = app.recorder.max_notification_id()

    def locked(*_: object) -> None:
        raise RuntimeError("Keyring is locked")

    # A locked keychain refuses reads and writes alike (the fingerprint key is already held
    # in memory after the first write, so the write's own put is what meets the lock).
    monkeypatch.setattr(keychain, "get_password", locked)
    monkeypatch.setattr(keychain, "set_password", locked)
    with pytest.raises(KeychainUnavailable, match="locked"):
        app.write(alice, address, fault_value())
    monkeypatch.undo()
    assert app.recorder.max_notification_id() == events
    assert app.history(alice, address).current_version == 1


def test_keychain_failing_during_destroy_reports_leftovers_until_repaired(
    app: SecretsLedger, keychain: FlakyKeyring
) -> None:
    alice = senior(app)
    address = SecretAddress("production", "nexus", "doomed.key")
    for _ in range(3):
        app.write(alice, address, fault_value())
    keychain.fail_deletes = True
    _, leftovers = app.destroy(alice, address)
    assert len(leftovers) == 3  # told to the operator, not hidden
    keychain.fail_deletes = False
    report = app.doctor(alice)
    assert report.missing_values == [] and len(report.leftovers) == 3
    assert len(app.doctor(alice, repair=True).repaired) == 3
    assert app.doctor(alice).healthy
    chain_ok(app)


def test_an_error_after_commit_keeps_the_value(
    app: SecretsLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events can be committed before save() fails (here: an error escaping after the
    insert, as a connection lost during COMMIT would). Deleting the value on that failure
    would leave an event without its value."""
    alice = senior(app)
    address = SecretAddress("production", "nexus", "late.failure")
    value = fault_value()

    def broken(*_: object) -> None:
        raise RuntimeError("failed after commit")

    monkeypatch.setattr(app, "_take_snapshots", broken)
    with pytest.raises(RuntimeError):
        app.write(alice, address, value)
    monkeypatch.undo()
    assert app.read(alice, address)[1] == value
    assert app.doctor(alice).healthy


def test_a_snapshot_that_cannot_be_saved_does_not_fail_the_write(
    app: SecretsLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot is a cache taken after the commit: its failure is a warning, not an error
    that would make the caller (and the write path) believe nothing was recorded."""
    alice = senior(app)
    address = SecretAddress("production", "nexus", "snap.failure")
    values = [fault_value() for _ in range(60)]

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("snapshot store full")

    monkeypatch.setattr(app, "take_snapshot", broken)
    for value in values:  # crosses the 50-event snapshot interval
        app.write(alice, address, value)
    monkeypatch.undo()
    assert any("snapshot could not be saved" in p for p in app.post_commit_problems)
    assert app.read(alice, address)[1] == values[-1]
    assert app.history(alice, address).current_version == len(values)
    assert app.doctor(alice).healthy


def test_the_fiftieth_event_snapshot_loses_no_value(
    app: SecretsLedger, keychain: FlakyKeyring
) -> None:
    """Regression: a Secret's snapshot (every 50 events) failed to encode its `Version`
    records after the events were committed, and the write path then deleted the value."""
    alice = senior(app)
    address = SecretAddress("production", "nexus", "busy.key")
    values = [fault_value() for _ in range(40)]  # 40 versions + 30 prunes: past event 50
    for value in values:
        app.write(alice, address, value)
    token = app.grant(alice, "bob", "engineer").token
    for _ in range(30):  # Operator snapshots hold `Session` records
        app.login("bob", token)
    reopened = open_ledger(app.home, backend=keychain)
    secret = reopened.repository.get(address.id)
    assert isinstance(secret, Secret) and secret.version > 50
    assert sorted(secret.versions) == list(range(1, 41))
    for n in range(31, 41):
        assert reopened.read(alice, address, n)[1] == values[n - 1]
    bob = reopened.repository.get(operator_id("bob"))
    assert isinstance(bob, Operator) and len(bob.sessions) == 30
    with sqlite3.connect(app.home / "ledger.sqlite") as db:
        assert db.execute("SELECT count(*) FROM stored_snapshots").fetchone()[0] >= 1
    assert reopened.doctor(alice).healthy


def test_an_unwritable_intent_journal_refuses_the_write(app: SecretsLedger) -> None:
    alice = senior(app)
    address = SecretAddress("production", "nexus", "nojournal.key")
    (app.home / "pending").mkdir(exist_ok=True)
    os.rmdir(app.home / "pending")
    (app.home / "pending").write_text("a file where the journal directory belongs")
    with pytest.raises(LedgerUnavailable, match="pending keychain write"):
        app.write(alice, address, fault_value())
    assert app.uow.load_secret(address) is None


# -- through the CLI: a full disk ----------------------------------------------------------


def test_values_written_before_the_fault_keep_their_entry_names(app: SecretsLedger) -> None:
    """Sanity for the entry names the fault tests compute."""
    alice = senior(app)
    address = SecretAddress("production", "nexus", "names.key")
    value = fault_value()
    added = app.write(alice, address, value)
    assert app.vault.get(entry_name(address, 1, added.fingerprint)) == value
