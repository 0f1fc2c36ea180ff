"""Faults in the parts the ledger builds on: a keychain that fails or locks midway, a ledger
held by another writer past the lock timeout, a full disk. Each must end in a clear error and
exit code, with nothing half-written and the chain intact."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.address import SecretAddress
from ledger.application import SecretsLedger
from ledger.chain import verify
from ledger.config import open_ledger
from ledger.credentials import Credential
from ledger.errors import LedgerUnavailable
from tests.fakes import FlakyKeyring


def _chain_ok(app: SecretsLedger) -> None:
    report, _ = verify(app.recorder.iter_rows(), app.recorder.iter_links())  # type: ignore[attr-defined]
    assert report.ok, report.fault


def _value() -> str:
    return "sk-fault-" + secrets.token_urlsafe(24)


@pytest.fixture()
def keychain() -> FlakyKeyring:
    return FlakyKeyring()


@pytest.fixture()
def app(tmp_path: Path, keychain: FlakyKeyring) -> Iterator[SecretsLedger]:
    found = open_ledger(tmp_path / "home", create=True, backend=keychain)
    yield found
    found.close()


def _senior(app: SecretsLedger) -> Credential:
    issued = app.initialize("alice")
    assert issued is not None
    return Credential(token=issued.token)


# -- in-process: the keychain ---------------------------------------------------------------


# -- through the CLI: a locked ledger ------------------------------------------------------


# -- through the CLI: a full disk ----------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _fill(directory: Path, leave: int) -> Path:
    filler = directory / "filler"
    free = shutil.disk_usage(directory).free
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_under_the_event_store_refuses_cleanly(tmp_path: Path) -> None:
    """The keychain has room, the event store does not: SQLite's "database or disk is full"."""
    keychain = FlakyKeyring()
    with _tmpfs(tmp_path / "small", "4m") as mounted:
        app = open_ledger(mounted / "home", create=True, backend=keychain)
        alice = _senior(app)
        filler = _fill(mounted, leave=64 * 1024)
        written: dict[SecretAddress, str] = {}
        failure: LedgerUnavailable | None = None
        for n in range(400):
            address = SecretAddress("production", "nexus", f"full.key{n}")
            value = _value() + "y" * 2000
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
        _chain_ok(app)
        filler.unlink()
        assert app.doctor(alice).healthy
        for address, value in written.items():
            assert app.read(alice, address)[1] == value
        app.write(alice, SecretAddress("production", "nexus", "full.after"), _value())
        app.close()


# -- through the CLI: a damaged data page --------------------------------------------------
