"""Issue 2: a missing, unreachable or insecure keychain is exit 8 with one clear line, through
the real CLI, and nothing is written: no event, no value anywhere else.

The Secret Service here is the real gnome-keyring of the `secret_service` fixture; "gone" is
its session bus address pointed at a socket that does not exist (what a host without a
desktop session, or with a dead daemon, gives keyring's Secret Service backend).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tests import infra
from tests.clikit import REPO, Ledger, start_ledger

GONE = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/secrets-ledger-test-bus"}
KEY = "sk-proj-" + "Zq9x" * 10


def _one_clear_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


def _events(home: Path) -> int:
    db = home / "ledger.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return int(con.execute("SELECT count(*) FROM stored_events").fetchone()[0])


@pytest.fixture
def on_secret_service(secret_service: infra.SecretService, tmp_path: Path) -> Ledger:
    return start_ledger(tmp_path / "home", dict(secret_service.env), secret_service.backend)


def test_set_and_get_with_the_secret_service_gone(on_secret_service: Ledger) -> None:
    ledger = on_secret_service
    ledger.set("nexus", "mcp.openai.apiKey", KEY)
    before = _events(ledger.home)
    target = ("--service", "nexus", "--name", "mcp.openai.apiKey")

    wrote = ledger.run("set", *target, "--value-stdin", input=KEY + "2", env=GONE)
    assert wrote.returncode == 8
    assert "could not start" in _one_clear_line(wrote.stderr)
    got = ledger.run("get", *target, env=GONE)
    assert got.returncode == 8 and got.stdout == ""
    _one_clear_line(got.stderr)

    assert _events(ledger.home) == before  # no version, no read receipt without a value
    back = ledger.run("get", *target)  # the keychain back: the old value, untouched
    assert back.returncode == 0 and back.stdout.strip() == KEY


@pytest.mark.parametrize(
    ("backend", "says"),
    [
        ("keyring.backends.SecretService.Keyring", "could not start"),
        ("keyring.backends.null.Keyring", "silently discards"),
        ("keyring.backends.fail.Keyring", "stores nothing"),
        ("plaintext_test_backend.PlaintextKeyring", "plaintext"),
        ("no_such_module.Keyring", "cannot be loaded"),
        ("keyring.backends.SecretService.NoSuchClass", "cannot be loaded"),
    ],
)
def test_init_refuses_a_keychain_it_cannot_use(
    secret_service: infra.SecretService, tmp_path: Path, backend: str, says: str
) -> None:
    """`PYTHON_KEYRING_BACKEND` names what to use; an unreachable, insecure or unknown backend
    is exit 8 before anything is written, and `init` can be run again once it is fixed."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    # A keyring backend that keeps values in a plain file: the kind keyrings.alt ships.
    (plugins / "plaintext_test_backend.py").write_text(
        "from keyring.backend import KeyringBackend\n"
        "class PlaintextKeyring(KeyringBackend):\n"
        "    priority = 1\n"
        "    store = {}\n"
        "    def get_password(self, service, username):\n"
        "        return self.store.get((service, username))\n"
        "    def set_password(self, service, username, password):\n"
        "        self.store[(service, username)] = password\n"
        "    def delete_password(self, service, username):\n"
        "        self.store.pop((service, username))\n"
    )
    home = tmp_path / "home"
    env = {
        **secret_service.env,
        **GONE,
        "PYTHON_KEYRING_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([str(plugins), str(REPO)]),
        "SECRETS_LEDGER_HOME": str(home),
    }
    ledger = Ledger(home=home, env=env, backend_factory=secret_service.backend)
    result = ledger.run("init", "--operator", "alice")
    assert result.returncode == 8, result.stderr
    # The failed init says it removed the ledger file it had begun (commands/init_undo.py),
    # then the one clear reason.
    notice, _, reason = result.stderr.partition("\n")
    assert notice.startswith("init failed: removed the unfinished ledger file"), result.stderr
    line = _one_clear_line(reason)
    assert says in line and "SECRETS_LEDGER_VAULT=file" in line  # and how to fix it
    assert result.stdout == ""  # no token was issued
    assert _events(home) == 0 and not (home / "ledger.sqlite").exists()

    fixed = ledger.run("init", "--operator", "alice", env=dict(secret_service.env))
    assert fixed.returncode == 0, fixed.stderr
