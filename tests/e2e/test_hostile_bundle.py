"""Evidence bundles and export directories that someone else wrote (review 3, F5, F6, F12):
huge sparse files, pipes and links in a bundle, `--pubkey` a pipe or a huge file, links
planted in the directory an export writes to. Real CLI on a real SQLite ledger with the
encrypted file vault. The commands run with their address space and file size limited
(the review's `ulimit -v`), so the code before the fix failed fast (MemoryError, a copy cut
short) instead of taking gigabytes of a shared host.
"""

from __future__ import annotations

import os
import resource
import stat
import subprocess
from pathlib import Path

import pytest

from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, start_ledger

HANG_SECONDS = 60
MEMORY_LIMIT = 1536 * 1024 * 1024
FILE_LIMIT = 256 * 1024 * 1024
GIB = 1024**3


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Ledger, Path]:
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
    ledger.set("nexus", "mcp.bun.apiKey", "sk-live-value-0001-abcdefghij")
    bundle = tmp_path / "bundle"
    done = ledger.run("audit", "export", "--out", str(bundle))
    assert done.returncode == 0, done.stderr
    return ledger, bundle


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def _run(ledger: Ledger, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [ledger.python, "-m", "commands", *args],
            env=ledger.env,
            cwd=ledger.cwd,
            capture_output=True,
            text=True,
            timeout=HANG_SECONDS,
            check=False,
            preexec_fn=_limits,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`secrets {' '.join(args)}` hung (killed after {HANG_SECONDS} s)")


def _sparse(path: Path, size: int) -> None:
    path.unlink(missing_ok=True)
    with path.open("wb") as f:
        f.truncate(size)


def _clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 1, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


# -- F5, F12: reading a bundle -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["pubkey.pem", "checkpoint.json"])
def test_a_huge_small_file_in_a_bundle_is_damaged_evidence(
    exported: tuple[Ledger, Path], name: str
) -> None:
    ledger, bundle = exported
    _sparse(bundle / name, 3 * GIB)
    verified = _run(ledger, "audit", "verify", "--bundle", str(bundle))
    _clean(verified)
    assert verified.returncode == 6, verified.stderr
    assert f"{name} is 3,221,225,472 bytes" in verified.stderr, verified.stderr


def test_a_pubkey_option_that_is_a_pipe_or_huge_is_a_usage_error(
    exported: tuple[Ledger, Path], tmp_path: Path
) -> None:
    ledger, bundle = exported
    pipe = tmp_path / "key.pipe"
    os.mkfifo(pipe, 0o600)
    piped = _run(ledger, "audit", "verify", "--bundle", str(bundle), "--pubkey", str(pipe))
    _clean(piped)
    assert piped.returncode == 2 and "named pipe" in piped.stderr, piped.stderr
    huge = tmp_path / "big.pem"
    _sparse(huge, 3 * GIB)
    big = _run(ledger, "audit", "verify", "--pubkey", str(huge))
    _clean(big)
    assert big.returncode == 2 and "more than the" in big.stderr, big.stderr


def test_a_bundle_ledger_that_is_a_link_is_not_verified_as_evidence(
    exported: tuple[Ledger, Path], tmp_path: Path
) -> None:
    """A link to any intact ledger (the auditor's own) verified OK as if it were the bundle."""
    ledger, bundle = exported
    elsewhere = tmp_path / "elsewhere.sqlite"
    (bundle / "ledger.sqlite").rename(elsewhere)
    (bundle / "ledger.sqlite").symlink_to(elsewhere)
    verified = _run(ledger, "audit", "verify", "--bundle", str(bundle))
    _clean(verified)
    assert verified.returncode == 6, verified.stderr
    assert "ledger.sqlite is a symbolic link" in verified.stderr, verified.stderr


def test_a_bundle_wal_that_is_a_link_is_damaged_evidence(
    exported: tuple[Ledger, Path], tmp_path: Path
) -> None:
    ledger, bundle = exported
    elsewhere = tmp_path / "elsewhere-wal"
    elsewhere.write_bytes(b"")
    (bundle / "ledger.sqlite-wal").symlink_to(elsewhere)
    verified = _run(ledger, "audit", "verify", "--bundle", str(bundle))
    _clean(verified)
    assert verified.returncode == 6, verified.stderr
    assert "ledger.sqlite-wal is a symbolic link" in verified.stderr, verified.stderr


def test_a_huge_bundle_ledger_is_checked_before_it_is_copied(
    exported: tuple[Ledger, Path],
) -> None:
    """A 2 GB sparse ledger.sqlite was copied whole into /tmp before any check (here the
    file size limit cut the copy: exit 1, OSError)."""
    ledger, bundle = exported
    _sparse(bundle / "ledger.sqlite", 2 * GIB)
    verified = _run(ledger, "audit", "verify", "--bundle", str(bundle))
    _clean(verified)
    assert verified.returncode == 6, verified.stderr
    assert "not a SQLite ledger" in verified.stderr, verified.stderr


def test_an_intact_bundle_still_verifies(exported: tuple[Ledger, Path]) -> None:
    ledger, bundle = exported
    verified = _run(ledger, "audit", "verify", "--bundle", str(bundle))
    assert verified.returncode == 0, verified.stderr
    assert stat.S_IMODE((bundle / "ledger.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((bundle / "pubkey.pem").stat().st_mode) == 0o644


# -- F6: writing an export ----------------------------------------------------------------------


def test_an_export_does_not_write_through_planted_links(
    exported: tuple[Ledger, Path], tmp_path: Path
) -> None:
    ledger, _ = exported
    out = tmp_path / "shared-out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("victim data\n")
    absent = tmp_path / "victim2.txt"
    (out / "checkpoint.json").symlink_to(victim)
    (out / "pubkey.pem").symlink_to(absent)  # dangling: the export created it
    done = _run(ledger, "audit", "export", "--out", str(out))
    assert victim.read_text() == "victim data\n"
    assert not absent.exists()
    _clean(done)
    assert done.returncode == 2 and "is not empty" in done.stderr, done.stderr


def test_an_export_into_an_empty_directory_works_and_into_its_own_result_does_not(
    exported: tuple[Ledger, Path], tmp_path: Path
) -> None:
    ledger, _ = exported
    out = tmp_path / "empty-out"
    out.mkdir()
    done = _run(ledger, "audit", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.json",
        "ledger.sqlite",
        "pubkey.pem",
    ]
    assert _run(ledger, "audit", "verify", "--bundle", str(out)).returncode == 0
    again = _run(ledger, "audit", "export", "--out", str(out))
    _clean(again)
    assert again.returncode == 2 and "is not empty" in again.stderr, again.stderr
