"""Tampering with a copy of a real ledger file, case by case: what the hash chain detects, what
it cannot (and which other check covers it), and stored snapshots, which are outside the chain.

docs/reliability.md records the tally of cases tried and detected."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger
from ledger.errors import PermissionDenied
from ledger.integrity.snapshot_check import verify_snapshots
from ledger.store.chain import ChainReport, link, verify
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring

Tamper = Callable[[sqlite3.Connection], None]
ALICE_TOKEN = ""


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, MemoryKeyring]]:
    global ALICE_TOKEN
    home = tmp_path_factory.mktemp("original")
    keychain = MemoryKeyring()
    app = open_ledger(home, create=True, backend=keychain)
    issued = app.initialize("alice", retention=3)
    assert issued is not None
    alice = Credential(token=issued.token)
    ALICE_TOKEN = issued.token
    app.grant(alice, "bob", "analyst")
    for n in range(30):  # past 50 events on one secret: a snapshot exists
        app.write(alice, SecretAddress("production", "nexus", "busy.key"), f"value-{n:04d}-xyzzy")
    app.write(alice, SecretAddress("production", "github", "other.key"), "another-value-1234")
    app.checkpoint(alice)  # signed head + the keychain's witness of how far the log reached
    app.close()
    yield home, keychain


def _copy(original: tuple[Path, MemoryKeyring], tmp_path: Path) -> Path:
    home = tmp_path / "copy"
    shutil.copytree(original[0], home)
    return home


def _chain(home: Path, keychain: MemoryKeyring) -> ChainReport:
    app = open_ledger(home, backend=keychain)
    try:
        report, _ = verify(app.recorder.iter_rows(), app.recorder.iter_links())  # type: ignore[attr-defined]
    finally:
        app.close()
    return report


def _full(home: Path, keychain: MemoryKeyring) -> bool:
    """What `secrets audit verify` checks: chain, signed checkpoints, the keychain witness."""
    app = open_ledger(home, backend=keychain)
    try:
        witness = app.keychain_witness()
        return app.verify_history(None, [witness] if witness else []).fault is None
    finally:
        app.close()


def _count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT max(rowid) FROM stored_events").fetchone()[0])


def _edit_state(position: int) -> Tamper:
    def tamper(db: sqlite3.Connection) -> None:
        (state,) = db.execute(
            "SELECT state FROM stored_events WHERE rowid = ?", (position,)
        ).fetchone()
        flipped = bytes(state[:-2]) + bytes([state[-2] ^ 0x01]) + bytes(state[-1:])
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (flipped, position))

    return tamper


def _sql(*statements: str) -> Tamper:
    def tamper(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return tamper


def _swap_states(a: int, b: int) -> Tamper:
    def tamper(db: sqlite3.Connection) -> None:
        sa = db.execute("SELECT state FROM stored_events WHERE rowid = ?", (a,)).fetchone()[0]
        sb = db.execute("SELECT state FROM stored_events WHERE rowid = ?", (b,)).fetchone()[0]
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (sb, a))
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (sa, b))

    return tamper


def _forged_insert(db: sqlite3.Connection) -> None:
    row = db.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events "
        "ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    db.execute(
        "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
        "VALUES (?, ?, ?, ?)",
        (row[0], row[1] + 1, row[2], row[3]),
    )


def _edit_and_rechain(db: sqlite3.Connection) -> None:
    """An attacker who edits an event and recomputes every link after it: the chain needs no
    secret, so only signed checkpoints (audit branch) catch this."""
    _edit_state(5)(db)
    previous = bytes(32)
    rows = db.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
        "ORDER BY rowid"
    ).fetchall()
    for r in rows:
        previous = link(previous, r[0], r[1], r[2], r[3], bytes(r[4]))
        db.execute("UPDATE event_chain SET link = ? WHERE notification_id = ?", (previous, r[0]))


# (name, tamper, detected by the chain alone); full verification must detect every case
CASES: list[tuple[str, Tamper, bool]] = [
    *[(f"edit state of event {p}", _edit_state(p), True) for p in (1, 2, 5, 17, 40, 60)],
    ("edit the topic", _sql("UPDATE stored_events SET topic = topic || 'x' WHERE rowid = 7"), True),
    (
        "edit the originator version",
        _sql("UPDATE stored_events SET originator_version = 999 WHERE rowid = 9"),
        True,
    ),
    ("delete an event", _sql("DELETE FROM stored_events WHERE rowid = 11"), True),
    (
        "delete an event and its link",
        _sql(
            "DELETE FROM stored_events WHERE rowid = 12",
            "DELETE FROM event_chain WHERE notification_id = 12",
        ),
        True,
    ),
    ("insert a forged event", _forged_insert, True),
    ("swap two events", _swap_states(20, 21), True),
    (
        "edit a link",
        _sql("UPDATE event_chain SET link = zeroblob(32) WHERE notification_id = 3"),
        True,
    ),
    ("delete a link", _sql("DELETE FROM event_chain WHERE notification_id = 25"), True),
    (
        "cut off the newest event and its link",
        _sql(
            "DELETE FROM event_chain WHERE notification_id = "
            "(SELECT max(rowid) FROM stored_events)",
            "DELETE FROM stored_events WHERE rowid = (SELECT max(rowid) FROM stored_events)",
        ),
        False,  # a shorter chain is a valid chain: the keychain's witness catches it
    ),
    ("edit an event and recompute the chain", _edit_and_rechain, False),  # the checkpoint does
]


@pytest.mark.parametrize(("name", "tamper", "detected"), CASES, ids=[c[0] for c in CASES])
def test_chain_tampering(
    original: tuple[Path, MemoryKeyring],
    tmp_path: Path,
    name: str,
    tamper: Tamper,
    detected: bool,
) -> None:
    home = _copy(original, tmp_path)
    assert _chain(home, original[1]).ok
    with sqlite3.connect(home / "ledger.sqlite") as db:
        assert _count(db) > 60
        tamper(db)
    report = _chain(home, original[1])
    assert report.ok is not detected, (name, report)
    assert not _full(home, original[1]), f"{name}: not detected by full verification"


def _snapshot_ledger(home: Path, keychain: MemoryKeyring) -> SecretsLedger:
    return open_ledger(home, backend=keychain)


def test_untouched_snapshots_verify(original: tuple[Path, MemoryKeyring], tmp_path: Path) -> None:
    app = _snapshot_ledger(_copy(original, tmp_path), original[1])
    report = verify_snapshots(app)
    assert report.checked >= 1 and report.ok, report.faults
    app.close()


def test_an_edited_snapshot_escapes_the_chain_but_not_the_snapshot_check(
    original: tuple[Path, MemoryKeyring], tmp_path: Path
) -> None:
    home = _copy(original, tmp_path)
    with sqlite3.connect(home / "ledger.sqlite") as db:
        (oid, state) = db.execute(
            "SELECT originator_id, state FROM stored_snapshots LIMIT 1"
        ).fetchone()
        edited = bytes(state).replace(b'"deleted":false', b'"deleted":true', 1)
        assert edited != bytes(state)
        db.execute("UPDATE stored_snapshots SET state = ? WHERE originator_id = ?", (edited, oid))
    assert _chain(home, original[1]).ok  # the gap: snapshots are not chained
    app = _snapshot_ledger(home, original[1])
    report = verify_snapshots(app)
    assert [f.detail for f in report.faults] == ["its seal does not verify (edited or forged)"]
    app.close()
    # Without the ledger's key (an auditor holding only a bundle) the seal cannot be checked,
    # but the contents are still compared with the events.
    keyless = open_ledger(home, backend=MemoryKeyring())
    report = verify_snapshots(keyless)
    assert not report.seals_checked
    assert [f.detail for f in report.faults] == ["state differs from its events"]
    keyless.close()


def test_a_forged_operator_snapshot_is_found(
    original: tuple[Path, MemoryKeyring], tmp_path: Path
) -> None:
    """The dangerous case: an analyst promoted by a snapshot, not by an event. Operators are
    not snapshotted, so the attacker writes one: the real code's own snapshot of bob, with
    the role edited, sealed with a made-up key."""
    from ledger.codec.decoding import seal
    from ledger.operator import operator_id

    home = _copy(original, tmp_path)
    app = _snapshot_ledger(home, original[1])
    bob_token = app.grant(Credential(token=ALICE_TOKEN), "bob", "analyst").token
    for _ in range(50):
        app.login("bob", bob_token)
    bob = Credential(token=bob_token)
    with pytest.raises(PermissionDenied):
        app.write(bob, SecretAddress("production", "nexus", "busy.key"), "bobs-own-value-123")
    bob_now: Any = app.repository.get(operator_id("bob"))
    stored = app.mapper.to_stored_event(type(bob_now).Snapshot.take(bob_now))
    forged = seal(bytes(32), stored, bytes(32))
    edited = bytes(forged.state).replace(b'"analyst"', b'"senior-engineer"', 1)
    assert edited != bytes(forged.state)
    with sqlite3.connect(home / "ledger.sqlite") as db:
        db.execute(
            "INSERT INTO stored_snapshots VALUES (?, ?, ?, ?)",
            (operator_id("bob").hex, bob_now.version, stored.topic, edited),
        )
    reopened = _snapshot_ledger(home, original[1])
    report = verify_snapshots(reopened)
    assert [f.originator_id for f in report.faults] == [operator_id("bob").hex]
    assert _chain(home, original[1]).ok
    app.close()

    # `audit verify` (what an auditor runs) reports it as a fault, at the event it claims to
    # summarise, and records an alarm.
    alice = Credential(token=ALICE_TOKEN)
    audited, alarmed = reopened.audit_verify(alice)
    assert audited.fault is not None and audited.fault.kind == "snapshot", audited
    assert audited.snapshots_valid == audited.snapshots_checked - 1
    recorder = reopened.uow.chained_recorder()
    assert audited.fault.position == recorder.position_of(operator_id("bob"), bob_now.version)
    assert alarmed
    # Loads never believe it: bob's role is folded from his events.
    with pytest.raises(PermissionDenied):
        reopened.write(bob, SecretAddress("production", "nexus", "busy.key"), "forged-write-1234")
    # doctor names it; --repair drops it.
    bad = f"{operator_id('bob').hex}@{bob_now.version}"
    assert reopened.doctor(alice).bad_snapshots == [bad]
    repaired = reopened.doctor(alice, repair=True)
    assert repaired.repaired == [f"snapshot {bad}"]
    assert reopened.doctor(alice).bad_snapshots == []
    with pytest.raises(PermissionDenied):
        reopened.write(bob, SecretAddress("production", "nexus", "busy.key"), "bobs-own-value-1")
    reopened.close()
