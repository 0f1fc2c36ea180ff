"""Tampering with a real SQLite ledger file, one way at a time: each is found, with its kind and
position, and an untouched ledger always verifies."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.checkpoint import CHECKPOINT_TOPIC, public_hex_from_pem, public_pem
from ledger.errors import IntegrityFailure
from ledger.store.chain import GENESIS, link
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring

_KEEP: list[object] = []


def _no_spec(value: str) -> None:
    return None


def build(home: Path, secrets: int = 6, every: int = 7) -> tuple[Any, Credential]:
    ledger = open_ledger(home, create=True, backend=MemoryKeyring())
    ledger.checkpoint_every = every
    issued = ledger.initialize("alice")
    cred = Credential(token=issued.token)
    for n in range(secrets):
        address = SecretAddress("default", "svc", f"key{n}")
        ledger.write(cred, address, f"value-{n}-" + "z" * 24, spec_check=_no_spec)
    _KEEP.append(ledger)
    return ledger, cred


@contextmanager
def raw(home: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(home / "ledger.sqlite", isolation_level=None)
    try:
        db.execute("BEGIN")
        yield db
        db.execute("COMMIT")
    finally:
        db.close()


def relink(db: sqlite3.Connection) -> None:
    """What an attacker who knows the chain's recipe does after tampering: recompute it."""
    db.execute("DELETE FROM event_chain")
    previous = GENESIS
    for rowid, oid, version, topic, state in db.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
        "ORDER BY rowid"
    ).fetchall():
        data = state if isinstance(state, bytes) else str(state).encode()
        previous = link(previous, rowid, oid, version, topic, data)
        db.execute("INSERT INTO event_chain VALUES (?, ?)", (rowid, previous))


def checkpoint_rows(home: Path) -> list[int]:
    with raw(home) as db:
        return [
            r[0]
            for r in db.execute(
                "SELECT rowid FROM stored_events WHERE topic = ? ORDER BY rowid",
                (CHECKPOINT_TOPIC,),
            )
        ]


def fault_of(ledger: Any) -> tuple[int, str]:
    report = ledger.verify_history(witnesses=[w for w in [ledger.keychain_witness()] if w])
    assert report.fault is not None, report
    return report.fault.position, report.fault.kind


def test_untouched_ledger_verifies_with_its_checkpoints(tmp_path: Path) -> None:
    ledger, cred = build(tmp_path)
    at, signed = ledger.checkpoint(cred)
    report, alarmed = ledger.audit_verify(cred)
    assert report.ok and not alarmed
    assert report.events_checked == report.events_valid == at
    assert report.checkpoints_checked == report.checkpoints_valid == signed.sequence >= 2
    assert report.public_key == signed.public_key


def test_automatic_checkpoints_every_n_events(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path, secrets=10, every=5)
    positions = checkpoint_rows(tmp_path)
    assert len(positions) >= 4
    latest = ledger.latest_checkpoint()
    assert latest is not None and latest[0] == positions[-1]
    assert latest[1].position == positions[-1] - 1


def test_flipped_byte_is_edited_at_its_position(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path)
    with raw(tmp_path) as db:
        state = bytearray(
            db.execute("SELECT state FROM stored_events WHERE rowid = 5").fetchone()[0]
        )
        state[40] ^= 0x01
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = 5", (bytes(state),))
    assert fault_of(ledger) == (5, "edited")


def test_deleted_row_is_deleted_at_its_position(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path)
    with raw(tmp_path) as db:
        db.execute("DELETE FROM stored_events WHERE rowid = 9")
    assert fault_of(ledger) == (9, "deleted")


def test_deleted_row_and_link_is_deleted_at_the_hole(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path)
    with raw(tmp_path) as db:
        db.execute("DELETE FROM stored_events WHERE rowid = 9")
        db.execute("DELETE FROM event_chain WHERE notification_id = 9")
    assert fault_of(ledger) == (9, "deleted")


