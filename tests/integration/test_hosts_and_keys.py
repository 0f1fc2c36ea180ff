"""One ledger used from two hosts: values stay in the keychain of the host that wrote them,
the fingerprint key is shared with export-key/import-key, doctor checks only its own host.

Run on both stores; PostgreSQL is the real case (one database, many hosts)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import FINGERPRINT_KEY_ENTRY, SecretsLedger, entry_name
from ledger.errors import IntegrityFailure, KeychainUnavailable, PermissionDenied, ValidationFailed
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from projections.views import Views
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

ADDR = SecretAddress("production", "nexus", "mcp.bun.apiKey")
KEY = "sk-" + "a1B2" * 12


@dataclass
class Host:
    app: SecretsLedger
    keychain: MemoryKeyring


@dataclass
class Team:
    alpha: Host  # ran `init`: holds the fingerprint key
    beta: Host
    alice: Credential  # a senior-engineer's token works on every host


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite://{tmp_path / 'shared'}"


def _host(tmp_path: Path, url: str, name: str, create: bool = False) -> Host:
    keychain = MemoryKeyring()
    app = open_ledger(tmp_path / name, create=create, backend=keychain, database_url=url)
    app.host = name
    return Host(app, keychain)


@pytest.fixture
def team(tmp_path: Path, store_url: str) -> Iterator[Team]:
    alpha = _host(tmp_path, store_url, "alpha", create=True)
    issued = alpha.app.initialize("alice", retention=3)
    assert issued is not None
    beta = _host(tmp_path, store_url, "beta")
    yield Team(alpha, beta, Credential(token=issued.token))
    alpha.app.close()
    beta.app.close()


def test_a_value_written_elsewhere_is_named_with_its_host(team: Team) -> None:
    team.alpha.app.write(team.alice, ADDR, KEY)
    with pytest.raises(KeychainUnavailable, match="in the keychain of host 'alpha'"):
        team.beta.app.read(team.alice, ADDR)
    with pytest.raises(KeychainUnavailable, match="in the keychain of host 'alpha'"):
        team.beta.app.read(team.alice, ADDR, 1)
    team.alpha.app.write(team.alice, ADDR, KEY + "2")
    with pytest.raises(KeychainUnavailable, match="v1's value is in the keychain of host 'alpha'"):
        team.beta.app.rollback(team.alice, ADDR, 1)
    # On its own host a lost value is still reported as lost, with the advice to run doctor.
    team.alpha.keychain.entries.clear()
    with pytest.raises(KeychainUnavailable, match="secrets doctor"):
        team.alpha.app.read(team.alice, ADDR)


def test_a_second_host_needs_the_fingerprint_key_and_says_how_to_get_it(team: Team) -> None:
    with pytest.raises(KeychainUnavailable, match="import-key"):
        team.beta.app.write(team.alice, ADDR, KEY)


def test_export_and_import_share_the_key_and_are_recorded(team: Team) -> None:
    exported = team.alpha.app.export_key(team.alice)
    prefix, uid, key = exported.split(".")
    assert (prefix, uid) == ("slk1", team.alpha.app.settings.ledger_uid) and len(key) == 64
    assert team.beta.app.import_key(team.alice, exported) is True
    assert team.beta.app.import_key(team.alice, exported + "\n") is False  # already there
    assert team.alpha.app.fingerprint(ADDR, KEY) == team.beta.app.fingerprint(ADDR, KEY)
    v1 = team.beta.app.write(team.alice, ADDR, KEY)
    assert v1.host == "beta" and team.beta.app.read(team.alice, ADDR)[1] == KEY

    views = Views(team.alpha.app)
    views.catch_up()
    rows = [(r.code, r.action, r.operator) for r in views.audit(code="HBSE-014")]
    assert ("HBSE-014", "export-key", "alice") in rows
    assert ("HBSE-014", "import-key", "alice") in rows
    views.close()


def test_a_wrong_or_foreign_or_malformed_key_is_refused(team: Team, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="no recorded key check"):
        team.beta.app.import_key(
            team.alice, f"slk1.{team.alpha.app.settings.ledger_uid}.{'ab' * 32}"
        )
    exported = team.alpha.app.export_key(team.alice)
    uid = team.alpha.app.settings.ledger_uid
    with pytest.raises(ValidationFailed, match="not the key of this ledger"):
        team.beta.app.import_key(team.alice, f"slk1.{uid}.{'ab' * 32}")
    with pytest.raises(ValidationFailed, match="another ledger"):
        team.beta.app.import_key(team.alice, exported.replace(uid, "0" * 32))
    for bad in ("", "slk1.x", "slk1.a.b.c", f"slk2.{uid}.{'ab' * 32}", f"slk1.{uid}.{'zz' * 32}"):
        with pytest.raises(ValidationFailed, match="expected slk1"):
            team.beta.app.import_key(team.alice, bad)
    # A keychain already holding some other key for this ledger is not silently overwritten.
    team.beta.app.vault.put(FINGERPRINT_KEY_ENTRY, "cd" * 32)
    with pytest.raises(IntegrityFailure, match="different fingerprint key"):
        team.beta.app.import_key(team.alice, exported)
    assert not [k for k in team.beta.keychain.entries if exported.split(".")[2] in str(k)]


def test_only_a_senior_engineer_may_export(team: Team) -> None:
    bob = Credential(token=team.alpha.app.grant(team.alice, "bob", "engineer").token)
    with pytest.raises(PermissionDenied, match="export-key requires senior-engineer"):
        team.alpha.app.export_key(bob)
    with pytest.raises(PermissionDenied):
        team.alpha.app.export_key(Credential())


def test_doctor_checks_its_own_host_and_lists_the_others(team: Team) -> None:
    team.beta.app.import_key(team.alice, team.alpha.app.export_key(team.alice))
    team.alpha.app.write(team.alice, ADDR, KEY)
    team.beta.app.write(team.alice, ADDR, KEY + "b")
    team.alpha.app.write(team.alice, ADDR, KEY + "c")

    at_alpha = team.alpha.app.doctor(team.alice)
    assert (at_alpha.checked_versions, at_alpha.on_other_hosts) == (2, {"beta": 1})
    assert at_alpha.healthy
    at_beta = team.beta.app.doctor(team.alice)
    assert (at_beta.checked_versions, at_beta.on_other_hosts) == (1, {"alpha": 2})
    assert at_beta.healthy

    # A value lost on alpha is alpha's problem, not beta's.
    team.alpha.keychain.entries = {
        k: v for k, v in team.alpha.keychain.entries.items() if "#v1." not in k[1]
    }
    assert not team.alpha.app.doctor(team.alice).healthy
    assert len(team.alpha.app.doctor(team.alice).missing_values) == 1
    assert team.beta.app.doctor(team.alice).healthy


def test_a_version_pruned_from_another_host_is_a_leftover_there_until_repaired(
    team: Team,
) -> None:
    team.beta.app.import_key(team.alice, team.alpha.app.export_key(team.alice))
    v1 = team.alpha.app.write(team.alice, ADDR, KEY)
    for n in range(3):  # retention 3: beta's third write prunes alpha's v1
        team.beta.app.write(team.alice, ADDR, f"{KEY}{n}")
    entry = entry_name(ADDR, 1, v1.fingerprint)
    assert team.alpha.app.vault.get(entry) is not None  # beta cannot reach alpha's keychain
    report = team.alpha.app.doctor(team.alice)
    assert report.leftovers == [entry] and report.checked_versions == 1
    assert team.alpha.app.doctor(team.alice, repair=True).repaired == [entry]
    assert team.alpha.app.doctor(team.alice).healthy
    assert team.beta.app.doctor(team.alice).healthy


def test_listing_doctor_keeps_values_recorded_by_another_host(team: Team) -> None:
    # One keychain seen under two host names (a renamed host, two homes of one user): the
    # other host's values are in the listing, and recorded, so they are not orphans.
    team.beta.app.import_key(team.alice, team.alpha.app.export_key(team.alice))
    team.alpha.app.write(team.alice, ADDR, KEY)
    on_beta = team.beta.app.write(team.alice, ADDR, KEY + "b")
    ns = team.alpha.app.namespace
    beta_entry = entry_name(ADDR, 2, on_beta.fingerprint)
    team.alpha.keychain.set_password(ns, beta_entry, KEY + "b")
    planted = f"{ADDR}#v2.{'0' * 12}"  # v2 is taken by beta's value: this one has no event
    team.alpha.keychain.set_password(ns, planted, "planted")

    report = team.alpha.app.doctor(team.alice, repair=True)
    assert report.orphans == [planted] and report.repaired == [planted]
    assert team.alpha.keychain.get_password(ns, beta_entry) == KEY + "b"
    assert team.alpha.keychain.get_password(ns, FINGERPRINT_KEY_ENTRY) is not None
    assert team.alpha.app.doctor(team.alice).healthy
    assert team.beta.app.doctor(team.alice).healthy
