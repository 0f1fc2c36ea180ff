"""The encrypted file vault: the value-vault contract plus its own security properties."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.vault import encrypted_file as ef
from ledger.vault.encrypted_file import EncryptedFileKeyring

PASSPHRASE = "correct horse battery staple"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No passphrase source leaks in from the host, and no key survives from another test."""
    for name in (ef.PASSPHRASE_ENV, ef.PASSPHRASE_FILE_ENV, "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ef.HOME_ENV, str(tmp_path / "home"))
    ef.clear_key_cache()
    yield
    ef.clear_key_cache()


def _vault_file(tmp_path: Path) -> Path:
    return tmp_path / "vaultdir" / "vault.enc"


def _backend(path: Path, passphrase: str | None = PASSPHRASE) -> EncryptedFileKeyring:
    return EncryptedFileKeyring(path=str(path), passphrase=passphrase)


# -- the keyring backend API --------------------------------------------------------------


def test_python_keyring_backend_selects_it_in_a_fresh_process(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "ledger.vault.encrypted_file.EncryptedFileKeyring",
        ef.HOME_ENV: str(tmp_path / "home"),
        ef.PASSPHRASE_ENV: PASSPHRASE,
    }
    script = (
        "import keyring; keyring.set_password('svc', 'user', 'v a l'); "
        "print(type(keyring.get_keyring()).__name__, keyring.get_password('svc', 'user'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "EncryptedFileKeyring v a l"


# -- concurrency --------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from ledger.vault import encrypted_file as ef

    calls = []
    real = ef.derive_key
    def counting(*args):
        calls.append(1)
        return real(*args)
    ef.derive_key = counting

    path, who, go = sys.argv[1:4]
    backend = ef.EncryptedFileKeyring(path)
    open(go + "." + who, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never told to start")
        time.sleep(0.001)
    for i in range(50):
        backend.set_password("svc", f"{who}-{i:02d}", f"value {who} {i}")
    print(len(calls))
    """
)


@pytest.mark.slow
def test_two_processes_writing_concurrently_lose_nothing(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)  # does not exist yet: creating it is part of the race
    go = tmp_path / "go"
    env = {**os.environ, ef.PASSPHRASE_ENV: PASSPHRASE, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), who, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("left", "right")
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{who}").exists() for who in ("left", "right")):
        assert time.monotonic() < deadline, "writers did not start"
        time.sleep(0.01)
    go.touch()
    outputs = [w.communicate(timeout=120) for w in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert out.strip() == "1", "each process derives the key exactly once"

    backend = _backend(path)
    names = backend.entries("svc")
    assert len(names) == 100
    for who in ("left", "right"):
        for i in range(50):
            assert backend.get_password("svc", f"{who}-{i:02d}") == f"value {who} {i}"
    assert sorted(p.name for p in path.parent.iterdir()) == ["vault.enc", "vault.enc.lock"]
