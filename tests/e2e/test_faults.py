"""Faults in the parts the ledger builds on: a keychain that fails or locks midway, a ledger
held by another writer past the lock timeout, a full disk. Each must end in a clear error and
exit code, with nothing half-written and the chain intact."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.errors import IntegrityFailure
from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger
from tests.faults_kit import chain_ok, fault_value, fill_leaving, tmpfs

# -- through the CLI: a locked ledger ------------------------------------------------------


@contextlib.contextmanager
def _held_exclusively(db: Path) -> Iterator[None]:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.sqlite_file
def test_a_ledger_locked_past_the_timeout_is_a_clear_error(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Q7x" * 16)
    before = ledger.secret_events()
    value = fault_value()
    with _held_exclusively(ledger.home / "ledger.sqlite"):
        started = time.monotonic()
        result = ledger.run(
            "set",
            "--service",
            "nexus",
            "--name",
            "mcp.bun.apiKey",
            "--value-stdin",
            input=value,
            env={"SECRETS_LEDGER_LOCK_TIMEOUT": "1"},
        )
        waited = time.monotonic() - started
        got = ledger.run(
            "get",
            "--service",
            "nexus",
            "--name",
            "mcp.bun.apiKey",
            env={"SECRETS_LEDGER_LOCK_TIMEOUT": "1"},
        )
    assert result.returncode == 1, result.stderr
    assert "locked by another writer (waited 1 s)" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert waited < 9  # the configured second, not the default ten
    # A read that cannot be recorded is not served.
    assert got.returncode == 1 and got.stdout == "" and "locked" in got.stderr
    assert ledger.secret_events() == before
    assert ledger.run("doctor").returncode == 0  # the value was removed again
    assert not list((ledger.home / "pending").glob("*.intent"))
    bad = ledger.run("list", env={"SECRETS_LEDGER_LOCK_TIMEOUT": "soon"})
    assert bad.returncode == 5 and "SECRETS_LEDGER_LOCK_TIMEOUT" in bad.stderr


# -- through the CLI: a full disk ----------------------------------------------------------


def _relocated(ledger: Ledger, home: Path) -> Ledger:
    """The same ledger (and session) copied to `home`."""
    shutil.copytree(ledger.home, home, dirs_exist_ok=True)
    factory = ledger.backend_factory
    if (home / "vault.enc").exists():
        from ledger.vault.encrypted_file import EncryptedFileKeyring

        def factory() -> EncryptedFileKeyring:
            return EncryptedFileKeyring(
                path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE
            )

    return replace(
        ledger,
        home=home,
        env={**ledger.env, "SECRETS_LEDGER_HOME": str(home)},
        backend_factory=factory,
        _ledger=None,
    )


@pytest.mark.sqlite_file
def test_a_full_disk_is_a_clear_error_and_leaves_the_ledger_whole(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Q7x" * 16)
    with tmpfs(tmp_path / "small", "8m") as mounted:
        small = _relocated(ledger, mounted / "home")
        filler = fill_leaving(mounted, leave=120 * 1024)
        outcomes: list[int] = []
        written: dict[int, str] = {}
        for n in range(60):
            value = fault_value() + "x" * 6000
            result = small.run(
                "set",
                "--service",
                "nexus",
                "--name",
                f"disk.key{n}",
                "--value-stdin",
                input=value,
            )
            assert "Traceback" not in result.stderr and "internal error" not in result.stderr
            outcomes.append(result.returncode)
            if result.returncode == 0:
                written[n] = value
            else:
                assert result.returncode in (1, 8), result.stderr
                assert "space" in result.stderr or "full" in result.stderr, result.stderr
                if len(outcomes) - len(written) >= 3:
                    break
        assert written, outcomes  # something fit before the disk filled
        assert any(code != 0 for code in outcomes), "the disk never filled"
        filler.unlink()
        app = small._app()
        cred = Credential(token=small.token)
        report = app.doctor(cred)
        assert report.missing_values == [], "an event refers to a value that is gone"
        app.doctor(cred, repair=True)
        assert app.doctor(cred).healthy
        chain_ok(app)
        for n, value in written.items():
            assert app.read(cred, SecretAddress("default", "nexus", f"disk.key{n}"))[1] == value
        unwritten = next(n for n in range(60) if n not in written)
        again = small.run(
            "set",
            "--service",
            "nexus",
            "--name",
            f"disk.key{unwritten}",
            "--value-stdin",
            input=fault_value(),
        )
        assert again.returncode == 0, again.stderr
        app.close()


def _fill_up(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte it will take."""
    filler = directory / "filler-to-the-brim"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    f.write(chunk)
    return filler


