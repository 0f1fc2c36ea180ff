"""Issue 17 part 5: the ledger remembers where its values are.

The vault a host keeps a ledger's values in (its keychain or the encrypted file vault) is
chosen at `secrets init` and recorded in the ledger; every later command uses it, or says why
it cannot reach it (exit 8), and `doctor` never calls the values of an unreachable or other
vault missing. Through the real CLI, against the real gnome-keyring of the `secret_service`
fixture, the real encrypted file vault, and the SQLite file or a real PostgreSQL store.

"A shell without a Secret Service" is the test keyring's environment with its session bus
pointed at a socket that does not exist and no PYTHON_KEYRING_BACKEND: keyring then finds no
keychain, as on a headless host.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from tests import infra
from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, rechain, start_ledger

KEY = "sk-proj-" + "Vq7w" * 10
NEW_KEY = "sk-proj-" + "Hx2k" * 10
TARGET = ("--service", "nexus", "--name", "mcp.openai.apiKey")
PASSPHRASE = {"SECRETS_LEDGER_PASSPHRASE": FILE_VAULT_PASSPHRASE}


def _no_secret_service(service: infra.SecretService) -> dict[str, str]:
    env = {k: v for k, v in service.env.items() if k != "PYTHON_KEYRING_BACKEND"}
    env["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=/nonexistent/secrets-ledger-test-bus"
    return env


def _in(ledger: Ledger, env: dict[str, str]) -> Ledger:
    """The same ledger used from a shell whose whole environment is `env` (and the ledger's
    home and store): not merged with the environment it was made in."""
    where = ("SECRETS_LEDGER_HOME", "SECRETS_LEDGER_DATABASE_URL")
    return dataclasses.replace(
        ledger, env={**env, **{k: v for k, v in ledger.env.items() if k in where}}
    )


def _file_backend(home: Path) -> object:
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    return EncryptedFileKeyring(path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE)


def _store(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (the SQLite file in the home) or a fresh PostgreSQL database: the shared ledger."""
    return _store(request)


def _recorded(ledger: Ledger) -> dict[str, object]:
    """host -> vault kind, as the stored events record it: `init`'s in the `Initialized`
    event, a joining host's in a `VaultChosen` event."""
    found: dict[str, object] = {}
    for e in ledger.events("ledger.settings:LedgerSettings."):
        if e.topic.endswith(".Initialized"):
            found.update(e.state.get("vaults") or {})
        elif e.topic.endswith(".VaultChosen"):
            found[str(e.state["host"])] = e.state["vault"]
    return found


def _namespace_entries(ledger: Ledger, service: infra.SecretService) -> list[str]:
    """Entries of this ledger's namespace in the Secret Service (read in this process)."""
    from ledger.vault.keyring_vault import secret_service_entries

    namespace = f"secrets-ledger:{ledger._app().settings.ledger_uid}"
    with service.bus_environment():
        return secret_service_entries(service.backend(), namespace)


