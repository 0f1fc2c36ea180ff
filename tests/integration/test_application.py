"""The application's use cases on a real SQLite file with an in-memory keychain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger, entry_name
from ledger.errors import KeychainUnavailable, NotFound, PermissionDenied, ValidationFailed
from ledger.records import Denial, ReadReceipt, Rejection
from ledger.secret import Secret
from ledger.store.opening import open_ledger
from ledger.vault.intents import process_start
from tests.fakes import FlakyKeyring
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

ADDR = SecretAddress("production", "nexus", "mcp.bun.apiKey")
KEY = "sk-" + "a1B2" * 12


@pytest.fixture()
def keychain() -> FlakyKeyring:
    return FlakyKeyring()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, keychain: FlakyKeyring
) -> Iterator[SecretsLedger]:
    """A fresh ledger on each event store: the SQLite file, and a PostgreSQL database."""
    url = (
        request.getfixturevalue("pg_url")
        if request.param == "postgres"
        else f"sqlite://{tmp_path / 'home'}"
    )
    app = open_ledger(tmp_path / "home", create=True, backend=keychain, database_url=url)
    yield app
    app.close()


def _senior(ledger: SecretsLedger) -> Credential:
    issued = ledger.initialize("alice")
    assert issued is not None
    return Credential(token=issued.token)


def _events(ledger: SecretsLedger, kind: type) -> list[object]:
    topic = f"{kind.__module__}:{kind.__qualname__}"
    found = []
    for n in ledger.recorder.select_notifications(start=None, limit=10_000):
        if n.topic.startswith(topic):
            found.append(ledger.mapper.to_domain_event(n))
    return found


def test_set_get_versions_and_rollback(ledger: SecretsLedger) -> None:
    alice = _senior(ledger)
    v1 = ledger.write(alice, ADDR, KEY)
    v2 = ledger.write(alice, ADDR, KEY[:-1] + "z")
    assert (v1.number, v2.number) == (1, 2) and v1.fingerprint != v2.fingerprint
    assert ledger.read(alice, ADDR)[1] == KEY[:-1] + "z"
    assert ledger.read(alice, ADDR, 1)[1] == KEY
    v3 = ledger.rollback(alice, ADDR, 1)
    assert (v3.reason, v3.rolled_back_from, v3.fingerprint) == ("rollback", 1, v1.fingerprint)
    assert ledger.read(alice, ADDR)[1] == KEY
    assert len(_events(ledger, ReadReceipt)) == 3
    assert {e.operator for e in _events(ledger, Secret)} == {"alice"}  # type: ignore[attr-defined]


def test_fingerprint_is_keyed_not_a_bare_hash(ledger: SecretsLedger) -> None:
    import hashlib

    alice = _senior(ledger)
    v1 = ledger.write(alice, ADDR, KEY)
    assert v1.fingerprint != hashlib.sha256(KEY.encode()).hexdigest()
    other = open_ledger(ledger.home.parent / "other", create=True, backend=FlakyKeyring())
    other.initialize("alice")
    assert other.fingerprint(ADDR, KEY) != v1.fingerprint  # a different ledger, another key


def test_denials_are_recorded_and_stop_before_the_keychain(
    ledger: SecretsLedger, keychain: FlakyKeyring
) -> None:
    alice = _senior(ledger)
    bob = Credential(token=ledger.grant(alice, "bob", "analyst").token)
    before = dict(keychain.entries)
    with pytest.raises(PermissionDenied, match="set requires senior-engineer"):
        ledger.write(bob, ADDR, KEY)
    with pytest.raises(PermissionDenied, match="no operator session"):
        ledger.write(Credential(), ADDR, KEY)
    with pytest.raises(PermissionDenied):
        ledger.write(Credential(token="slt.alice.forged"), ADDR, KEY)
    assert keychain.entries == before
    denials = _events(ledger, Denial)
    assert [(d.operator, d.action) for d in denials] == [  # type: ignore[attr-defined]
        ("bob", "set"),
        ("anonymous", "set"),
        ("anonymous", "set"),
    ]


def test_invalid_value_is_rejected_and_recorded_without_the_value(ledger: SecretsLedger) -> None:
    alice = _senior(ledger)
    with pytest.raises(ValidationFailed):
        ledger.write(alice, ADDR, "")
    rejections = _events(ledger, Rejection)
    assert [r.rule for r in rejections] == ["empty"]  # type: ignore[attr-defined]


def test_keychain_failure_leaves_no_event_and_no_orphan(
    ledger: SecretsLedger, keychain: FlakyKeyring
) -> None:
    alice = _senior(ledger)
    ledger.write(alice, ADDR, KEY)
    keychain.fail_sets_after = keychain.sets
    with pytest.raises(KeychainUnavailable):
        ledger.write(alice, ADDR, KEY + "x")
    secret = ledger.history(alice, ADDR)
    assert secret.current_version == 1
    assert ledger.doctor(alice).healthy


def test_failed_append_removes_the_value_and_doctor_reports_what_it_could_not(
    ledger: SecretsLedger, keychain: FlakyKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = _senior(ledger)
    ledger.write(alice, ADDR, KEY)

    def refuse(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger, "save", refuse)
    keychain.fail_deletes = True  # clean-up fails too: the orphan must be reported
    with pytest.raises(RuntimeError):
        ledger.write(alice, ADDR, KEY + "y")
    monkeypatch.undo()
    keychain.fail_deletes = False
    report = ledger.doctor(alice)
    assert report.orphans == [entry_name(ADDR, 2, ledger.fingerprint(ADDR, KEY + "y"))]
    repaired = ledger.doctor(alice, repair=True)
    assert repaired.repaired == report.orphans
    assert ledger.doctor(alice).healthy


def test_doctor_lists_the_keychain_for_entries_no_event_refers_to(
    ledger: SecretsLedger, keychain: FlakyKeyring
) -> None:
    alice = _senior(ledger)
    v1 = ledger.write(alice, ADDR, KEY)
    ledger.write(alice, ADDR, KEY + "2")
    ns = ledger.namespace
    # Put straight into the namespace, with no intent and no event: v1's number under another
    # fingerprint, a version ahead of the ledger, a secret never set; and entries that are not
    # versions at all (the ledger's own keys, automation tokens, anything else).
    planted = sorted(
        [
            f"{ADDR}#v1.{'0' * 12}",
            f"{ADDR}#v7.{'a' * 12}",
            f"default/other/never.set#v1.{'b' * 12}",
        ]
    )
    for entry in planted:
        keychain.set_password(ns, entry, "planted")
    others = ["automation.rotation-bot.token", "ledger.checkpoint-witness", "notes#v1.x"]
    for entry in others:
        keychain.set_password(ns, entry, "not a version")
    keychain.set_password("another-ledger", f"{ADDR}#v9.{'c' * 12}", "not ours")

    report = ledger.doctor(alice)
    assert report.keychain_listed and report.orphans == planted and not report.healthy
    repaired = ledger.doctor(alice, repair=True)
    assert repaired.repaired == planted
    assert ledger.doctor(alice).healthy
    assert [keychain.get_password(ns, e) for e in planted] == [None] * 3
    assert [keychain.get_password(ns, e) for e in others] == ["not a version"] * 3
    assert keychain.get_password(ns, "ledger.fingerprint-key") is not None
    assert keychain.get_password("another-ledger", f"{ADDR}#v9.{'c' * 12}") == "not ours"
    assert ledger.read(alice, ADDR, 1)[1] == KEY and ledger.read(alice, ADDR)[1] == KEY + "2"
    assert ledger.vault.get(entry_name(ADDR, 1, v1.fingerprint)) == KEY


def test_doctor_never_repairs_a_write_another_process_is_still_making(
    ledger: SecretsLedger, keychain: FlakyKeyring
) -> None:
    alice = _senior(ledger)
    ledger.write(alice, ADDR, KEY)
    entry = f"{ADDR}#v2.{'d' * 12}"
    # Another process between its keychain put and its commit: its intent names it.
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        intent = ledger.intents.directory / "in-flight.intent"
        intent.parent.mkdir(parents=True, exist_ok=True)
        started = process_start(writer.pid)
        intent.write_text(
            json.dumps(
                {
                    "namespace": ledger.namespace,
                    "entry": entry,
                    "pid": writer.pid,
                    "started": started[1] if started else None,
                }
            )
        )
        keychain.set_password(ledger.namespace, entry, "being written")
        report = ledger.doctor(alice, repair=True)
        assert report.in_progress == [entry] and report.orphans == [] and report.repaired == []
        assert report.healthy and intent.exists()
        assert keychain.get_password(ledger.namespace, entry) == "being written"
        writer.kill()  # dead but not yet reaped (a zombie) is dead
        time.sleep(0.2)
        report = ledger.doctor(alice, repair=True)
        assert report.orphans == [entry] and report.repaired == [entry]
        assert not intent.exists() and keychain.get_password(ledger.namespace, entry) is None
    finally:
        writer.kill()
        writer.wait()
    assert ledger.doctor(alice).healthy


def test_delete_restore_destroy(ledger: SecretsLedger, keychain: FlakyKeyring) -> None:
    alice = _senior(ledger)
    ledger.write(alice, ADDR, KEY)
    ledger.delete(alice, ADDR)
    with pytest.raises(NotFound, match="deleted"):
        ledger.read(alice, ADDR)
    ledger.restore(alice, ADDR)
    assert ledger.read(alice, ADDR)[1] == KEY
    ledger.destroy(alice, ADDR)
    assert not [u for (_, u) in keychain.entries if u.startswith(str(ADDR))]
    with pytest.raises(NotFound, match="destroyed"):
        ledger.rollback(alice, ADDR, 1)


def test_last_senior_cannot_be_revoked_or_demoted(ledger: SecretsLedger) -> None:
    alice = _senior(ledger)
    with pytest.raises(ValidationFailed, match="last senior"):
        ledger.revoke(alice, "alice")
    with pytest.raises(ValidationFailed, match="last senior"):
        ledger.grant(alice, "alice", "analyst")


def test_sessions_login_expire_and_revoke(ledger: SecretsLedger) -> None:
    alice = _senior(ledger)
    token = ledger.grant(alice, "carol", "engineer").token
    opened = ledger.login("carol", token)
    carol = Credential(
        operator="carol", session_id=opened.session_id, session_secret=opened.session_secret
    )
    assert ledger.whoami(carol)[0] is not None
    forged = Credential(
        operator="alice", session_id=opened.session_id, session_secret=opened.session_secret
    )
    assert ledger.whoami(forged)[0] is None
    ledger.revoke(alice, "carol")
    assert ledger.whoami(carol)[0] is None
    with pytest.raises(PermissionDenied):
        ledger.login("carol", token)


def test_snapshots_round_trip_busy_secrets_and_operators(
    ledger: SecretsLedger, request: pytest.FixtureRequest
) -> None:
    """Snapshots are taken every 50 events: state must survive them exactly."""
    alice = _senior(ledger)
    for n in range(120):
        ledger.write(alice, ADDR, f"{KEY}{n}")
    for _ in range(30):
        opened = ledger.login("alice", alice.token or "")
        ledger.logout(
            Credential(
                operator="alice", session_id=opened.session_id, session_secret=opened.session_secret
            )
        )
    assert ledger.snapshots is not None
    url = request.getfixturevalue("pg_url") if "postgres" in request.node.callspec.id else None
    fresh = open_ledger(ledger.home, backend=ledger._backend, database_url=url)  # type: ignore[arg-type]
    secret = fresh.history(alice, ADDR)
    assert secret.current_version == 120
    assert secret.retained_versions == list(range(111, 121))
    assert secret.versions[120].timestamp.tzinfo is not None
    assert fresh.read(alice, ADDR)[1] == f"{KEY}119"
    assert fresh.whoami(alice)[0] is not None
    snapshots = list(ledger.snapshots.get(ADDR.id))
    assert snapshots, "no snapshot was taken"


def test_check_and_set_checks_again_after_losing_the_race(
    request: pytest.FixtureRequest, ledger: SecretsLedger, keychain: FlakyKeyring, tmp_path: Path
) -> None:
    """Issue 22: two writers start from v1 with `expected=1`. The second one saves first (while
    the first holds its value in the keychain, between its check and its save); the first then
    loses the store's race, reloads, and must fail the check again: exit 7, nothing written,
    its value gone from the keychain."""
    from ledger.errors import VersionConflict

    alice = _senior(ledger)
    ledger.write(alice, ADDR, KEY)
    url = (
        request.getfixturevalue("pg_url")
        if request.node.callspec.params["ledger"] == "postgres"
        else f"sqlite://{tmp_path / 'home'}"
    )
    other = open_ledger(tmp_path / "home", backend=keychain, database_url=url)
    vault = ledger.vault
    put = vault.put
    raced: list[int] = []

    def racing_put(entry: str, value: str) -> None:
        put(entry, value)
        if not raced and entry.startswith(str(ADDR)):
            raced.append(other.write(alice, ADDR, KEY[:-1] + "y", expected=1).number)

    vault.put = racing_put  # type: ignore[method-assign]
    try:
        with pytest.raises(VersionConflict, match="at v2, not v1"):
            ledger.write(alice, ADDR, KEY[:-1] + "z", expected=1)
    finally:
        other.close()
    assert raced == [2]
    secret = ledger.uow.load_secret(ADDR)
    assert secret is not None and sorted(secret.versions) == [1, 2]
    assert [u for _, u in keychain.entries if "#v3" in u] == []
    with pytest.raises(VersionConflict):
        ledger.rollback(alice, ADDR, 1, expected=1)
    assert ledger.rollback(alice, ADDR, 1, expected=2).number == 3
    assert ledger.write(alice, SecretAddress("production", "nexus", "new"), KEY, expected=0)
