"""The whole application against a plain model, driven by hypothesis.

Every use case (set, get, rollback, delete, restore, destroy, grant, revoke, login) by every
kind of operator, including low roles that must be refused, on a real SQLite file with an
in-memory keychain. After every step: the ledger agrees with the model (versions, current,
retained values, who holds which role), the hash chain verifies, no value ever written
appears in the store's bytes (ledger.sqlite and its WAL), and replaying the log
(projections/replay.py) up to an earlier position gives what the model held then.

`rotate` covers both kinds: a generated secret (database/database.password, the value made by
the ledger and learnt by the model from the keychain) and an external one given its value.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.access.credentials import Credential
from ledger.access.policy import SENIOR
from ledger.address import SecretAddress
from ledger.application import SecretsLedger, entry_name
from ledger.errors import NotFound, PermissionDenied, ValidationFailed
from ledger.rotation.generate import generate_value
from ledger.rotation.runs import Rotator
from ledger.store.chain import verify
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from projections.replay import Replayer

RETENTION = 3
ADDRESSES = [
    SecretAddress("production", "nexus", "model.key1"),
    SecretAddress("production", "nexus", "model.key2"),
    SecretAddress("staging", "github", "model.key1"),
]
# A generated-kind secret (built-in catalogue): only ever rotated, never `set` here.
GENERATED = SecretAddress("production", "database", "database.password")
EVERY = [*ADDRESSES, GENERATED]
NAMES = ["alice", "bob", "carol", "dave"]
# alice is the first senior-engineer: rotations by her mostly succeed, the others' are refused
MOSTLY_ALICE = st.just("alice") | st.sampled_from(NAMES)
ROLES = [SENIOR, "engineer", "analyst"]

# Long enough that finding one in the store's bytes cannot be chance.
values = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=16,
    max_size=40,
).map(lambda s: "val-" + s)


@dataclass
class ModelSecret:
    versions: dict[int, str | None] = field(default_factory=dict)  # None: value pruned
    deleted: bool = False
    destroyed: bool = False

    @property
    def current(self) -> int:
        return max(self.versions, default=0)

    def add(self, value: str) -> None:
        self.versions[self.current + 1] = value
        self.deleted = self.destroyed = False
        retained = sorted(n for n, v in self.versions.items() if v is not None)
        for n in retained[: max(0, len(retained) - RETENTION)]:
            self.versions[n] = None

    def readable(self, number: int | None) -> str | None:
        if self.destroyed or self.deleted:
            return None
        return self.versions.get(self.current if number is None else number)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ledger-model-"))
        self.keychain = MemoryKeyring()
        self.app: SecretsLedger = open_ledger(self.tmp / "home", create=True, backend=self.keychain)
        issued = self.app.initialize("alice", retention=RETENTION)
        assert issued is not None
        self.roles: dict[str, str | None] = {"alice": SENIOR}
        self.creds: dict[str, Credential] = {"alice": Credential(token=issued.token)}
        self.tokens: dict[str, str] = {"alice": issued.token}
        self.secrets: dict[SecretAddress, ModelSecret] = {}
        self.written: set[str] = set()
        self.rotator = Rotator(self.app)
        # One secret of each rotation kind exists from the start, so that rotations succeed
        # often enough in short runs (the others appear with `set`).
        generated = generate_value(self.rotator.spec(GENERATED))  # type: ignore[arg-type]
        for address, first in ((GENERATED, generated), (ADDRESSES[0], "val-first-external-0")):
            self.app.write(self.creds["alice"], address, first)
            self.secrets[address] = ModelSecret()
            self.secrets[address].add(first)
            self.written.add(first)
        # (ledger position, what the model held then) after every step
        self.seen: list[tuple[int, dict[str, object]]] = []

    def teardown(self) -> None:
        self.app.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------

    def _cred(self, who: str) -> Credential:
        return self.creds.get(who, Credential(token=f"slt.{who}.never-issued"))

    def _may_manage(self, who: str) -> bool:
        return self.roles.get(who) == SENIOR

    def _may_read(self, who: str) -> bool:
        return self.roles.get(who) is not None

    def _seniors(self) -> list[str]:
        return [n for n, r in self.roles.items() if r == SENIOR]

    # -- rules ----------------------------------------------------------------------------

    @rule(who=MOSTLY_ALICE, address=st.sampled_from(ADDRESSES), value=values)
    def set(self, who: str, address: SecretAddress, value: str) -> None:
        self.written.add(value)
        if not self._may_manage(who):
            try:
                self.app.write(self._cred(who), address, value)
            except PermissionDenied:
                return
            raise AssertionError(f"{who} ({self.roles.get(who)}) was allowed to set")
        self.app.write(self._cred(who), address, value)
        self.secrets.setdefault(address, ModelSecret()).add(value)

    @rule(who=st.sampled_from(NAMES), address=st.sampled_from(ADDRESSES))
    def set_invalid(self, who: str, address: SecretAddress) -> None:
        try:
            self.app.write(self._cred(who), address, "bad\x00value-with-a-nul")
        except (PermissionDenied, ValidationFailed) as exc:
            assert isinstance(exc, PermissionDenied) != self._may_manage(who)
            return
        raise AssertionError("a value with NUL was accepted")

    @rule(
        who=st.sampled_from(NAMES),
        address=st.sampled_from(EVERY),
        version=st.none() | st.integers(1, 8),
    )
    def get(self, who: str, address: SecretAddress, version: int | None) -> None:
        model = self.secrets.get(address)
        expected = model.readable(version) if model else None
        try:
            got = self.app.read(self._cred(who), address, version)[1]
        except PermissionDenied:
            assert not self._may_read(who)
            return
        except NotFound:
            assert self._may_read(who) and expected is None
            return
        assert self._may_read(who) and got == expected

    @rule(who=st.sampled_from(NAMES), address=st.sampled_from(ADDRESSES), version=st.integers(1, 8))
    def rollback(self, who: str, address: SecretAddress, version: int) -> None:
        model = self.secrets.get(address)
        try:
            self.app.rollback(self._cred(who), address, version)
        except PermissionDenied:
            assert not self._may_manage(who)
            return
        except NotFound:
            assert self._may_manage(who)
            assert model is None or model.readable(version) is None
            return
        except ValidationFailed as exc:
            assert exc.rule == "rollback-current" and model is not None
            assert version == model.current
            return
        assert self._may_manage(who) and model is not None
        old = model.readable(version)
        assert old is not None and version != model.current
        model.add(old)

    @rule(
        who=st.sampled_from(NAMES),
        address=st.sampled_from(EVERY),
        action=st.sampled_from(["delete", "restore", "destroy"]),
    )
    def lifecycle(self, who: str, address: SecretAddress, action: str) -> None:
        model = self.secrets.get(address)
        call = {"delete": self.app.delete, "restore": self.app.restore}.get(action)
        try:
            if call is not None:
                call(self._cred(who), address)
            else:
                self.app.destroy(self._cred(who), address)
        except PermissionDenied:
            assert not self._may_manage(who)
            return
        except NotFound:
            assert self._may_manage(who)
            assert (
                model is None
                or (action == "delete" and model.deleted)
                or (action == "restore" and model.destroyed)
            )
            return
        except ValidationFailed as exc:
            assert action == "restore" and exc.rule == "not-deleted"
            assert model is not None and not model.deleted
            return
        assert self._may_manage(who) and model is not None
        if action == "delete":
            assert not model.deleted
            model.deleted = True
        elif action == "restore":
            assert model.deleted and not model.destroyed
            model.deleted = False
        else:
            model.versions = dict.fromkeys(model.versions)
            model.deleted = model.destroyed = True

    @rule(who=MOSTLY_ALICE)
    def rotate_generated(self, who: str) -> None:
        self.rotate(who, GENERATED, None)

    @rule(who=MOSTLY_ALICE, address=st.sampled_from(ADDRESSES), value=values)
    def rotate_external(self, who: str, address: SecretAddress, value: str) -> None:
        self.rotate(who, address, value)

    @rule(who=MOSTLY_ALICE, address=st.sampled_from(EVERY), value=st.none() | values)
    def rotate(self, who: str, address: SecretAddress, value: str | None) -> None:
        """Generated: no value given, the ledger makes one. External: the value is given
        (without one it is refused: the provider issues it)."""
        model = self.secrets.get(address)
        if address == GENERATED:
            value = None
        elif value is not None:
            self.written.add(value)
        try:
            added = self.rotator.rotate(self._cred(who), address, value)
        except PermissionDenied:
            assert not self._may_manage(who)
            return
        except NotFound:
            assert self._may_manage(who)
            assert model is None or not model.versions or model.deleted
            return
        except ValidationFailed as exc:
            assert self._may_manage(who) and model is not None and not model.deleted
            assert exc.rule == "needs-value" and address != GENERATED and value is None
            return
        assert self._may_manage(who) and model is not None and not model.deleted
        assert added.number == model.current + 1 and added.reason == "rotation"
        if value is None:
            value = self.keychain.get_password(
                self.app.namespace, entry_name(address, added.number, added.fingerprint)
            )
            assert value is not None and value not in model.versions.values()
            self.written.add(value)
        model.add(value)

    @rule(who=st.sampled_from(NAMES), name=st.sampled_from(NAMES), role=st.sampled_from(ROLES))
    def grant(self, who: str, name: str, role: str) -> None:
        try:
            issued = self.app.grant(self._cred(who), name, role)
        except PermissionDenied:
            assert not self._may_manage(who)
            return
        except ValidationFailed as exc:
            assert exc.rule == "last-senior" and self._seniors() == [name]
            return
        assert self._may_manage(who)
        assert role == SENIOR or self._seniors() != [name]
        self.roles[name] = role
        self.tokens[name] = issued.token
        self.creds[name] = Credential(token=issued.token)

    @rule(who=st.sampled_from(NAMES), name=st.sampled_from(NAMES))
    def revoke(self, who: str, name: str) -> None:
        try:
            self.app.revoke(self._cred(who), name)
        except PermissionDenied:
            assert not self._may_manage(who)
            return
        except NotFound:
            assert self._may_manage(who) and self.roles.get(name) is None
            return
        except ValidationFailed as exc:
            assert exc.rule == "last-senior" and self._seniors() == [name]
            return
        assert self._may_manage(who) and self.roles.get(name) is not None
        self.roles[name] = None

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data())
    def login(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.tokens)))
        try:
            opened = self.app.login(name, self.tokens[name])
        except PermissionDenied:
            assert self.roles.get(name) is None  # revoked: the token no longer works
            return
        assert self.roles.get(name) == opened.role
        self.creds[name] = Credential(
            operator=name, session_id=opened.session_id, session_secret=opened.session_secret
        )

    @rule(who=st.sampled_from(NAMES))
    def forged_session(self, who: str) -> None:
        forged = Credential(operator=who, session_id="0" * 32, session_secret="x" * 43)
        try:
            self.app.write(forged, ADDRESSES[0], "val-forged-session-value")
        except PermissionDenied:
            return
        raise AssertionError("a forged session was accepted")

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def ledger_matches_the_model(self) -> None:
        for address in EVERY:
            model = self.secrets.get(address)
            found = self.app.uow.load_secret(address)
            if model is None:
                assert found is None or not found.versions
                continue
            assert found is not None
            assert found.current_version == model.current
            assert (found.deleted, found.destroyed) == (model.deleted, model.destroyed)
            for n, value in model.versions.items():
                version = found.versions[n]
                assert version.retained == (value is not None)
                stored = self.keychain.get_password(
                    self.app.namespace, entry_name(address, n, version.fingerprint)
                )
                assert stored == value
        for name, role in self.roles.items():
            operator = self.app.uow.load_operator(name)
            assert operator is not None and operator.role == role

    def _model_state(self) -> dict[str, object]:
        """What replay must show for the model: per secret, its current version, status and
        retained versions; per operator, its role."""
        secrets = {
            str(a): (
                m.current,
                m.deleted,
                m.destroyed,
                sorted(n for n, v in m.versions.items() if v is not None),
            )
            for a, m in self.secrets.items()
            if m.versions
        }
        return {"secrets": secrets, "roles": dict(self.roles)}

    @staticmethod
    def _replayed(state: dict[str, Any]) -> dict[str, object]:
        secrets = {
            f"{s['environment']}/{s['service']}/{s['name']}": (
                s["current_version"],
                s["deleted"],
                s["destroyed"],
                sorted(s["retained"]),
            )
            for s in state["secrets"].values()
            if s["current_version"] > 0
        }
        roles = {o["name"]: o["role"] for o in state["operators"].values()}
        return {"secrets": secrets, "roles": roles}

    @invariant()
    def replay_at_an_earlier_position_equals_what_was_seen_then(self) -> None:
        position = self.app.recorder.max_notification_id() or 0
        self.seen.append((position, self._model_state()))
        n = len(self.seen)
        # The step just before, the first and the middle one: every earlier position gets
        # compared at some later step, at a cost linear in the steps.
        for index in sorted({max(0, n - 2), 0, n // 2}):
            at, then = self.seen[index]
            assert self._replayed(Replayer(self.app).at_position(at)) == then, (index, at)

    @invariant()
    def chain_verifies(self) -> None:
        report, _ = verify(self.app.recorder.iter_rows(), self.app.recorder.iter_links())  # type: ignore[attr-defined]
        assert report.ok, report.fault

    @invariant()
    def no_value_in_the_store_bytes(self) -> None:
        home = self.app.home
        raw = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("ledger.sqlite"))
        for value in self.written:
            assert value.encode() not in raw

    @invariant()
    def keychain_holds_only_recorded_values(self) -> None:
        expected = sum(
            1 for m in self.secrets.values() for v in m.versions.values() if v is not None
        )
        held = [u for (_, u) in self.keychain.entries if u != "ledger.fingerprint-key"]
        assert len(held) == expected


LedgerMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
