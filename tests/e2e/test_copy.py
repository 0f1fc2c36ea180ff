"""`secrets ledger copy`: SQLite -> PostgreSQL -> SQLite keeps every event, position, timestamp
and chain link; each copy verifies, and the CLI shows the same history from all three."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.store.chain import verify_store
from ledger.store.opening import open_ledger
from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, start_ledger
from tests.pg_cluster import PASSWORD
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

API_KEY = "sk-" + "Q7x" * 16
ADDR = SecretAddress("default", "nexus", "mcp.bun.apiKey")


def _file_vault(home: Path) -> Any:
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    return EncryptedFileKeyring(path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON_KEYRING", "PG"))}
    env.pop("SECRETS_LEDGER_DATABASE_URL", None)
    env.update(
        {
            "SECRETS_LEDGER_VAULT": "file",
            "SECRETS_LEDGER_PASSPHRASE": FILE_VAULT_PASSPHRASE,
            "SECRETS_LEDGER_HOME": str(home),
        }
    )
    return env


def _stored(app: Any) -> list[tuple[int, str, int, str, bytes]]:
    def hexed(oid: UUID | str) -> str:
        return oid.hex if isinstance(oid, UUID) else str(oid)

    return [
        (r.notification_id, hexed(r.originator_id), r.originator_version, r.topic, r.state)
        for r in app.recorder.iter_rows()
    ]


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Ledger:
    home = tmp_path / "home"
    cli = start_ledger(home, _env(home), lambda: _file_vault(home))
    # A history worth copying: many versions (so snapshots exist), a rollback, a deleted
    # secret, reads, a denial, another operator.
    app = open_ledger(home, backend=_file_vault(home))
    alice = Credential(token=cli.token)
    for n in range(60):
        app.write(alice, ADDR, f"{API_KEY}{n:02d}")
    app.rollback(alice, ADDR, 55)
    other = SecretAddress("staging", "github", "github.token")
    app.write(alice, other, "ghp_" + "A1b2" * 9)
    app.delete(alice, other)
    app.read(alice, ADDR)
    app.grant(alice, "bob", "analyst")
    app.close()
    assert cli.run("get", "--service", "nexus", "--name", "x").returncode == 3
    return cli


def test_round_trip_sqlite_postgres_sqlite(
    sqlite_ledger: Ledger,
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    cli = sqlite_ledger
    history = ("versions", "--service", "nexus", "--name", "mcp.bun.apiKey")
    before = cli.run(*history, "--output", "json")
    listed = cli.run("list", "--deleted", "--output", "json")
    assert before.returncode == 0 and listed.returncode == 0

    to_pg = cli.run("ledger", "copy", "--to", pg_url)
    assert to_pg.returncode == 0, to_pg.stderr
    assert "chain verified" in to_pg.stdout and PASSWORD not in to_pg.stdout + to_pg.stderr
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM secretsledger_snapshots").fetchone()
    assert row is not None and row[0] >= 1  # snapshots came along

    on_pg = {"SECRETS_LEDGER_DATABASE_URL": pg_url}
    assert cli.run(*history, "--output", "json", env=on_pg).stdout == before.stdout
    assert cli.run("list", "--deleted", "--output", "json", env=on_pg).stdout == listed.stdout
    # Same host, same keychain, same ledger uid: the values are readable through PostgreSQL.
    got = cli.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey", env=on_pg)
    assert (got.returncode, got.stdout) == (0, f"{API_KEY}54")

    back_home = tmp_path / "back"
    to_sqlite = cli.run("ledger", "copy", "--to", f"sqlite://{back_home}/ledger.sqlite", env=on_pg)
    assert to_sqlite.returncode == 0, to_sqlite.stderr
    on_back = {
        "SECRETS_LEDGER_DATABASE_URL": f"sqlite://{back_home}",  # that home, with its caches
        "SECRETS_LEDGER_SESSION_FILE": str(cli.home / "session.json"),
    }
    # The history is the same, and it now says who read the secret last (the `get` above).
    after = json.loads(cli.run(*history, "--output", "json", env=on_back).stdout)
    earlier = json.loads(before.stdout)
    assert after.pop("last_read")["version"] == earlier["current_version"]
    assert after == {k: v for k, v in earlier.items() if k != "last_read"}

    # Byte for byte, position for position, link for link, in all three stores.
    original = open_ledger(cli.home, backend=_file_vault(cli.home))
    postgres = open_ledger(cli.home, backend=_file_vault(cli.home), database_url=pg_url)
    returned = open_ledger(back_home, backend=_file_vault(cli.home))
    rows, pg_rows = _stored(original), _stored(postgres)
    # (the `get` above recorded one more event, on PostgreSQL only, before the copy back)
    assert pg_rows[: len(rows)] == rows and len(pg_rows) == len(rows) + 1
    assert _stored(returned) == pg_rows
    links = list(original.recorder.iter_links())  # type: ignore[attr-defined]
    pg_links = list(postgres.recorder.iter_links())  # type: ignore[attr-defined]
    assert pg_links[: len(links)] == links
    assert list(returned.recorder.iter_links()) == pg_links  # type: ignore[attr-defined]
    assert verify_store(original.recorder).head == links[-1][1]  # type: ignore[arg-type]
    assert verify_store(postgres.recorder).head == pg_links[-1][1]  # type: ignore[arg-type]
    assert verify_store(returned.recorder).head == pg_links[-1][1]  # type: ignore[arg-type]

    # New events continue after the copied positions, and the chains still verify.
    alice = Credential(token=cli.token)
    for app in (postgres, returned):
        app.write(alice, ADDR, API_KEY + "new")
        last = _stored(app)[-2:]
        assert last[0][0] > pg_rows[-1][0] and verify_store(app.recorder).ok  # type: ignore[arg-type]
        app.close()
    original.close()


def test_a_copy_goes_only_into_an_empty_store(
    sqlite_ledger: Ledger,
    pg_url: str,  # noqa: F811
) -> None:
    first = sqlite_ledger.run("ledger", "copy", "--to", pg_url)
    assert first.returncode == 0, first.stderr
    again = sqlite_ledger.run("ledger", "copy", "--to", pg_url)
    assert again.returncode == 1 and "already holds events" in again.stderr
    same = sqlite_ledger.run("ledger", "copy", "--to", str(sqlite_ledger.home))
    assert same.returncode == 1 and "the ledger being copied" in same.stderr


def test_a_tampered_source_is_not_copied(
    sqlite_ledger: Ledger,
    pg_url: str,  # noqa: F811
) -> None:
    with sqlite3.connect(sqlite_ledger.home / "ledger.sqlite") as db:
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'manual', 'rotate') WHERE rowid = 9"
        )
    refused = sqlite_ledger.run("ledger", "copy", "--to", pg_url)
    assert refused.returncode == 6, refused.stderr
    assert "fails verification at position 9" in refused.stderr
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM secretsledger_events").fetchone()
    assert row is not None and row[0] == 0


def test_only_a_senior_engineer_may_copy(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    bob_token = sqlite_ledger.run("auth", "grant", "--operator", "carol", "--role", "engineer")
    assert bob_token.returncode == 0, bob_token.stderr
    session = tmp_path / "carol.json"
    as_carol = {"SECRETS_LEDGER_SESSION_FILE": str(session)}
    login = sqlite_ledger.run(
        "auth",
        "login",
        "--operator",
        "carol",
        "--token-stdin",
        input=bob_token.stdout,
        env=as_carol,
    )
    assert login.returncode == 0, login.stderr
    denied = sqlite_ledger.run("ledger", "copy", "--to", str(tmp_path / "x"), env=as_carol)
    assert denied.returncode == 4 and "PERMISSION_DENIED" in denied.stderr
    assert not (tmp_path / "x" / "ledger.sqlite").exists()
