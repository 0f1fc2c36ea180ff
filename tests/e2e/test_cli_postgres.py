"""The real CLI in a subprocess against a real PostgreSQL server (SECRETS_LEDGER_DATABASE_URL or
--database-url), with the encrypted file vault as each host's keychain."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import psycopg
import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, start_ledger
from tests.pg_cluster import PASSWORD, PgCluster
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

API_KEY = "sk-" + "Q7x" * 16
OTHER_KEY = "sk-" + "m4Z" * 16
HERE = socket.gethostname()


def _env(home: Path, url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON_KEYRING", "PG"))}
    env.pop("SECRETS_LEDGER_DATABASE_URL", None)
    env.update(
        {
            "SECRETS_LEDGER_VAULT": "file",
            "SECRETS_LEDGER_PASSPHRASE": FILE_VAULT_PASSPHRASE,
            "SECRETS_LEDGER_HOME": str(home),
        }
    )
    if url is not None:
        env["SECRETS_LEDGER_DATABASE_URL"] = url
    return env


def _file_vault(home: Path) -> object:
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    return EncryptedFileKeyring(path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE)


@pytest.fixture
def cli(tmp_path: Path, pg_url: str) -> Ledger:  # noqa: F811
    home = tmp_path / "host-a"
    return start_ledger(home, _env(home, pg_url), lambda: _file_vault(home))


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    assert row is not None
    return int(row[0])


def test_everyday_commands_on_postgres(cli: Ledger, pg_url: str) -> None:  # noqa: F811
    assert cli.set("nexus", "mcp.bun.apiKey", API_KEY).stdout.startswith("default/nexus/")
    cli.set("nexus", "mcp.bun.apiKey", OTHER_KEY)
    got = cli.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert (got.returncode, got.stdout) == (0, OTHER_KEY)
    back = cli.run("rollback", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "1")
    assert back.returncode == 0, back.stderr
    doc = cli.json("versions", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert [v["version"] for v in doc["versions"]] == [3, 2, 1]
    assert {v["host"] for v in doc["versions"]} == {HERE}
    listed = cli.json("list")
    assert [(s["name"], s["current_version"]) for s in listed["secrets"]] == [("mcp.bun.apiKey", 3)]
    doctor = cli.json("doctor")
    assert doctor["healthy"] and doctor["checked_versions"] == 3
    assert doctor["on_other_hosts"] == {}

    # The history is in PostgreSQL; the home holds only this host's caches and keychain.
    assert _count(pg_url, "secretsledger_events") == _count(pg_url, "secretsledger_event_chain")
    assert _count(pg_url, "secretsledger_events") >= 8
    assert not (cli.home / "ledger.sqlite").exists()
    assert list(cli.home.glob("views-pg-*.sqlite"))
    assert (cli.home / "session.json").exists() and (cli.home / "vault.enc").exists()
    assert PASSWORD not in got.stderr + back.stderr


def test_the_database_url_option_works_on_every_command(cli: Ledger, pg_url: str) -> None:  # noqa: F811
    cli.set("nexus", "mcp.bun.apiKey", API_KEY)
    without = {k: v for k, v in cli.env.items() if k != "SECRETS_LEDGER_DATABASE_URL"}
    cli.env = without
    missing = cli.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert missing.returncode != 0  # the local SQLite ledger in that home does not exist
    for args in (
        ["get", "--service", "nexus", "--name", "mcp.bun.apiKey"],
        ["versions", "--service", "nexus", "--name", "mcp.bun.apiKey"],
        ["list"],
        ["doctor"],
        ["auth", "status"],
    ):
        result = cli.run(*args, "--database-url", pg_url)
        assert result.returncode == 0, (args, result.stderr)
    help_text = cli.run("set", "--help").stdout
    assert "--database-url" in help_text and "SECRETS_LEDGER_DATABASE_URL" in help_text


def test_init_says_where_the_ledger_is_without_the_password(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    home = tmp_path / "fresh"
    ledger = Ledger(home=home, env=_env(home, pg_url), backend_factory=lambda: None)
    created = ledger.run("init", "--operator", "alice")
    assert created.returncode == 0, created.stderr
    assert "ledger created at postgresql://postgres@127.0.0.1:" in created.stderr
    assert PASSWORD not in created.stderr + created.stdout
    again = ledger.run("init")
    assert again.returncode == 0 and "nothing changed" in again.stderr


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        (lambda c: c.url("postgres", password="wrong-password"), "authentication failed"),
        (lambda c: c.url("no_such_db"), "database 'no_such_db' does not exist"),
        (lambda c: c.url("postgres", user="nobody"), "authentication failed"),
        (lambda c: f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", "connection refused"),
        (lambda c: f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db", "malformed"),
        (lambda c: f"postgresql://u:{PASSWORD}@127.0.0.1:5432", "names no database"),
        (lambda c: f"postgresql://u:{PASSWORD}@127.0.0.1/db?sslmode=x", "unsupported"),
        (lambda c: f"mysql://u:{PASSWORD}@127.0.0.1/db", "unsupported database URL scheme"),
        (lambda c: f"postgresql://u:{PASSWORD}@no-such-host.invalid/db", "cannot resolve"),
        (lambda c: c.url("postgres"), "no ledger in postgresql://postgres@127.0.0.1"),
    ],
)
def test_bad_urls_and_servers_give_one_clear_line(
    tmp_path: Path,
    pg: PgCluster,  # noqa: F811
    make_url: object,
    expected: str,
) -> None:
    url = make_url(pg)  # type: ignore[operator]
    home = tmp_path / "h"
    ledger = Ledger(home=home, env=_env(home, url), backend_factory=lambda: None)
    # A malformed URL is a usage error (exit 2); a server that fails or refuses, exit 1.
    malformed = expected in ("malformed", "names no database", "unsupported") or (
        expected.startswith("unsupported database URL")
    )
    for args in (["list"], ["get", "--service", "nexus", "--name", "x"]):
        result = ledger.run(*args)
        assert result.returncode == (2 if malformed else 1), result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
        assert "Traceback" not in result.stderr
        assert PASSWORD not in result.stderr + result.stdout
        assert "wrong-password" not in result.stderr + result.stdout


def test_a_value_on_another_host_is_named_and_doctor_lists_that_host(
    cli: Ledger,
    pg_url: str,  # noqa: F811
) -> None:
    cli.set("nexus", "mcp.bun.apiKey", API_KEY)
    exported = cli.run("ledger", "export-key")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("slk1.") and "treat it like a password" in exported.stderr

    # Another host (in-process here, with its own keychain and host name) writes v2.
    other = open_ledger(cli.home.parent / "host-b", backend=MemoryKeyring(), database_url=pg_url)
    other.host = "laptop-b"
    alice = Credential(token=cli.token)
    assert other.import_key(alice, exported.stdout)
    other.write(alice, SecretAddress("default", "nexus", "mcp.bun.apiKey"), OTHER_KEY)
    other.close()

    got = cli.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert got.returncode == 8 and got.stdout == ""
    assert "v2's value is in the keychain of host 'laptop-b'" in got.stderr
    old = cli.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey", "--version", "1")
    assert (old.returncode, old.stdout) == (0, API_KEY)
    doctor = cli.run("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "1 version(s) on laptop-b" in doctor.stdout
    assert json.loads(cli.run("doctor", "--output", "json").stdout)["on_other_hosts"] == {
        "laptop-b": 1
    }


def test_export_and_import_key_between_two_homes(
    cli: Ledger,
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    home_b = tmp_path / "host-b"
    b = Ledger(home=home_b, env=_env(home_b, pg_url), backend_factory=lambda: None)
    login = b.run("auth", "login", "--operator", "alice", "--token-stdin", input=cli.token + "\n")
    assert login.returncode == 0, login.stderr
    refused = b.run("set", "--service", "nexus", "--name", "k", "--value-stdin", input=API_KEY)
    assert refused.returncode == 8 and "import-key" in refused.stderr

    exported = cli.run("ledger", "export-key").stdout
    no_stdin = b.run("ledger", "import-key", input="")
    assert no_stdin.returncode == 2
    wrong = b.run("ledger", "import-key", "--key-stdin", input=exported[:-10] + "0" * 9 + "\n")
    assert wrong.returncode == 5 and "not the key of this ledger" in wrong.stderr
    imported = b.run("ledger", "import-key", "--key-stdin", input=exported)
    assert imported.returncode == 0 and "stored" in imported.stdout, imported.stderr
    again = b.run("ledger", "import-key", "--key-stdin", input=exported)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    written = b.run("set", "--service", "nexus", "--name", "k", "--value-stdin", input=API_KEY)
    assert written.returncode == 0, written.stderr
    # The same value gets the same fingerprint on both hosts: one key.
    a_side = cli.run("set", "--service", "nexus", "--name", "k", "--value-stdin", input=API_KEY)
    assert a_side.stdout.split("[")[1] == written.stdout.split("[")[1]
    codes = b.json("versions", "--service", "nexus", "--name", "k")
    assert codes["versions"][0]["fingerprint"] == codes["versions"][1]["fingerprint"]