def test_swapped_rows_are_reordered(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path)
    with raw(tmp_path) as db:
        a = db.execute(
            "SELECT originator_id, originator_version, topic, state "
            "FROM stored_events WHERE rowid = 8"
        ).fetchone()
        b = db.execute(
            "SELECT originator_id, originator_version, topic, state "
            "FROM stored_events WHERE rowid = 12"
        ).fetchone()
        db.execute("UPDATE stored_events SET originator_id = 'tmp' WHERE rowid = 8")
        db.execute(
            "UPDATE stored_events SET originator_id = ?, originator_version = ?, "
            "topic = ?, state = ? WHERE rowid = 12",
            a,
        )
        db.execute(
            "UPDATE stored_events SET originator_id = ?, originator_version = ?, "
            "topic = ?, state = ? WHERE rowid = 8",
            b,
        )
    position, kind = fault_of(ledger)
    assert (position, kind) == (8, "reordered")
    report = ledger.verify_history()
    assert report.fault is not None and "belongs at 12" in report.fault.detail


def test_forged_row_is_inserted(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path)
    with raw(tmp_path) as db:
        last = db.execute("SELECT max(rowid) FROM stored_events").fetchone()[0]
        db.execute(
            "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
            "SELECT ?, originator_id, originator_version + 100, topic, state FROM stored_events "
            "WHERE rowid = 5",
            (last + 1,),
        )
    assert fault_of(ledger) == (last + 1, "inserted")


def test_rewritten_and_relinked_history_breaks_the_signed_head(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path)
    first_checkpoint = checkpoint_rows(tmp_path)[0]
    with raw(tmp_path) as db:
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'manual', 'rotate') WHERE rowid = 5"
        )
        relink(db)
    position, kind = fault_of(ledger)
    assert kind == "edited" and position == first_checkpoint - 1


def test_truncated_tail_after_a_checkpoint(tmp_path: Path) -> None:
    ledger, cred = build(tmp_path)
    _, signed = ledger.checkpoint(cred)
    with raw(tmp_path) as db:
        db.execute("DELETE FROM stored_events WHERE rowid > ?", (signed.position - 2,))
        db.execute("DELETE FROM event_chain WHERE notification_id > ?", (signed.position - 2,))
    assert fault_of(ledger) == (signed.position - 1, "truncated")


def test_truncated_events_leaving_their_links(tmp_path: Path) -> None:
    ledger, _ = build(tmp_path)
    with raw(tmp_path) as db:
        last = db.execute("SELECT max(rowid) FROM stored_events").fetchone()[0]
        db.execute("DELETE FROM stored_events WHERE rowid > ?", (last - 3,))
    assert fault_of(ledger) == (last - 2, "truncated")


@pytest.mark.parametrize("relinked", [False, True])
def test_replaced_checkpoint_signature(tmp_path: Path, relinked: bool) -> None:
    ledger, _ = build(tmp_path)
    target = checkpoint_rows(tmp_path)[1]
    with raw(tmp_path) as db:
        state = json.loads(
            db.execute("SELECT state FROM stored_events WHERE rowid = ?", (target,)).fetchone()[0]
        )
        forged = state["signature"][::-1]
        raw_state = db.execute(
            "SELECT state FROM stored_events WHERE rowid = ?", (target,)
        ).fetchone()[0]
        db.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            (bytes(raw_state).replace(state["signature"].encode(), forged.encode()), target),
        )
        if relinked:
            relink(db)
    assert fault_of(ledger) == (target, "signature")


def test_a_pinned_key_rejects_checkpoints_signed_by_another_key(tmp_path: Path) -> None:
    ledger, cred = build(tmp_path)
    own = ledger.checkpoint_public_key(cred)
    assert public_hex_from_pem(public_pem(own).encode()) == own
    assert ledger.verify_history(pinned_key=own).ok
    other, other_cred = build(tmp_path / "other")
    report = ledger.verify_history(pinned_key=other.checkpoint_public_key(other_cred))
    assert report.fault is not None and report.fault.kind == "signature"