def test_a_file_vault_ledger_is_read_where_a_secret_service_runs(
    secret_service: infra.SecretService, tmp_path: Path, database_url: str | None
) -> None:
    home = tmp_path / "home"
    headless = {**_no_secret_service(secret_service), **PASSPHRASE}
    ledger = start_ledger(home, headless, lambda: _file_backend(home), database_url=database_url)
    ledger.set("nexus", "mcp.openai.apiKey", KEY)

    # The same ledger in a shell where the Secret Service runs (PYTHON_KEYRING_BACKEND and all).
    desktop = {**secret_service.env, **PASSPHRASE}
    got = ledger.run("get", *TARGET, env=desktop)
    assert (got.returncode, got.stdout) == (0, KEY), got.stderr
    doctor = ledger.run("doctor", "--output", "json", env=desktop)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["healthy"] is True and report["missing_values"] == []
    assert report["vault"].endswith("EncryptedFileKeyring")
    wrote = ledger.run("set", *TARGET, "--value-stdin", input=NEW_KEY, env=desktop)
    assert wrote.returncode == 0, wrote.stderr
    assert _namespace_entries(ledger, secret_service) == []  # nothing went to the keychain
    assert ledger.run("get", *TARGET, env=headless).stdout == NEW_KEY

    # Without its passphrase the file vault cannot be opened: said so, exit 8, never "missing".
    locked = _in(ledger, dict(secret_service.env)).run("get", *TARGET)
    assert locked.returncode == 8 and "SECRETS_LEDGER_PASSPHRASE" in locked.stderr
    assert "missing" not in locked.stderr and locked.stdout == ""
    # Asking for the keychain on this ledger is a conflict, not a silent switch.
    keyring = ledger.run("get", *TARGET, env={**desktop, "SECRETS_LEDGER_VAULT": "keyring"})
    assert keyring.returncode == 8 and "SECRETS_LEDGER_VAULT=keyring" in keyring.stderr
    assert keyring.stdout == "" and "Traceback" not in keyring.stderr
    assert _recorded(ledger) == {socket.gethostname(): "file"}


