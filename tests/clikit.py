"""Driving the real `secrets` CLI in a subprocess against a throwaway ledger."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FILE_VAULT_PASSPHRASE = "correct horse battery staple for tests"


@dataclass(frozen=True)
class StoredEvent:
    position: int
    originator_id: str
    topic: str
    state: dict[str, Any]


@dataclass
class Ledger:
    home: Path
    env: dict[str, str]
    backend_factory: Any  # () -> keyring backend, to look inside the keychain in-process
    python: str = sys.executable
    cwd: str = str(REPO)
    token: str = ""
    database_url: str | None = None  # the PostgreSQL store, when the ledger is on one
    _ledger: Any = field(default=None, repr=False)

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        merged = {**self.env, **(env or {})}
        return subprocess.run(
            [self.python, "-m", "commands", *args],
            input=input,
            env=merged,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def set(
        self, service: str, name: str, value: str, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        result = self.run(
            "set", "--service", service, "--name", name, "--value-stdin", *extra, input=value
        )
        assert result.returncode == 0, result.stderr
        return result

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--output", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @property
    def store(self) -> str:
        """ "postgres" or "sqlite": which event store this ledger's log is in."""
        return "postgres" if self.database_url else "sqlite"

    def events(self, topic_prefix: str = "") -> list[StoredEvent]:
        """The stored events (whose topic starts with `topic_prefix`), in log order, read
        straight from the store: the SQLite file or the PostgreSQL tables."""
        if self.database_url is None:
            with sqlite3.connect(self.home / "ledger.sqlite") as db:
                rows = db.execute(
                    "SELECT rowid, originator_id, topic, state FROM stored_events "
                    "WHERE topic LIKE ? ORDER BY rowid",
                    (topic_prefix + "%",),
                ).fetchall()
        else:
            import psycopg

            with psycopg.connect(self.database_url) as conn:
                rows = conn.execute(
                    "SELECT notification_id, originator_id, topic, state "
                    "FROM public.secretsledger_events WHERE topic LIKE %s "
                    "ORDER BY notification_id",
                    (topic_prefix + "%",),
                ).fetchall()
        return [StoredEvent(int(n), str(o), str(t), json.loads(bytes(s))) for n, o, t, s in rows]

    @property
    def views_file(self) -> Path:
        """This home's views cache: views.sqlite, or views-pg-<id>.sqlite for a PostgreSQL
        store (one per database, so a home can follow more than one)."""
        (found,) = [p for p in self.home.glob("views*.sqlite")]
        return found

    def store_contents(self) -> dict[str, bytes]:
        """Every byte the PostgreSQL store holds for this ledger, per table (each row's columns
        as text, bytea raw); empty for a SQLite ledger, whose store is a file in the home."""
        if self.database_url is None:
            return {}
        import psycopg

        contents: dict[str, bytes] = {}
        with psycopg.connect(self.database_url) as conn:
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            ).fetchall()
            for schema, table in tables:
                query = f'SELECT * FROM "{schema}"."{table}"'  # noqa: S608  (names from the server)
                rows = conn.execute(query).fetchall()
                contents[f"postgres:{schema}.{table}"] = b"\n".join(
                    value if isinstance(value, bytes) else str(value).encode()
                    for row in rows
                    for value in row
                )
        return contents

    def break_link(self, position: int) -> None:
        """Overwrite the hash-chain link stored for the event at `position` with zeros."""
        if self.database_url is None:
            with sqlite3.connect(self.home / "ledger.sqlite") as db:
                db.execute(
                    "UPDATE event_chain SET link = zeroblob(32) WHERE notification_id = ?",
                    (position,),
                )
        else:
            import psycopg

            with psycopg.connect(self.database_url) as conn:
                conn.execute(
                    "UPDATE public.secretsledger_event_chain SET link = %s "
                    "WHERE notification_id = %s",
                    (bytes(32), position),
                )

    def secret_events(self) -> list[tuple[int, str]]:
        return [(e.position, e.topic) for e in self.events("ledger.secret:")]

    def _app(self) -> Any:
        from ledger.store.opening import open_ledger

        if self._ledger is None:
            self._ledger = open_ledger(
                self.home, backend=self.backend_factory(), database_url=self.database_url
            )
        return self._ledger

    def _entry(self, versioned: str) -> str | None:
        address, _, version = versioned.partition("#v")
        environment, service, name = address.split("/", 2)
        doc = self.json("versions", "-e", environment, "--service", service, "--name", name)
        for v in doc["versions"]:
            if v["version"] == int(version):
                return f"{versioned}.{v['fingerprint']}"
        return None

    def keychain_get(self, versioned: str) -> str | None:
        entry = self._entry(versioned)
        return None if entry is None else self._app().vault.get(entry)

    def keychain_delete_matching(self, versioned: str) -> None:
        entry = self._entry(versioned)
        assert entry is not None
        assert self._app().vault.delete(entry)


def start_ledger(
    home: Path,
    env: dict[str, str],
    backend_factory: Any,
    operator: str = "alice",
    database_url: str | None = None,
) -> Ledger:
    env = {**env, "SECRETS_LEDGER_HOME": str(home)}
    database_url = database_url or env.get("SECRETS_LEDGER_DATABASE_URL") or None
    if database_url is None:
        env.pop("SECRETS_LEDGER_DATABASE_URL", None)
    else:
        env["SECRETS_LEDGER_DATABASE_URL"] = database_url
    ledger = Ledger(home=home, env=env, backend_factory=backend_factory, database_url=database_url)
    created = ledger.run("init", "--operator", operator)
    assert created.returncode == 0, created.stderr
    ledger.token = created.stdout.strip()
    login = ledger.run(
        "auth", "login", "--operator", operator, "--token-stdin", input=ledger.token + "\n"
    )
    assert login.returncode == 0, login.stderr
    return ledger


def rechain(home: Path) -> None:
    """Recompute the unkeyed hash chain of the SQLite ledger in `home`, as anyone who can
    write the file can before the first signed checkpoint (a test that edits stored bytes
    to stand for an older format, or an attacker who covers an edit)."""
    from ledger.store.chain import GENESIS, MalformedRow, link

    previous = GENESIS
    with sqlite3.connect(home / "ledger.sqlite") as db:
        rows = db.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "ORDER BY rowid"
        ).fetchall()
        db.execute("DELETE FROM event_chain")
        for position, oid, version, topic, state in rows:
            try:
                previous = link(previous, position, oid, version, topic, bytes(state))
            except MalformedRow:  # no link covers a row of the wrong types: write any
                previous = hashlib.sha256(previous + repr((oid, version, topic)).encode()).digest()
            db.execute("INSERT INTO event_chain VALUES (?, ?)", (position, previous))
