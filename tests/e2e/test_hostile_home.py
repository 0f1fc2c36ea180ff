"""Attacks of a writer of the ledger's home (review 3, F3, F4, F12): symbolic links, named
pipes and huge sparse files planted where the ledger keeps its own files, run through the
real CLI on a real SQLite home with the encrypted file vault. Every link points at a file
the test itself made under tmp_path, and the test checks that file is left as it was.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, start_ledger

ADDRESS = ("--service", "nexus", "--name", "mcp.bun.apiKey")
VALUE = "sk-live-value-0001-abcdefghij"
# Long enough for a slow CI host; a hang (what the pipes caused) is killed here.
HANG_SECONDS = 40


@pytest.fixture
def home_ledger(tmp_path: Path) -> Ledger:
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    home = tmp_path / "ledger-home"
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    env.update({"SECRETS_LEDGER_VAULT": "file", "SECRETS_LEDGER_PASSPHRASE": FILE_VAULT_PASSPHRASE})
    ledger = start_ledger(
        home,
        env,
        lambda: EncryptedFileKeyring(
            path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE
        ),
    )
    ledger.set(*ADDRESS[1::2], VALUE)
    return ledger


def _run(
    ledger: Ledger, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [ledger.python, "-m", "commands", *args],
            env={**ledger.env, **(env or {})},
            cwd=ledger.cwd,
            capture_output=True,
            text=True,
            timeout=HANG_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`secrets {' '.join(args)}` hung (killed after {HANG_SECONDS} s)")


def _clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 1, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def _victim(tmp_path: Path, name: str = "victim.txt") -> Path:
    victim = tmp_path / name
    victim.write_text("the owner's document\n")
    victim.chmod(0o644)
    return victim


def _plant_link(path: Path, target: Path) -> None:
    if path.exists() or path.is_symlink():
        path.rename(path.with_name(path.name + ".moved"))
    path.symlink_to(target)


# -- F3: nothing is chmodded through a planted link -------------------------------------------


@pytest.mark.parametrize(
    "name", ["views.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "views.sqlite-wal"]
)
def test_a_link_in_the_home_is_refused_not_chmodded(
    home_ledger: Ledger, tmp_path: Path, name: str
) -> None:
    """The owner's next command turned the link's target to 0600 (/etc/passwd in the
    review, run as root); a -wal link was blamed on ledger.sqlite (F12)."""
    victim = _victim(tmp_path)
    _plant_link(home_ledger.home / name, victim)
    listed = _run(home_ledger, "list")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert victim.read_text() == "the owner's document\n"
    _clean(listed)
    assert listed.returncode == 6, listed.stderr
    assert f"{home_ledger.home / name} is a symbolic link" in listed.stderr, listed.stderr


def test_a_vault_file_link_is_neither_chmodded_nor_read(
    home_ledger: Ledger, tmp_path: Path
) -> None:
    victim = _victim(tmp_path)
    _plant_link(home_ledger.home / "vault.enc", victim)
    got = _run(home_ledger, "get", *ADDRESS)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    _clean(got)
    assert got.returncode == 8, got.stderr
    assert "vault.enc is a symbolic link" in got.stderr, got.stderr


def test_a_home_given_as_a_link_is_not_chmodded_through_it(
    home_ledger: Ledger, tmp_path: Path
) -> None:
    home_ledger.home.chmod(0o755)
    link = tmp_path / "linked-home"
    link.symlink_to(home_ledger.home)
    listed = _run(home_ledger, "list", env={"SECRETS_LEDGER_HOME": str(link)})
    assert stat.S_IMODE(home_ledger.home.stat().st_mode) == 0o755
    # The owner's own setup, not damage: a clear error (exit 1) saying what to run.
    assert "internal error" not in listed.stderr and "Traceback" not in listed.stderr
    assert listed.returncode != 0 and "symbolic link" in listed.stderr, listed.stderr
    assert "chmod 700" in listed.stderr, listed.stderr


def test_a_loose_mode_on_a_real_file_is_still_repaired(home_ledger: Ledger) -> None:
    db = home_ledger.home / "ledger.sqlite"
    db.chmod(0o644)
    listed = _run(home_ledger, "list")
    assert listed.returncode == 0, listed.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert "changed it to 0600" in listed.stderr


# -- F4: pipes, links and huge files read from the home ------------------------------------------


def _fifo(path: Path) -> None:
    if path.exists():
        path.rename(path.with_name(path.name + ".moved"))
    os.mkfifo(path, 0o600)


def test_a_session_file_that_is_a_pipe_does_not_hang_every_command(home_ledger: Ledger) -> None:
    _fifo(home_ledger.home / "session.json")
    status = _run(home_ledger, "auth", "status", env={"SECRETS_LEDGER_TOKEN": ""})
    _clean(status)
    assert status.returncode == 4, status.stderr
    assert "session.json is a named pipe" in status.stdout + status.stderr, status
    listed = _run(home_ledger, "list", env={"SECRETS_LEDGER_TOKEN": ""})
    _clean(listed)
    assert listed.returncode == 4 and "named pipe" in listed.stderr, listed.stderr


def test_a_huge_session_file_is_refused_unread(home_ledger: Ledger) -> None:
    session = home_ledger.home / "session.json"
    session.unlink()
    fd = os.open(session, os.O_WRONLY | os.O_CREAT, 0o600)
    os.ftruncate(fd, 400 * 1024 * 1024)  # sparse: no disk or memory used
    os.close(fd)
    status = _run(home_ledger, "auth", "status", env={"SECRETS_LEDGER_TOKEN": ""})
    _clean(status)
    assert status.returncode == 4, status.stderr
    assert "more than the 65,536 it may hold" in status.stdout + status.stderr, status


def _intent(ledger: Ledger, name: str) -> Path:
    pending = ledger.home / "pending"
    pending.mkdir(mode=0o700, exist_ok=True)
    return pending / f"{name * 32}.intent"


def test_an_intent_that_is_a_pipe_is_damage_not_a_hang(home_ledger: Ledger) -> None:
    intent = _intent(home_ledger, "b")
    os.mkfifo(intent, 0o600)
    doctor = _run(home_ledger, "doctor")
    _clean(doctor)
    assert doctor.returncode == 6, doctor.stderr
    assert f"damaged pending-write intent: {intent.name}" in doctor.stdout, doctor.stdout
    repair = _run(home_ledger, "doctor", "--repair")
    _clean(repair)
    assert not intent.exists() and not intent.is_symlink()


def test_an_intent_that_is_a_link_is_damage_and_not_followed(
    home_ledger: Ledger, tmp_path: Path
) -> None:
    """A link to a well-formed intent elsewhere (or to /dev/zero: MemoryError, exit 1)."""
    uid = home_ledger.events("ledger.settings:")[0].state["ledger_uid"]
    elsewhere = tmp_path / "elsewhere.intent"
    elsewhere.write_text(
        json.dumps(
            {
                "namespace": f"secrets-ledger:{uid}",
                "entry": "default/nexus/mcp.bun.apiKey#v1.aaaaaaaaaaaa",
                "pid": 999_999_999,
                "started": 1,
            }
        )
    )
    intent = _intent(home_ledger, "a")
    intent.symlink_to(elsewhere)
    doctor = _run(home_ledger, "doctor")
    _clean(doctor)
    assert doctor.returncode == 6, doctor.stderr
    assert "a symbolic link, not an intent" in doctor.stdout, doctor.stdout
    repair = _run(home_ledger, "doctor", "--repair")
    _clean(repair)
    assert elsewhere.exists() and not intent.is_symlink()
    got = _run(home_ledger, "get", *ADDRESS)
    assert got.returncode == 0 and got.stdout.strip() == VALUE, got.stderr


def test_a_huge_intent_is_damage_refused_unread(home_ledger: Ledger) -> None:
    intent = _intent(home_ledger, "c")
    fd = os.open(intent, os.O_WRONLY | os.O_CREAT, 0o600)
    os.ftruncate(fd, 100 * 1024 * 1024)
    os.close(fd)
    doctor = _run(home_ledger, "doctor")
    _clean(doctor)
    assert doctor.returncode == 6, doctor.stderr
    assert "more than the 65,536 it may hold" in doctor.stdout, doctor.stdout


def test_a_vault_file_that_is_a_pipe_is_a_vault_error_not_a_hang(home_ledger: Ledger) -> None:
    _fifo(home_ledger.home / "vault.enc")
    got = _run(home_ledger, "get", *ADDRESS)
    _clean(got)
    assert got.returncode == 8, got.stderr
    assert "named pipe" in got.stderr and "not a vault file" in got.stderr, got.stderr


def test_a_huge_vault_file_is_refused_unread(home_ledger: Ledger) -> None:
    vault = home_ledger.home / "vault.enc"
    vault.unlink()
    fd = os.open(vault, os.O_WRONLY | os.O_CREAT, 0o600)
    os.ftruncate(fd, 300 * 1024 * 1024)  # over the 256 MiB cap, sparse
    os.close(fd)
    got = _run(home_ledger, "get", *ADDRESS)
    _clean(got)
    assert got.returncode == 8, got.stderr
    assert "more than the" in got.stderr, got.stderr


def test_a_views_file_that_is_a_pipe_is_refused_not_a_hang(home_ledger: Ledger) -> None:
    _fifo(home_ledger.home / "views.sqlite")
    listed = _run(home_ledger, "list")
    _clean(listed)
    assert listed.returncode == 6, listed.stderr
    assert "views.sqlite is a named pipe" in listed.stderr, listed.stderr


# -- F12: doctor names an undecodable event by its position -----------------------------------


def test_doctor_names_the_position_of_an_undecodable_event(home_ledger: Ledger) -> None:
    import sqlite3

    with sqlite3.connect(home_ledger.home / "ledger.sqlite") as db:
        rowid = db.execute(
            "SELECT max(rowid) FROM stored_events WHERE topic LIKE 'ledger.secret:%VersionAdded'"
        ).fetchone()[0]
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (b"\xff{", rowid))
    doctor = _run(home_ledger, "doctor")
    _clean(doctor)
    assert doctor.returncode == 6, doctor.stderr
    # doctor loads each secret checked against the chain, as every decision does
    assert f"(position {rowid})" in doctor.stderr, doctor.stderr
