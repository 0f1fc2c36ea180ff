"""SIGKILL the real CLI at every step boundary of a write, many times over, and prove recovery.

The process kills itself through the crash-point seam (ledger/store/crashpoints.py) exactly at a
boundary: after the keychain write, after the event append, after a prune or destroy append
(before the old values are deleted), in the middle of a projection catch-up, and at the k-th
secret of a `rotate --all` or `emergency-rotate` batch; `rotate --service S --name N` at each
boundary of its write. After each crash, in this order:

- no event refers to a missing value (doctor's `missing_values` is empty);
- whatever the crash left in the keychain is reported by doctor and removed by `--repair`;
- the hash chain verifies over every stored row;
- the views catch up to exactly what a rebuild from the log gives;
- re-running the interrupted command succeeds and leaves the intended state.

`SECRETS_LEDGER_CRASH_RUNS` sets the runs per crash point (default 5); docs/reliability.md
records the figures.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger, entry_name
from ledger.integrity.doctor import DoctorReport
from ledger.store.chain import verify
from projections.views import Views
from tests.clikit import Ledger

# 5 keeps CI (2 cores, both vaults, one 90-minute budget for every suite) to a few minutes;
# the figures in docs/reliability.md come from runs with 20.
RUNS = int(os.environ.get("SECRETS_LEDGER_CRASH_RUNS", "5"))
KILLED = -9


def _value() -> str:
    return "sk-crash-" + secrets.token_urlsafe(24)


@dataclass
class Harness:
    ledger: Ledger
    tmp: Path

    @property
    def app(self) -> SecretsLedger:
        app: SecretsLedger = self.ledger._app()
        return app

    @property
    def cred(self) -> Credential:
        return Credential(token=self.ledger.token)

    def write(self, address: SecretAddress, value: str) -> None:
        self.app.write(self.cred, address, value)

    def crash(self, point: str, *args: str, stdin: str | None = None) -> None:
        result = self.ledger.run(*args, input=stdin, env={"SECRETS_LEDGER_CRASHPOINT": point})
        assert result.returncode == KILLED, (point, result.returncode, result.stderr)

    def rerun(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self.ledger.run(*args, input=stdin)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result

    def doctor(self, *, via_cli: bool, repair: bool) -> DoctorReport | dict[str, Any]:
        if via_cli:
            args = ["doctor", "--output", "json"] + (["--repair"] if repair else [])
            result = self.ledger.run(*args)
            assert result.returncode in (0, 6), result.stderr
            import json

            found: dict[str, Any] = json.loads(result.stdout)
            return found
        return self.app.doctor(self.cred, repair=repair)

    def check_consistent(self) -> None:
        """The invariants that must hold after any crash, before any repair."""
        app = self.app
        report, _ = verify(app.recorder.iter_rows(), app.recorder.iter_links())  # type: ignore[attr-defined]
        assert report.ok, report.fault
        views = Views(app)
        rebuilt = Views(app, path=self.tmp / f"rebuild-{secrets.token_hex(4)}.sqlite")
        try:
            views.catch_up()
            rebuilt.rebuild()
            assert views.secrets(include_deleted=True) == rebuilt.secrets(include_deleted=True)
            assert views.audit() == rebuilt.audit()
            assert views.operators() == rebuilt.operators()
        finally:
            views.close()
            rebuilt.close()
            rebuilt.path.unlink()


def _report(found: DoctorReport | dict[str, Any]) -> dict[str, list[str]]:
    if isinstance(found, DoctorReport):
        return {
            "missing_values": found.missing_values,
            "orphans": found.orphans,
            "leftovers": found.leftovers,
            "repaired": found.repaired,
        }
    return {k: found[k] for k in ("missing_values", "orphans", "leftovers", "repaired")}


def _recover(h: Harness, run: int, expect: Callable[[dict[str, list[str]]], bool | None]) -> None:
    """Check, let doctor see exactly what the crash left, repair it, and check again."""
    h.check_consistent()
    via_cli = run == 0  # the CLI once per crash point; in-process (same code) after that
    seen = _report(h.doctor(via_cli=via_cli, repair=False))
    assert seen["missing_values"] == [], "an event refers to a value that is gone"
    assert expect(seen) is not False  # an `expect` may assert or return a verdict
    fixed = _report(h.doctor(via_cli=via_cli, repair=True))
    assert sorted(fixed["repaired"]) == sorted(seen["orphans"] + seen["leftovers"])
    assert _report(h.doctor(via_cli=False, repair=False)) == {
        "missing_values": [],
        "orphans": [],
        "leftovers": [],
        "repaired": [],
    }


def _set_args(address: SecretAddress) -> list[str]:
    return [
        "set",
        "-e",
        address.environment,
        "--service",
        address.service,
        "--name",
        address.name,
        "--value-stdin",
    ]


def _get(h: Harness, address: SecretAddress) -> str:
    return h.app.read(h.cred, address)[1]


@pytest.fixture()
def harness(ledger: Ledger, tmp_path: Path) -> Harness:
    return Harness(ledger, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-vault-put", "after-append", "after-prune-append"])
def test_set_survives_sigkill(harness: Harness, point: str) -> None:
    h = harness
    address = SecretAddress("production", "nexus", f"crash.{point.replace('-', '.')}")
    if point == "after-prune-append":
        for _ in range(10):  # the default retention: every further version prunes one
            h.write(address, _value())
    for run in range(RUNS):
        value = _value()
        before = (
            h.app.history(h.cred, address).current_version
            if run or point.endswith("prune-append")
            else 0
        )
        h.crash(point, *_set_args(address), stdin=value)
        current = h.app.uow.load_secret(address)
        recorded = current.current_version if current is not None else 0
        if point == "after-vault-put":
            assert recorded == before
            orphan = entry_name(address, before + 1, h.app.fingerprint(address, value))

            def expect(seen: dict[str, list[str]], orphan: str = orphan) -> None:
                assert seen["orphans"] == [orphan] and seen["leftovers"] == []

        else:
            # after-append and after-prune-append: the events landed; a write beyond the
            # retention also pruned a version whose value the crash left behind.
            assert recorded == before + 1
            leftovers: list[str] = []
            if recorded > 10:
                pruned = h.app.uow.load_secret(address).versions[recorded - 10]  # type: ignore[union-attr]
                leftovers = [entry_name(address, pruned.number, pruned.fingerprint)]
            assert leftovers or point == "after-append"

            def expect(seen: dict[str, list[str]], leftovers: list[str] = leftovers) -> None:
                # The stale intent of a landed event resolves silently: never an orphan.
                assert seen["orphans"] == [] and seen["leftovers"] == leftovers

        _recover(h, run, expect)
        h.rerun(*_set_args(address), stdin=value)
        assert _get(h, address) == value
        h.check_consistent()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-vault-put", "after-append", "after-prune-append"])
def test_rollback_survives_sigkill(harness: Harness, point: str) -> None:
    h = harness
    address = SecretAddress("production", "nexus", f"rollback.{point.replace('-', '.')}")
    count = 10 if point == "after-prune-append" else 2
    for _ in range(count):
        h.write(address, _value())
    for run in range(RUNS):
        secret = h.app.history(h.cred, address)
        before = secret.current_version
        target = before - 1
        expected = h.app.read(h.cred, address, target)[1]
        args = [
            "rollback",
            "-e",
            address.environment,
            "--service",
            address.service,
            "--name",
            address.name,
            "--version",
            str(target),
        ]
        h.crash(point, *args)
        recorded = h.app.history(h.cred, address).current_version
        assert recorded == (before if point == "after-vault-put" else before + 1)
        orphans = (
            [entry_name(address, before + 1, secret.versions[target].fingerprint)]
            if point == "after-vault-put"
            else []
        )

        def expect(
            seen: dict[str, list[str]], orphans: list[str] = orphans, recorded: int = recorded
        ) -> None:
            assert seen["orphans"] == orphans
            pruning = point != "after-vault-put" and recorded > 10
            assert len(seen["leftovers"]) == (1 if pruning else 0)

        _recover(h, run, expect)
        if point == "after-vault-put":
            # Rolled back to the version before the current one: re-running does the same.
            h.rerun(*args)
            assert _get(h, address) == expected
        else:
            assert _get(h, address) == expected  # the crash came after the job was recorded
            h.rerun(*args)  # and re-running it is harmless: one more version, same value
            assert _get(h, address) == expected
        h.write(address, _value())  # so that the next run has something to roll back from
        h.check_consistent()


@pytest.mark.slow
def test_destroy_survives_sigkill_and_rerunning_finishes_it(harness: Harness) -> None:
    h = harness
    for run in range(RUNS):
        address = SecretAddress("production", "nexus", f"destroy.n{run}")
        values = [_value() for _ in range(3)]
        for value in values:
            h.write(address, value)
        entries = [
            entry_name(address, n + 1, h.app.fingerprint(address, v)) for n, v in enumerate(values)
        ]
        args = ["destroy", "--yes", "-e", address.environment, "--service", address.service]
        h.crash("after-destroy-append", *args, "--name", address.name)
        assert h.app.history(h.cred, address).destroyed
        h.check_consistent()
        seen = _report(h.doctor(via_cli=run == 0, repair=False))
        assert seen["missing_values"] == [] and seen["orphans"] == []
        assert sorted(seen["leftovers"]) == sorted(entries)
        if run % 2:
            h.rerun(*args, "--name", address.name)  # re-running finishes the job ...
            assert _report(h.doctor(via_cli=False, repair=False))["leftovers"] == []
        else:
            _recover(h, run, lambda s, e=entries: sorted(s["leftovers"]) == sorted(e))
        assert all(h.app.vault.get(e) is None for e in entries)
        h.check_consistent()


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["list", "audit log"])
def test_projection_catch_up_survives_sigkill(harness: Harness, reader: str) -> None:
    """Killed in the middle of the views' catch-up, on two read paths: the inventory
    (`list`) and the audit view (`audit log`)."""
    h = harness
    views = Views(h.app)
    views.catch_up()
    views.close()
    for run in range(RUNS):
        for n in range(3):
            h.write(SecretAddress("staging", "github", f"catchup.n{run}x{n}"), _value())
        views = Views(h.app)
        position = views.position()
        views.close()
        h.crash("during-catch-up", *reader.split())
        views = Views(h.app)
        # The page was one transaction: the crash rolled all of it back, none applied twice.
        assert views.position() == position
        views.close()
        h.check_consistent()
        listed = h.rerun(*reader.split(), "--output", "json")
        assert f"catchup.n{run}x2" in listed.stdout
        assert h.app.doctor(h.cred).healthy


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-vault-put", "after-append", "after-prune-append"])
def test_single_rotate_survives_sigkill(harness: Harness, point: str) -> None:
    """`rotate --service S --name N` killed at each boundary of its write: even runs rotate a
    generated secret (the ledger makes the value), odd runs an external one given by stdin."""
    h = harness
    generated = SecretAddress("production", "database", "database.password")
    external = SecretAddress("production", "nexus", f"rotate.{point.replace('-', '.')}")
    count = 10 if point == "after-prune-append" else 1  # 10: every rotation prunes one
    for address in (generated, external):
        for _ in range(count):
            h.write(address, secrets.token_urlsafe(32))
    for run in range(RUNS):
        address = generated if run % 2 == 0 else external
        value = None if address == generated else _value()
        args = ["rotate", "-e", address.environment, "--service", address.service]
        args += ["--name", address.name] + ([] if value is None else ["--value-stdin"])
        secret = h.app.history(h.cred, address)
        before = secret.current_version
        h.crash(point, *args, stdin=value)
        recorded = h.app.history(h.cred, address)
        if point == "after-vault-put":
            assert recorded.current_version == before
            # The new value is in the keychain under the next version, its event is not.
            prefix = f"{address}#v{before + 1}."

            def orphaned(seen: dict[str, list[str]], prefix: str = prefix) -> None:
                assert len(seen["orphans"]) == 1 and seen["orphans"][0].startswith(prefix)
                assert seen["leftovers"] == []

            expect: Callable[[dict[str, list[str]]], None] = orphaned

        else:
            assert recorded.current_version == before + 1
            assert recorded.versions[before + 1].reason == "rotation"
            if value is not None:
                assert _get(h, address) == value  # the rotation landed with its value
            leftovers: list[str] = []
            if before + 1 > 10:
                pruned = recorded.versions[before + 1 - 10]
                leftovers = [entry_name(address, pruned.number, pruned.fingerprint)]
            assert leftovers or point == "after-append"

            def left(seen: dict[str, list[str]], leftovers: list[str] = leftovers) -> None:
                assert seen["orphans"] == [] and seen["leftovers"] == leftovers

            expect = left

        _recover(h, run, expect)
        landed = h.app.history(h.cred, address).current_version
        if value is not None and landed > before:
            # The killed rotation landed: its value is the one in use, and a rotation must
            # change the value (issue 17 part 4), so running it again is refused, exit 5.
            again = h.ledger.run(*args, input=value)
            assert again.returncode == 5 and "unchanged-value" in again.stderr, again.stderr
            assert h.app.history(h.cred, address).current_version == landed
            value = _value()
        result = h.rerun(*args, "--output", "json", stdin=value)
        assert h.app.history(h.cred, address).current_version == landed + 1, result.stdout
        new = _get(h, address)
        if value is not None:
            assert new == value
        else:
            old = [
                h.app.vault.get(entry_name(address, n, v.fingerprint))
                for n, v in secret.versions.items()
                if v.retained
            ]
            assert new not in old  # a fresh generated value, not an old one
        h.check_consistent()


BATCH = [
    SecretAddress(env, "database", "database.password") for env in ("dev", "qa", "stage", "prod")
]


def _batch_versions(h: Harness) -> list[int]:
    return [h.app.history(h.cred, a).current_version for a in BATCH]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-vault-put", "after-append"])
@pytest.mark.parametrize("command", ["rotate --all", "emergency-rotate"])
def test_batch_rotation_survives_sigkill_midway(harness: Harness, command: str, point: str) -> None:
    """Killed while rotating the k-th of four secrets; running the command again resumes the
    same run (and incident) and rotates each secret exactly once."""
    h = harness
    for address in BATCH:
        h.write(address, secrets.token_urlsafe(32))
    args = (
        ["rotate", "--all"]
        if command == "rotate --all"
        else ["emergency-rotate", "--yes", "--reason", "crash test"]
    )
    for run in range(max(2, RUNS // 2)):
        before = _batch_versions(h)
        k = run % len(BATCH) + 1
        h.crash(f"{point}@{k}", *args)
        landed = sum(a != b for a, b in zip(_batch_versions(h), before, strict=True))
        assert landed == (k - 1 if point == "after-vault-put" else k)
        orphans = 1 if point == "after-vault-put" else 0
        # A version that landed past the retention pruned one whose value the kill left.
        leftovers = 1 if point == "after-append" and before[k - 1] + 1 > 10 else 0
        _recover(
            h,
            run,
            lambda s, o=orphans, n=leftovers: len(s["orphans"]) == o and len(s["leftovers"]) == n,
        )
        result = h.rerun(*args, "--output", "json")
        assert '"resumed": true' in result.stdout
        assert _batch_versions(h) == [v + 1 for v in before]  # each rotated exactly once
        for address in BATCH:
            h.app.read(h.cred, address)  # every new value is in the keychain
        h.check_consistent()