def test_a_fault_records_an_integrity_alarm(tmp_path: Path) -> None:
    ledger, cred = build(tmp_path)
    with raw(tmp_path) as db:
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'manual', 'rotate') WHERE rowid = 5"
        )
    report, alarmed = ledger.audit_verify(cred)
    assert alarmed and report.fault is not None
    with raw(tmp_path) as db:
        topic = db.execute(
            "SELECT topic FROM stored_events ORDER BY rowid DESC LIMIT 1"
        ).fetchone()[0]
    assert topic == "ledger.records:IntegrityAlarm.IntegrityCheckFailed"


def test_a_keychain_with_another_signing_key_is_refused(tmp_path: Path) -> None:
    ledger, cred = build(tmp_path)
    ledger.vault.put("ledger.checkpoint-key", "11" * 32)
    with pytest.raises(IntegrityFailure):
        ledger.checkpoint(cred)


def test_a_broken_chain_is_never_signed(tmp_path: Path) -> None:
    ledger, cred = build(tmp_path, every=0)
    with raw(tmp_path) as db:
        last = db.execute("SELECT max(rowid) FROM stored_events").fetchone()[0]
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'manual', 'rotate') WHERE rowid = ?",
            (last,),
        )
    with pytest.raises(IntegrityFailure, match="refusing to sign"):
        ledger.checkpoint(cred)
    assert checkpoint_rows(tmp_path) == []


def test_checkpoints_continue_the_signature_chain_across_processes(tmp_path: Path) -> None:
    ledger, cred = build(tmp_path)
    first = ledger.checkpoint(cred)[1]
    again = open_ledger(tmp_path, backend=ledger._backend)
    _KEEP.append(again)
    second = again.checkpoint(cred)[1]
    assert second.sequence == first.sequence + 1
    assert second.previous_signature == first.signature
    assert again.verify_history(pinned_key=first.public_key).ok


def test_a_failed_automatic_checkpoint_never_costs_a_write_its_value(tmp_path: Path) -> None:
    from tests.fakes import FlakyKeyring

    keyring = FlakyKeyring()
    ledger = open_ledger(tmp_path, create=True, backend=keyring)
    _KEEP.append(ledger)
    cred = Credential(token=ledger.initialize("alice").token)
    head = ledger.recorder.max_notification_id()
    ledger.checkpoint_every = head + 2  # the next write's two events cross it
    keyring.fail_sets_after = keyring.sets + 1  # the value goes in; the signing key cannot
    address = SecretAddress("default", "svc", "key")
    ledger.write(cred, address, "value-" + "q" * 24, spec_check=_no_spec)
    assert any("automatic checkpoint skipped" in p for p in ledger.post_commit_problems)
    assert checkpoint_rows(tmp_path) == []
    assert ledger.read(cred, address)[1] == "value-" + "q" * 24


def test_after_restoring_a_backup_a_senior_can_reset_the_witness(tmp_path: Path) -> None:
    import shutil

    ledger, cred = build(tmp_path / "live", every=0)
    ledger.checkpoint(cred)
    backup = tmp_path / "backup.sqlite"
    with sqlite3.connect(tmp_path / "live" / "ledger.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(tmp_path / "live" / "ledger.sqlite", backup)
    for n in range(3):
        ledger.write(
            cred, SecretAddress("default", "svc", f"late{n}"), "v" * 20, spec_check=_no_spec
        )
    ledger.checkpoint(cred)
    _KEEP.append(ledger)

    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(backup, restored / "ledger.sqlite")
    again = open_ledger(restored, backend=ledger._backend)
    _KEEP.append(again)
    report, _ = again.audit_verify(cred)
    assert report.fault is not None and report.fault.kind == "truncated"
    again.checkpoint(cred, reset_witness=True)
    report, _ = again.audit_verify(cred)
    assert report.ok, report.fault
    with raw(restored) as db:
        kinds = [
            json.loads(r[0])["fault"]
            for r in db.execute(
                "SELECT state FROM stored_events WHERE topic LIKE '%IntegrityCheckFailed'"
            )
        ]
    assert kinds == ["truncated", "witness-reset"]