FULL_DISK_COMMANDS = [
    ["list"],
    ["get", "--service", "nexus", "--name", "mcp.bun.apiKey"],
    ["audit", "log"],
    ["audit", "verify"],
    ["auth", "status"],
    ["doctor"],
    ["auth", "grant", "--operator", "bob", "--role", "analyst"],
]


@pytest.mark.sqlite_file
def test_a_full_disk_is_not_called_damage(ledger: Ledger, tmp_path: Path) -> None:
    """With no room left SQLite cannot even make the WAL index a read needs ("disk I/O
    error"): every command says the disk is full (exit 1), none that the ledger is damaged
    (exit 6), and once there is room again the ledger verifies, untouched."""
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "F5x" * 16)
    with tmpfs(tmp_path / "small", "8m") as mounted:
        small = _relocated(ledger, mounted / "home")
        filler = _fill_up(mounted)
        for args in FULL_DISK_COMMANDS:
            result = small.run(*args)
            assert result.returncode == 1, (args, result.returncode, result.stderr)
            assert "disk full" in result.stderr, (args, result.stderr)
            assert "damaged" not in result.stderr, (args, result.stderr)
            assert "intact" in result.stderr, (args, result.stderr)
            assert "internal error" not in result.stderr, (args, result.stderr)
        filler.unlink()
        verified = small.run("audit", "verify")
        assert verified.returncode == 0, verified.stderr


@pytest.mark.sqlite_file
def test_a_write_that_fills_the_disk_says_so(ledger: Ledger, tmp_path: Path) -> None:
    """Another process keeps the ledger open (its WAL index exists): reads still work, and a
    write that finds no room is "disk full" (SQLITE_FULL, exit 1), with nothing recorded."""
    with tmpfs(tmp_path / "small", "8m") as mounted:
        small = _relocated(ledger, mounted / "home")
        assert small.run("list").returncode == 0
        holder = sqlite3.connect(small.home / "ledger.sqlite")
        try:
            holder.execute("SELECT count(*) FROM stored_events").fetchall()
            before = small.events()
            filler = _fill_up(mounted)
            result = small.run("auth", "grant", "--operator", "bob", "--role", "analyst")
            assert result.returncode == 1, (result.returncode, result.stderr)
            assert "disk full" in result.stderr and "damaged" not in result.stderr
            assert small.events() == before
            filler.unlink()
        finally:
            holder.close()
        assert small.run("audit", "verify").returncode == 0


# -- through the CLI: a damaged data page --------------------------------------------------


@pytest.mark.sqlite_file
def test_a_damaged_page_is_a_clear_integrity_error(ledger: Ledger) -> None:
    """Opening does not read the whole file (that costs seconds on a large ledger), so damage
    deep in the file surfaces when a command reads it: exit 6 with a clear line, never an
    internal error, and `audit verify` and `doctor` read every page and say so too."""
    for n in range(3):
        ledger.set("nexus", "mcp.bun.apiKey", "sk-" + f"D{n}x" * 16)
    path = ledger.home / "ledger.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'stored_events'"
        ).fetchone()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)
    for argv in (
        ("versions", "--service", "nexus", "--name", "mcp.bun.apiKey"),
        ("audit", "verify"),
        ("doctor",),
    ):
        result = ledger.run(*argv)
        assert result.returncode == 6, (argv, result.stderr)
        assert "damaged" in result.stderr and "internal error" not in result.stderr, argv
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


REGISTERED = "ledger.secret:Secret.Registered"
BY_TOPIC = "SELECT count(*) FROM stored_events INDEXED BY stored_events_topic WHERE topic = ?"