def test_a_keychain_ledger_says_why_where_there_is_no_keychain(
    secret_service: infra.SecretService, tmp_path: Path, database_url: str | None
) -> None:
    home = tmp_path / "home"
    ledger = start_ledger(
        home, dict(secret_service.env), secret_service.backend, database_url=database_url
    )
    ledger.set("nexus", "mcp.openai.apiKey", KEY)
    before = len(ledger.events())

    # Headless: keyring finds no keychain at all; or the bus named is gone while
    # PYTHON_KEYRING_BACKEND still names the Secret Service.
    headless = _in(ledger, {**_no_secret_service(secret_service), **PASSPHRASE})
    bus_gone = {**PASSPHRASE, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    for shell, says in ((headless, "is refused, it stores nothing"), (ledger, "could not start")):
        for argv in (["get", *TARGET], ["set", *TARGET, "--value-stdin"], ["doctor"]):
            result = shell.run(*argv, input=NEW_KEY, env=bus_gone)
            assert result.returncode == 8, (argv, result.stdout, result.stderr)
            assert "keeps its values in the keychain" in result.stderr, (argv, result.stderr)
            assert says in result.stderr, (argv, result.stderr)
            assert "missing" not in result.stdout + result.stderr, argv
            assert "Traceback" not in result.stderr
    assert not (home / "vault.enc").exists()  # no file vault was made for it
    assert len(ledger.events()) == before

    # SECRETS_LEDGER_VAULT=file on a keychain ledger: a conflict, named, even where the
    # keychain is there.
    forced = ledger.run("get", *TARGET, env={**secret_service.env, "SECRETS_LEDGER_VAULT": "file"})
    assert forced.returncode == 8 and "SECRETS_LEDGER_VAULT=file" in forced.stderr
    assert not (home / "vault.enc").exists()

    back = ledger.run("get", *TARGET)
    assert (back.returncode, back.stdout) == (0, KEY)
    assert ledger.run("doctor").returncode == 0
    assert _recorded(ledger) == {socket.gethostname(): "keychain"}


def test_init_vault_chooses_and_records_the_vault(
    secret_service: infra.SecretService, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {**secret_service.env, **PASSPHRASE, "SECRETS_LEDGER_HOME": str(home)}
    ledger = Ledger(home=home, env=env, backend_factory=lambda: _file_backend(home))
    clash = ledger.run(
        "init", "--operator", "alice", "--vault", "file", env={"SECRETS_LEDGER_VAULT": "keyring"}
    )
    assert clash.returncode == 2 and "ask for different vaults" in clash.stderr
    assert not (home / "ledger.sqlite").exists() or not ledger.events()

    made = ledger.run("init", "--operator", "alice", "--vault", "file", "--output", "json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["vault"] == "file"
    ledger.token = doc["token"]
    login = ledger.run(
        "auth", "login", "--operator", "alice", "--token-stdin", input=ledger.token + "\n"
    )
    assert login.returncode == 0, login.stderr
    ledger.set("nexus", "mcp.openai.apiKey", KEY)
    assert (home / "vault.enc").exists()
    assert _namespace_entries(ledger, secret_service) == []
    headless = {**_no_secret_service(secret_service), **PASSPHRASE}
    assert ledger.run("get", *TARGET, env=headless).stdout == KEY

    again = ledger.run("init", "--operator", "alice", "--vault", "keychain")
    assert again.returncode == 2 and "file vault" in again.stderr
    same = ledger.run("init", "--operator", "alice", "--vault", "file")
    assert same.returncode == 0 and "nothing changed" in same.stderr

    # --vault keychain where there is none: exit 8 before anything is written.
    other = tmp_path / "other"
    nowhere = Ledger(
        home=other,
        env={**headless, "SECRETS_LEDGER_HOME": str(other)},
        backend_factory=secret_service.backend,
    )
    refused = nowhere.run("init", "--operator", "alice", "--vault", "keychain")
    assert refused.returncode == 8, refused.stderr
    assert "keychain" in refused.stderr and refused.stdout == ""
    assert not (other / "vault.enc").exists()
    if (other / "ledger.sqlite").exists():
        with sqlite3.connect(other / "ledger.sqlite") as db:
            assert db.execute("SELECT count(*) FROM stored_events").fetchone()[0] == 0


def test_a_ledger_without_the_record_chooses_as_before(
    secret_service: infra.SecretService, tmp_path: Path
) -> None:
    """A ledger made before the record existed has no VaultChosen event: its vault is chosen
    as it always was (SECRETS_LEDGER_VAULT, PYTHON_KEYRING_BACKEND, keyring's choice); where
    that finds another vault than its values', `get` and `doctor` say so (exit 8) instead of
    calling the values missing (doctor said exit 6, "missing value")."""
    from ledger import context
    from ledger.access import tokens
    from ledger.application import FINGERPRINT_KEY_ENTRY
    from ledger.operator import Operator
    from ledger.settings import LedgerSettings
    from ledger.store.opening import open_ledger

    home = tmp_path / "home"
    old = open_ledger(home, create=True, backend=_file_backend(home))
    with context.acting_as("alice"):
        # What `initialize` saved before the record: the settings and the first operator.
        settings = LedgerSettings("0" * 32, 10)
        old._settings = settings
        old.vault.put(FINGERPRINT_KEY_ENTRY, "ab" * 32)
        alice = Operator("alice", "senior-engineer")
        issued = tokens.issue("alice")
        alice.issue_token(issued.token_id, issued.digest)
        old.uow.save(settings, alice)
    old.close()
    with sqlite3.connect(home / "ledger.sqlite") as db:
        # The bytes of an `Initialized` event written before it had a `vaults` field.
        stripped = db.execute(
            "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), "
            "',\"vaults\":null', '') AS BLOB) WHERE topic LIKE '%.Initialized'"
        ).rowcount
    assert stripped == 1
    rechain(home)  # as the older code would have linked those bytes
    # ... which kept no witness of what it had seen (ledger/integrity/seen_heads.py)
    (home / "seen-heads.sqlite").unlink()
    as_file = {**secret_service.env, **PASSPHRASE, "SECRETS_LEDGER_VAULT": "file"}
    ledger = Ledger(
        home=home,
        env={**as_file, "SECRETS_LEDGER_HOME": str(home)},
        backend_factory=lambda: _file_backend(home),
        token=issued.token,
    )
    login = ledger.run("auth", "login", "--operator", "alice", "--token-stdin", input=issued.token)
    assert login.returncode == 0, login.stderr
    ledger.set("nexus", "mcp.openai.apiKey", KEY)
    assert ledger.run("init", "--operator", "alice").returncode == 0  # nothing changed
    assert _recorded(ledger) == {}  # and nothing recorded
    assert ledger.run("doctor").returncode == 0

    desktop = {"SECRETS_LEDGER_VAULT": "auto"}  # keyring's choice: the Secret Service
    got = ledger.run("get", *TARGET, env=desktop)
    assert got.returncode == 8 and "fingerprint key" in got.stderr, got.stderr
    doctor = ledger.run("doctor", env=desktop)
    assert doctor.returncode == 8, doctor.stdout + doctor.stderr
    assert "not the vault they were written to" in doctor.stderr
    assert "missing value" not in doctor.stdout


def test_a_host_joining_a_shared_ledger_records_its_vault(
    secret_service: infra.SecretService, tmp_path: Path, pg_url: str
) -> None:
    """On a shared (PostgreSQL) ledger each host keeps its own values: `ledger import-key` on
    a joining host records the vault the key went into, and that host keeps using it."""
    alpha = start_ledger(
        tmp_path / "alpha", dict(secret_service.env), secret_service.backend, database_url=pg_url
    )
    exported = alpha.run("ledger", "export-key")
    assert exported.returncode == 0, exported.stderr
    # Host "beta" (its own hostname, via a UTS namespace), headless: its keys go to a file vault.
    as_beta = tmp_path / "as-beta"
    as_beta.write_text(
        "#!/bin/sh\n"
        f'exec unshare -u sh -c \'hostname beta && exec "$@"\' sh {sys.executable} "$@"\n'
    )
    as_beta.chmod(0o755)
    home = tmp_path / "beta"
    headless = {**_no_secret_service(secret_service), **PASSPHRASE}
    beta = Ledger(
        home=home,
        env={**headless, "SECRETS_LEDGER_HOME": str(home), "SECRETS_LEDGER_DATABASE_URL": pg_url},
        backend_factory=lambda: _file_backend(home),
        python=str(as_beta),
        database_url=pg_url,
    )
    login = beta.run("auth", "login", "--operator", "alice", "--token-stdin", input=alpha.token)
    assert login.returncode == 0, login.stderr
    joined = beta.run("ledger", "import-key", "--key-stdin", input=exported.stdout)
    assert joined.returncode == 0, joined.stderr
    beta.set("nexus", "mcp.openai.apiKey", KEY)

    # beta in a shell where the Secret Service runs: still its file vault.
    desktop = _in(beta, {**secret_service.env, **PASSPHRASE})
    got = desktop.run("get", *TARGET)
    assert (got.returncode, got.stdout) == (0, KEY), got.stderr
    assert desktop.run("doctor").returncode == 0
    assert _recorded(alpha) == {socket.gethostname(): "keychain", "beta": "file"}
    log = alpha.json("audit", "log", "--code", "HBSE-014")
    assert [e["action"] for e in log["events"]].count("choose-vault") == 1


def test_a_forged_vault_record_is_an_integrity_failure(
    secret_service: infra.SecretService, tmp_path: Path
) -> None:
    """Storage is hostile: a recorded vault kind that is no kind is damage (exit 6), never a
    traceback and never a guess at a vault."""
    home = tmp_path / "home"
    ledger = start_ledger(home, dict(secret_service.env), secret_service.backend)
    ledger.set("nexus", "mcp.openai.apiKey", KEY)
    with sqlite3.connect(home / "ledger.sqlite") as db:
        changed = db.execute(
            "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), "
            "'\"keychain\"', '\"os.system\"') AS BLOB) WHERE topic LIKE '%.Initialized'"
        ).rowcount
    assert changed == 1
    rechain(home)  # covered up: the edit passes the chain check on loading
    # This host saw the settings before the edit: its witness refuses the rewritten history.
    seen = ledger.run("get", *TARGET)
    assert seen.returncode == 6 and "rewritten" in seen.stderr, seen.stderr
    # A host that never saw them (no witness) decodes the forged record and refuses it too.
    (home / "seen-heads.sqlite").unlink()
    got = ledger.run("get", *TARGET)
    assert got.returncode == 6, got.stderr
    assert "'os.system'" in got.stderr and "Traceback" not in got.stderr
    assert got.stdout == ""
