"""Rotation use cases in-process: a real SQLite ledger, an in-memory keychain, a frozen clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger
from ledger.context import frozen_clock
from ledger.errors import NotFound, PermissionDenied, ValidationFailed
from ledger.records import Incident, Rejection
from ledger.rotation.catalogue import load_catalogue
from ledger.rotation.runs import (
    DUE_SOON,
    EXEMPT,
    OK,
    OVERDUE,
    Rotator,
)
from ledger.rotation_records import RotationRun
from ledger.secret import Secret
from ledger.store.opening import open_ledger
from tests.fakes import FlakyKeyring

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PROD = "production"
BUN = SecretAddress(PROD, "nexus", "mcp.bun.apiKey")
DBPW = SecretAddress(PROD, "database", "database.password")
CHAT = SecretAddress(PROD, "telegram", "telegram.chat.id")
GH = SecretAddress(PROD, "github", "github.token")
BUN_KEY = "sk-" + "a1B2" * 12
GH_TOKEN = "ghp_" + "Ab3d" * 9


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture()
def clock() -> Iterator[Clock]:
    c = Clock(T0)
    with frozen_clock(c):
        yield c


@pytest.fixture()
def keychain() -> FlakyKeyring:
    return FlakyKeyring()


@pytest.fixture()
def ledger(
    tmp_path: Path, keychain: FlakyKeyring, clock: Clock, store_url: str
) -> Iterator[SecretsLedger]:
    app = open_ledger(tmp_path / "home", create=True, backend=keychain, database_url=store_url)
    yield app
    app.close()


@pytest.fixture()
def alice(ledger: SecretsLedger) -> Credential:
    issued = ledger.initialize("alice")
    assert issued is not None
    return Credential(token=issued.token)


def _events(ledger: SecretsLedger, kind: type) -> list[object]:
    topic = f"{kind.__module__}:{kind.__qualname__}"
    return [
        ledger.mapper.to_domain_event(n)
        for n in ledger.recorder.select_notifications(start=None, limit=100_000)
        if n.topic.startswith(topic)
    ]


def _version(ledger: SecretsLedger, alice: Credential, address: SecretAddress) -> int:
    return ledger.history(alice, address).current_version


def _seed(ledger: SecretsLedger, alice: Credential) -> None:
    ledger.write(alice, BUN, BUN_KEY)
    ledger.write(alice, DBPW, "p" * 40)
    ledger.write(alice, CHAT, "-1001234567")
    ledger.write(alice, GH, GH_TOKEN)


# -- policy ------------------------------------------------------------------------------------


def test_status_follows_the_value_age_through_sets_and_rollbacks(
    ledger: SecretsLedger, alice: Credential, clock: Clock
) -> None:
    rotator = Rotator(ledger)
    ledger.write(alice, BUN, BUN_KEY)
    ledger.write(alice, CHAT, "-1001234567")

    def status(days: float) -> tuple[str, ...]:
        found = rotator.assessments(T0 + timedelta(days=days))
        return tuple(a.status for a in found)

    # Sorted by address: nexus before telegram.
    assert status(10) == (OK, EXEMPT)
    assert status(75.9) == (OK, EXEMPT)
    assert status(76) == (DUE_SOON, EXEMPT)
    assert status(90) == (OVERDUE, EXEMPT)
    [bun, chat] = rotator.assessments(T0)
    assert (bun.last_rotation, bun.initial_value, bun.due) == (T0, True, T0 + timedelta(days=90))
    assert (chat.due, chat.kind) == (None, "none")

    clock.advance(days=50)
    ledger.write(alice, BUN, BUN_KEY[:-1] + "z")  # a manual set counts as a rotation
    [bun, _] = rotator.assessments(T0 + timedelta(days=60))
    assert (bun.status, bun.last_rotation, bun.due, bun.initial_value) == (
        OK,
        T0 + timedelta(days=50),
        T0 + timedelta(days=140),
        False,
    )
    assert bun.created == T0 and bun.age(T0 + timedelta(days=60)) == timedelta(days=10)

    clock.advance(days=10)
    ledger.rollback(alice, BUN, 1)  # the original value is back: as old as it ever was
    [bun, _] = rotator.assessments(T0 + timedelta(days=61))
    assert (bun.status, bun.last_rotation, bun.initial_value) == (OK, T0, True)
    assert rotator.assessments(T0 + timedelta(days=90))[0].status == OVERDUE


def test_team_catalogue_policy_applies(
    ledger: SecretsLedger, alice: Credential, tmp_path: Path
) -> None:
    team = tmp_path / "catalogue.toml"
    team.write_text(
        '[[key]]\nservice = "nexus"\nname = "mcp.bun.apiKey"\nformat = "api_key"\n'
        'rotation = "external"\nrotation_days = 30\nwarning_days = 7\n'
    )
    ledger.write(alice, BUN, BUN_KEY)
    rotator = Rotator(ledger, load_catalogue(team))
    [bun] = rotator.assessments(T0 + timedelta(days=24))
    assert (bun.status, bun.due) == (DUE_SOON, T0 + timedelta(days=30))


# -- rotate one --------------------------------------------------------------------------------


def test_rotate_one_generated_external_and_identifier(
    ledger: SecretsLedger, alice: Credential
) -> None:
    _seed(ledger, alice)
    rotator = Rotator(ledger)
    added = rotator.rotate(alice, DBPW)
    assert (added.number, added.reason) == (2, "rotation")
    new_password = ledger.read(alice, DBPW)[1]
    assert new_password != "p" * 40 and len(new_password) == 40

    with pytest.raises(ValidationFailed, match="provider") as needs:
        rotator.rotate(alice, BUN)
    assert needs.value.rule == "needs-value"
    added = rotator.rotate(alice, BUN, BUN_KEY[:-1] + "q")
    assert (added.number, added.reason) == (2, "rotation")

    with pytest.raises(ValidationFailed, match="identifier"):
        rotator.rotate(alice, CHAT)
    with pytest.raises(NotFound):
        rotator.rotate(alice, SecretAddress(PROD, "nexus", "missing"))
    assert _version(ledger, alice, CHAT) == 1


def test_rotate_rejects_a_bad_value_records_it_and_writes_nothing(
    ledger: SecretsLedger, alice: Credential, keychain: FlakyKeyring
) -> None:
    _seed(ledger, alice)
    before = dict(keychain.entries)
    with pytest.raises(ValidationFailed) as failed:
        Rotator(ledger).rotate(alice, BUN, "not-a-bun-key")
    assert failed.value.rule == "api_key" and "not-a-bun-key" not in str(failed.value)
    assert [r.rule for r in _events(ledger, Rejection)] == ["api_key"]  # type: ignore[attr-defined]
    assert _version(ledger, alice, BUN) == 1 and keychain.entries == before


def test_rotation_needs_a_senior_engineer(ledger: SecretsLedger, alice: Credential) -> None:
    _seed(ledger, alice)
    bob = Credential(token=ledger.grant(alice, "bob", "engineer").token)
    rotator = Rotator(ledger)
    with pytest.raises(PermissionDenied):
        rotator.rotate(bob, DBPW)
    with pytest.raises(PermissionDenied):
        rotator.rotate_batch(bob, "all")
    with pytest.raises(PermissionDenied):
        rotator.emergency(bob)
    with pytest.raises(PermissionDenied):
        rotator.provision(bob, "staging")


# -- batches -----------------------------------------------------------------------------------


def test_rotate_due_touches_only_due_secrets(
    ledger: SecretsLedger, alice: Credential, clock: Clock
) -> None:
    ledger.write(alice, BUN, BUN_KEY)
    ledger.write(alice, DBPW, "p" * 40)
    clock.advance(days=60)
    ledger.write(alice, GH, GH_TOKEN)
    ledger.write(alice, CHAT, "-1001234567")
    clock.advance(days=20)  # BUN and DBPW 80 days old: due soon; GH 20 days: fine

    report = Rotator(ledger).rotate_batch(alice, "due")
    assert [a for a, _, _ in report.rotated] == [str(DBPW)]
    assert report.needs_value == [str(BUN)]
    assert not report.complete
    assert (_version(ledger, alice, GH), _version(ledger, alice, CHAT)) == (1, 1)

    again = Rotator(ledger).rotate_batch(alice, "due", {BUN: BUN_KEY[:-1] + "w"})
    assert [a for a, _, _ in again.rotated] == [str(BUN)] and again.complete
    assert Rotator(ledger).rotate_batch(alice, "due").rotated == []


def test_rotate_all_rotates_everything_but_identifiers(
    ledger: SecretsLedger, alice: Credential
) -> None:
    _seed(ledger, alice)
    report = Rotator(ledger).rotate_batch(
        alice, "all", {BUN: BUN_KEY[:-1] + "x", GH: GH_TOKEN[:-1] + "x"}
    )
    assert sorted(a for a, _, _ in report.rotated) == sorted(map(str, [BUN, DBPW, GH]))
    assert report.skipped == [(str(CHAT), "identifier (rotation kind none)")]
    assert report.complete
    secret = ledger.history(alice, GH)
    assert secret.current is not None and secret.current.reason == "rotation"


def test_values_are_all_or_nothing_unless_partial(
    ledger: SecretsLedger, alice: Credential, keychain: FlakyKeyring
) -> None:
    _seed(ledger, alice)
    before = dict(keychain.entries)
    values = {
        BUN: "garbage",
        GH: GH_TOKEN[:-1] + "y",
        SecretAddress(PROD, "nexus", "unknown.key"): "whatever-value",
    }
    with pytest.raises(ValidationFailed, match="nothing was written") as refused:
        Rotator(ledger).rotate_batch(alice, "all", values)
    assert "garbage" not in str(refused.value) and "unknown-secret" in str(refused.value)
    assert keychain.entries == before
    assert [_version(ledger, alice, a) for a in (BUN, DBPW, GH)] == [1, 1, 1]
    assert _events(ledger, RotationRun) == []

    report = Rotator(ledger).rotate_batch(alice, "all", values, partial=True)
    assert sorted(a for a, _, _ in report.rotated) == sorted(map(str, [DBPW, GH]))
    assert sorted(a for a, _ in report.rejected) == [
        str(BUN),
        str(SecretAddress(PROD, "nexus", "unknown.key")),
    ]
    assert report.needs_value == [str(BUN)] and not report.complete


def test_interrupted_rotate_all_keeps_its_work_and_a_rerun_finishes(
    ledger: SecretsLedger, alice: Credential, keychain: FlakyKeyring
) -> None:
    names = [SecretAddress(PROD, "database", f"db{n}.password") for n in range(6)]
    for address in names:
        ledger.write(alice, address, f"{address.name}-initial-value")
    team = ledger.home / "team.toml"
    team.write_text(
        "".join(
            f'[[key]]\nservice = "database"\nname = "{a.name}"\nformat = "generated_password"\n'
            'rotation = "generated"\n'
            for a in names
        )
    )
    catalogue = load_catalogue(team)

    # 1. The keychain goes away after two rotations: two done, four failed, run still open.
    keychain.fail_sets_after = keychain.sets + 2
    first = Rotator(ledger, catalogue).rotate_batch(alice, "all")
    assert len(first.rotated) == 2 and len(first.failed) == 4
    assert "initial-value" not in repr(first.failed)
    assert Rotator(ledger, catalogue).open_run("all") is not None

    # 2. Ctrl-C after one more: that one stays done.
    keychain.fail_sets_after = None

    def interrupt_after_one(address: str, outcome: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Rotator(ledger, catalogue).rotate_batch(alice, "all", on_progress=interrupt_after_one)
    assert sorted(_version(ledger, alice, a) for a in names) == [1, 1, 1, 2, 2, 2]

    # 3. The rerun resumes the same run and rotates only what is left.
    last = Rotator(ledger, catalogue).rotate_batch(alice, "all")
    assert last.resumed and len(last.rotated) == 3 and last.complete
    assert [_version(ledger, alice, a) for a in names] == [2] * 6
    assert Rotator(ledger, catalogue).open_run("all") is None
    runs = Rotator(ledger, catalogue).runs()
    assert len(runs) == 1 and runs[0].complete and runs[0].rotated == 6
    assert ledger.doctor(alice).healthy

    # 4. The next --all is a new job.
    assert len(Rotator(ledger, catalogue).rotate_batch(alice, "all").rotated) == 6


# -- emergency ---------------------------------------------------------------------------------


def test_emergency_rotation_closes_other_sessions_and_records_the_incident(
    ledger: SecretsLedger, alice: Credential
) -> None:
    _seed(ledger, alice)
    alice_token = alice.token
    assert alice_token is not None
    here = ledger.login("alice", alice_token)
    elsewhere = ledger.login("alice", alice_token)
    bob_session = ledger.login("bob", ledger.grant(alice, "bob", "engineer").token)

    def cred(s: object) -> Credential:
        return Credential(
            operator=s.operator,  # type: ignore[attr-defined]
            session_id=s.session_id,  # type: ignore[attr-defined]
            session_secret=s.session_secret,  # type: ignore[attr-defined]
        )

    report = Rotator(ledger).emergency(cred(here), "laptop stolen", {GH: GH_TOKEN[:-1] + "e"})
    assert report.sessions_closed == 2
    assert ledger.whoami(cred(here))[0] is not None
    assert ledger.whoami(cred(elsewhere))[0] is None
    assert ledger.whoami(cred(bob_session))[0] is None

    assert sorted(a for a, _, _ in report.rotated) == sorted(map(str, [DBPW, GH]))
    assert report.needs_value == [str(BUN)]
    started, completed = _events(ledger, Incident)
    assert started.reason == "laptop stolen"  # type: ignore[attr-defined]
    assert sorted(completed.rotated) == sorted(map(str, [DBPW, GH]))  # type: ignore[attr-defined]
    assert completed.needs_value == [str(BUN)]  # type: ignore[attr-defined]
    added = [e for e in _events(ledger, Secret.VersionAdded) if e.reason == "emergency"]  # type: ignore[attr-defined]
    assert len(added) == 2
    assert {e.incident_id for e in added} == {report.incident_id}  # type: ignore[attr-defined]

    # The provider-issued value arrives later: same incident, only what was left.
    more = Rotator(ledger).emergency(cred(here), values={BUN: BUN_KEY[:-1] + "e"})
    assert more.resumed and more.incident_id == report.incident_id
    assert [a for a, _, _ in more.rotated] == [str(BUN)] and more.complete
    final = _events(ledger, Incident)[-1]
    assert sorted(final.rotated) == sorted(map(str, [BUN, DBPW, GH]))  # type: ignore[attr-defined]


# -- provision ---------------------------------------------------------------------------------


def test_provision_is_idempotent_and_dry_run_writes_nothing(
    ledger: SecretsLedger, alice: Credential, keychain: FlakyKeyring
) -> None:
    rotator = Rotator(ledger)
    head = ledger.recorder.max_notification_id()
    entries = dict(keychain.entries)
    staging_bun = SecretAddress("staging", BUN.service, BUN.name)
    dry = rotator.provision(alice, "staging", {staging_bun: BUN_KEY}, dry_run=True)
    assert ledger.recorder.max_notification_id() == head and keychain.entries == entries
    assert sorted(a for a, _, _ in dry.created) == [
        "staging/database/database.password",
        "staging/nexus/mcp.bun.apiKey",
    ]
    assert len(dry.missing) == 7

    values = {
        SecretAddress("staging", "nexus", "mcp.bun.apiKey"): BUN_KEY,
        SecretAddress("staging", "telegram", "telegram.chat.id"): "-100987654",
    }
    made = rotator.provision(alice, "staging", values)
    assert len(made.created) == 3 and len(made.missing) == 6 and not made.complete
    secret = ledger.history(alice, SecretAddress("staging", "nexus", "mcp.bun.apiKey"))
    assert secret.current is not None and secret.current.reason == "provision"

    again = rotator.provision(alice, "staging", values)
    assert again.created == [] and len(again.present) == 3
    assert sorted(again.ignored) == sorted(map(str, values))


def test_provision_refuses_unusable_values_before_writing(
    ledger: SecretsLedger, alice: Credential
) -> None:
    head = ledger.recorder.max_notification_id()
    with pytest.raises(ValidationFailed, match="nothing was written"):
        Rotator(ledger).provision(
            alice,
            "staging",
            {
                SecretAddress("staging", "nexus", "mcp.bun.apiKey"): "bad",
                SecretAddress("production", "nexus", "mcp.bun.apiKey"): BUN_KEY,
            },
        )
    kinds = {
        type(ledger.mapper.to_domain_event(n)).__qualname__
        for n in ledger.recorder.select_notifications(
            start=head, limit=100, inclusive_of_start=False
        )
    }
    assert kinds == {"Rejection.ValidationFailed"}
    with pytest.raises(ValidationFailed):
        Rotator(ledger).provision(alice, "Bad Env")


def test_rotation_events_reach_the_audit_view(ledger: SecretsLedger, alice: Credential) -> None:
    from projections.views import Views

    _seed(ledger, alice)
    Rotator(ledger).rotate_batch(alice, "all", {BUN: BUN_KEY[:-1] + "v", GH: GH_TOKEN[:-1] + "v"})
    Rotator(ledger).record_schedule(alice, "installed", "03:00", "marker")
    views = Views(ledger)
    try:
        views.catch_up()
        rows = views.audit(code="HBSE-004")
        kinds = [r.event for r in rows]
        assert kinds.count("Secret.VersionAdded") == 3
        assert {"RotationRun.Started", "RotationRun.BatchEnded"} <= set(kinds)
        assert "ScheduleChange.ScheduleChanged" in kinds
        assert all(BUN_KEY[:-1] not in r.detail for r in rows)
    finally:
        views.close()