def _stale_topic_index(path: Path, row_moves: bool) -> None:
    """Leave the topic index naming the second registered secret under another topic. With
    `row_moves`, the row itself is edited and the index keeps what it said (an edited row);
    without, the row is as written and only the index entry is wrong (a damaged index)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rowid = db.execute(
            "SELECT rowid FROM stored_events WHERE topic = ? ORDER BY rowid LIMIT 1 OFFSET 1",
            (REGISTERED,),
        ).fetchone()[0]
        sql, root = db.execute(
            "SELECT sql, rootpage FROM sqlite_master WHERE name = 'stored_events_topic'"
        ).fetchone()
        if not row_moves:  # the index follows the row to another topic first
            db.execute("UPDATE stored_events SET topic = 'x' WHERE rowid = ?", (rowid,))
        # With the index hidden from SQLite, the row alone changes.
        db.execute("PRAGMA writable_schema = ON")
        db.execute("DELETE FROM sqlite_master WHERE name = 'stored_events_topic'")
        db.execute("PRAGMA writable_schema = RESET")
        db.execute(
            "UPDATE stored_events SET topic = ? WHERE rowid = ?",
            ("x" if row_moves else REGISTERED, rowid),
        )
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "INSERT INTO sqlite_master VALUES ('index', 'stored_events_topic', "
            "'stored_events', ?, ?)",
            (root, sql),
        )
        db.execute("PRAGMA writable_schema = RESET")


def _registered_by_index(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        found: int = db.execute(BY_TOPIC, (REGISTERED,)).fetchone()[0]
        return found


@pytest.mark.sqlite_file
def test_a_damaged_index_is_found_by_doctor_and_rebuilt_by_repair(ledger: Ledger) -> None:
    """An index entry naming the wrong row reads fine page by page, so every command and
    `audit verify` (the chain covers the rows, not the indexes) pass, yet "every secret" (the
    topic index: rotate --all, compliance, doctor's own scan) misses one. `doctor` checks the
    indexes against the rows and says so (exit 6); `doctor --repair` rebuilds the index."""
    for name in ("a.apiKey", "b.apiKey", "c.apiKey"):
        ledger.set("nexus", name, "sk-" + f"{name[0]}Ix" * 16)
    path = ledger.home / "ledger.sqlite"
    _stale_topic_index(path, row_moves=False)
    assert _registered_by_index(path) == 2  # one secret hidden
    assert ledger.run("audit", "verify").returncode == 0
    found = ledger.run("doctor")
    assert found.returncode == 6, found.stderr
    assert "missing from index stored_events_topic" in found.stderr
    assert "doctor --repair" in found.stderr and "internal error" not in found.stderr
    as_json = ledger.run("doctor", "-o", "json")
    assert as_json.returncode == 6, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["healthy"] is False and "stored_events_topic" in doc["damaged"]
    repaired = ledger.run("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired: index stored_events_topic" in repaired.stdout
    assert ledger.run("doctor").returncode == 0
    assert _registered_by_index(path) == 3
    assert ledger.run("audit", "verify").returncode == 0


@pytest.mark.sqlite_file
def test_repair_refuses_damage_too_large_to_see_whole(ledger: Ledger, monkeypatch: Any) -> None:
    """Past `CHECK_LINES` problems the check cannot tell that indexes are all that is
    damaged: the repair refuses, says why (not just "damaged") and writes nothing."""
    from ledger.store import sqlite_file

    for name in ("a.apiKey", "b.apiKey", "c.apiKey"):
        ledger.set("nexus", name, "sk-" + f"{name[0]}Lx" * 16)
    path = ledger.home / "ledger.sqlite"
    _stale_topic_index(path, row_moves=False)
    before = path.read_bytes()
    monkeypatch.setattr(sqlite_file, "CHECK_LINES", 1)
    with pytest.raises(IntegrityFailure, match="too many to be sure") as refused:
        sqlite_file.repair_indexes(path, lambda: None)
    assert "restore the file from a backup" in str(refused.value)
    assert path.read_bytes() == before


@pytest.mark.sqlite_file
def test_repair_does_not_rebuild_an_index_over_an_edited_row(ledger: Ledger) -> None:
    """An edited row shows as the same missing index entry; rebuilding the index from it
    would erase the index's copy of the original. `doctor --repair` walks the hash chain
    first (before any repair, of keychain entries or of indexes), refuses (exit 6, pointing at
    `audit verify`) and writes nothing."""
    for name in ("a.apiKey", "b.apiKey", "c.apiKey"):
        ledger.set("nexus", name, "sk-" + f"{name[0]}Ex" * 16)
    path = ledger.home / "ledger.sqlite"
    _stale_topic_index(path, row_moves=True)
    before = path.read_bytes()
    refused = ledger.run("doctor", "--repair")
    assert refused.returncode == 6, refused.stderr
    assert "does not verify (edited at position" in refused.stderr, refused.stderr
    assert "audit verify" in refused.stderr and "internal error" not in refused.stderr
    assert path.read_bytes() == before
    assert _registered_by_index(path) == 3  # the index still names the original topic
    assert ledger.run("audit", "verify").returncode == 6
