"""A decision notices an aggregate's newest event deleted, or an older one edited and relinked,
when this host has seen it (ledger/integrity/seen_heads.py; docs/security.md, "What this host has
seen").

Each attack is made straight in the store's tables, as a writer of the SQLite file or of the
PostgreSQL tables can (the chain links are unkeyed SHA-256: anyone recomputes them), then the
real CLI runs in a subprocess as its victim. Only `secrets audit verify` noticed these before.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ledger.operator import operator_id
from ledger.store.chain import GENESIS, link
from tests.clikit import Ledger, start_ledger

SERVICE, NAME = "nexus", "mcp.bun.apiKey"
ADDRESS = ("--service", SERVICE, "--name", NAME)
OLD_VALUE = "sk-old-" + "a1B2" * 8
NEW_VALUE = "sk-new-" + "z9Y8" * 8
PG_EVENTS = "public.secretsledger_events"
PG_CHAIN = "public.secretsledger_event_chain"
PG_ROWS = (
    "SELECT notification_id, originator_id, originator_version, topic, state "
    "FROM public.secretsledger_events ORDER BY notification_id"
)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """A fresh ledger on the Secret Service, in a SQLite file or a PostgreSQL database."""
    service = request.getfixturevalue("secret_service")
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return start_ledger(tmp_path / "home", dict(service.env), service.backend, database_url=url)


# -- the attacker's edits, on either store ---------------------------------------------------


class Store:
    """The event store's rows, read and written as a database writer can."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _sqlite(self) -> sqlite3.Connection:
        return sqlite3.connect(self.ledger.home / "ledger.sqlite")

    def rows(self) -> list[tuple[int, str, int, str, bytes]]:
        if self.ledger.database_url is None:
            with self._sqlite() as db:
                found = db.execute(
                    "SELECT rowid, originator_id, originator_version, topic, state "
                    "FROM stored_events ORDER BY rowid"
                ).fetchall()
            return [(p, o, v, t, bytes(s)) for p, o, v, t, s in found]
        import psycopg

        with psycopg.connect(self.ledger.database_url) as conn:
            got = conn.execute(PG_ROWS).fetchall()
        return [(int(p), o.hex, int(v), str(t), bytes(s)) for p, o, v, t, s in got]

    def position(self, topic_end: str, originator_hex: str | None = None) -> int:
        """The newest event whose topic ends with `topic_end` (of one aggregate)."""
        return max(
            p
            for p, o, _, t, _ in self.rows()
            if t.endswith(topic_end) and originator_hex in (None, o.replace("-", ""))
        )

    def delete(self, position: int) -> None:
        """The event's row only: its chain link stays."""
        self._execute(
            "DELETE FROM stored_events WHERE rowid = ?",
            f"DELETE FROM {PG_EVENTS} WHERE notification_id = %s",  # noqa: S608
            (position,),
        )

    def set_state(self, position: int, state: bytes) -> None:
        self._execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            f"UPDATE {PG_EVENTS} SET state = %s WHERE notification_id = %s",  # noqa: S608
            (state, position),
        )

    def relink(self) -> None:
        """Recompute every chain link from the rows (the chain needs no secret)."""
        previous, links = GENESIS, []
        for position, oid, version, topic, state in self.rows():
            previous = link(previous, position, oid.replace("-", ""), version, topic, state)
            links.append((position, previous))
        if self.ledger.database_url is None:
            with self._sqlite() as db:
                db.execute("DELETE FROM event_chain")
                db.executemany("INSERT INTO event_chain VALUES (?, ?)", links)
            return
        import psycopg

        with psycopg.connect(self.ledger.database_url) as conn:
            conn.execute(f"DELETE FROM {PG_CHAIN}")  # noqa: S608
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {PG_CHAIN} VALUES (%s, %s)", links)  # noqa: S608

    def _execute(self, sqlite_sql: str, pg_sql: str, params: tuple[Any, ...]) -> None:
        if self.ledger.database_url is None:
            with self._sqlite() as db:
                assert db.execute(sqlite_sql, params).rowcount == 1
            return
        import psycopg

        with psycopg.connect(self.ledger.database_url) as conn:
            assert conn.execute(pg_sql, params).rowcount == 1  # type: ignore[arg-type]


def _alarms(ledger: Ledger) -> list[dict[str, Any]]:
    return [e.state for e in ledger.events() if e.topic.endswith("IntegrityCheckFailed")]


def _refused(result: Any, position: int) -> None:
    assert result.returncode == 6, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert f"position {position}" in result.stderr, result.stderr
    assert "reset-witness" in result.stderr, result.stderr
    assert OLD_VALUE not in result.stdout and NEW_VALUE not in result.stdout


def _grant(ledger: Ledger, name: str, role: str) -> dict[str, str]:
    granted = ledger.run("auth", "grant", "--operator", name, "--role", role)
    assert granted.returncode == 0, granted.stderr
    return {"SECRETS_LEDGER_TOKEN": granted.stdout.strip().splitlines()[-1]}


def _token_run(ledger: Ledger, token: dict[str, str], *args: str, input: str | None = None) -> Any:
    # The token variable comes before the home's session file: it says who runs the command.
    return ledger.run(*args, env=token, input=input)


# -- the attacks -----------------------------------------------------------------------------


@pytest.mark.parametrize("relinked", [False, True], ids=["link-left", "relinked"])
def test_a_deleted_revoke_does_not_give_the_token_back(ledger: Ledger, relinked: bool) -> None:
    ledger.set(SERVICE, NAME, OLD_VALUE)
    bob = _grant(ledger, "bob", "engineer")
    assert _token_run(ledger, bob, "get", *ADDRESS).stdout.strip() == OLD_VALUE
    revoked = ledger.run("auth", "revoke", "--operator", "bob")
    assert revoked.returncode == 0, revoked.stderr
    assert _token_run(ledger, bob, "get", *ADDRESS).returncode == 4
    store = Store(ledger)
    position = store.position(".Revoked", operator_id("bob").hex)
    store.delete(position)
    if relinked:
        store.relink()

    read = _token_run(ledger, bob, "get", *ADDRESS)
    _refused(read, position)
    assert "operator bob" in read.stderr
    status = _token_run(ledger, bob, "auth", "status")
    _refused(status, position)
    assert "role: engineer" not in status.stdout
    assert any(a["position"] == position and a["fault"] == "deleted" for a in _alarms(ledger))


@pytest.mark.parametrize("relinked", [False, True], ids=["link-left", "relinked"])
def test_a_deleted_newest_version_is_not_served_as_the_old_value(
    ledger: Ledger, relinked: bool
) -> None:
    ledger.set(SERVICE, NAME, OLD_VALUE)
    ledger.set(SERVICE, NAME, NEW_VALUE)
    assert ledger.run("get", *ADDRESS).stdout.strip() == NEW_VALUE
    store = Store(ledger)
    position = store.position(".VersionAdded")
    store.delete(position)
    if relinked:
        store.relink()

    read = ledger.run("get", *ADDRESS)
    _refused(read, position)
    assert f"secret default/{SERVICE}/{NAME}" in read.stderr
    assert any(a["position"] == position and a["fault"] == "deleted" for a in _alarms(ledger))


def test_an_edited_and_relinked_registration_is_not_believed(ledger: Ledger) -> None:
    bob = _grant(ledger, "bob", "analyst")
    assert _token_run(ledger, bob, "auth", "status").returncode == 0
    store = Store(ledger)
    registered = store.position(".Registered", operator_id("bob").hex)
    seen = store.position("", operator_id("bob").hex)  # bob's newest event, seen above
    (state,) = [s for p, _, _, _, s in store.rows() if p == registered]
    edited = json.loads(state)
    assert edited["role"] == "analyst"
    edited["role"] = "senior-engineer"
    store.set_state(registered, json.dumps(edited).encode())
    store.relink()

    status = _token_run(ledger, bob, "auth", "status")
    _refused(status, seen)
    assert "senior-engineer" not in status.stdout
    grant = _token_run(ledger, bob, "auth", "grant", "--operator", "mallory", "--role", "analyst")
    _refused(grant, seen)
    assert any(a["position"] == seen and a["fault"] == "edited" for a in _alarms(ledger))


# -- legitimate use never trips it -----------------------------------------------------------


def _ok(result: Any) -> Any:
    assert result.returncode == 0, (result.args, result.returncode, result.stderr)
    assert "seen" not in result.stderr, result.stderr
    return result


def test_normal_use_raises_no_false_alarm(ledger: Ledger, tmp_path: Path) -> None:
    for value in (OLD_VALUE, NEW_VALUE, OLD_VALUE + "x", NEW_VALUE + "y"):
        ledger.set(SERVICE, NAME, value)
    ledger.set(SERVICE, "other.key", OLD_VALUE)
    bob = _grant(ledger, "bob", "engineer")
    _ok(_token_run(ledger, bob, "get", *ADDRESS))
    _grant(ledger, "bob", "senior-engineer")  # a role change issues a new token
    _ok(ledger.run("auth", "revoke", "--operator", "bob"))
    _ok(ledger.run("rollback", *ADDRESS, "--version", "2"))
    _ok(ledger.run("rotate", *ADDRESS, "--value-stdin", input=NEW_VALUE + "z"))
    _ok(ledger.run("delete", "--service", SERVICE, "--name", "other.key"))
    _ok(ledger.run("restore", "--service", SERVICE, "--name", "other.key"))
    _ok(ledger.run("destroy", "--service", SERVICE, "--name", "other.key", "--yes"))
    _ok(ledger.run("doctor", "--repair"))
    _ok(ledger.run("projections", "rebuild"))
    assert _ok(ledger.run("get", *ADDRESS)).stdout.strip() == NEW_VALUE + "z"
    _ok(ledger.run("audit", "verify"))
    assert _alarms(ledger) == []
    witness = list(ledger.home.glob("seen-heads*.sqlite"))
    assert len(witness) == 1 and witness[0].stat().st_mode & 0o077 == 0


def test_pruning_raises_no_false_alarm(ledger: Ledger) -> None:
    """Retention 10: the eleventh version prunes the first (a `VersionPruned` event)."""
    for n in range(12):
        ledger.set(SERVICE, NAME, f"{OLD_VALUE}-{n}")
        assert ledger.run("get", *ADDRESS).returncode == 0
    assert any(e.topic.endswith(".VersionPruned") for e in ledger.events())
    _ok(ledger.run("versions", *ADDRESS))
    assert _alarms(ledger) == []


def test_a_ledger_copy_and_a_second_home_raise_no_false_alarm(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.set(SERVICE, NAME, OLD_VALUE)
    _ok(ledger.run("get", *ADDRESS))
    # A second home on the same store (for SQLite: the same file named by URL).
    url = ledger.database_url or f"sqlite:///{ledger.home / 'ledger.sqlite'}"
    other = Ledger(
        home=tmp_path / "second-home",
        env={**ledger.env, "SECRETS_LEDGER_HOME": str(tmp_path / "second-home")},
        backend_factory=ledger.backend_factory,
        database_url=url,
    )
    other.env["SECRETS_LEDGER_DATABASE_URL"] = url
    token = {"SECRETS_LEDGER_TOKEN": ledger.token}
    assert _ok(_token_run(other, token, "get", *ADDRESS)).stdout.strip() == OLD_VALUE
    ledger.set(SERVICE, NAME, NEW_VALUE)  # written by the first home, after the second saw it
    assert _ok(_token_run(other, token, "get", *ADDRESS)).stdout.strip() == NEW_VALUE
    _ok(_token_run(other, token, "set", *ADDRESS, "--value-stdin", input=OLD_VALUE))
    assert _ok(ledger.run("get", *ADDRESS)).stdout.strip() == OLD_VALUE

    target = tmp_path / "copy-home"
    _ok(ledger.run("ledger", "copy", "--to", str(target)))
    copied = Ledger(
        home=target,
        env={**ledger.env, "SECRETS_LEDGER_HOME": str(target)},
        backend_factory=ledger.backend_factory,
    )
    copied.env.pop("SECRETS_LEDGER_DATABASE_URL", None)
    assert _ok(_token_run(copied, token, "get", *ADDRESS)).stdout.strip() == OLD_VALUE
    _ok(ledger.run("get", *ADDRESS))
    assert _alarms(ledger) == []


def _sqlite_backup(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


@pytest.mark.sqlite_file
def test_a_restored_backup_is_refused_until_a_senior_resets_the_witness(
    secret_service: Any, tmp_path: Path
) -> None:
    ledger = start_ledger(tmp_path / "home", dict(secret_service.env), secret_service.backend)
    ledger.set(SERVICE, NAME, OLD_VALUE)
    live = ledger.home / "ledger.sqlite"
    backup = tmp_path / "backup.sqlite"
    _sqlite_backup(live, backup)
    ledger.set(SERVICE, NAME, NEW_VALUE)
    _grant(ledger, "bob", "senior-engineer")
    _ok(ledger.run("auth", "revoke", "--operator", "bob"))  # changes the settings too
    _ok(ledger.run("get", *ADDRESS))
    _sqlite_backup(backup, live)  # the restore, through SQLite as writers may be active

    read = ledger.run("get", *ADDRESS)
    assert read.returncode == 6 and "reset-witness" in read.stderr, read.stderr
    _ok(ledger.run("audit", "checkpoint", "--reset-witness"))
    assert _ok(ledger.run("get", *ADDRESS)).stdout.strip() == OLD_VALUE
    assert [a["fault"] for a in _alarms(ledger)][-1] == "seen-heads-reset"


def test_a_garbled_witness_is_a_warning_and_the_command_works(ledger: Ledger) -> None:
    ledger.set(SERVICE, NAME, OLD_VALUE)
    (witness,) = ledger.home.glob("seen-heads*.sqlite")
    witness.write_bytes(b"\x00garbage, not a database\xff" * 40)
    read = ledger.run("get", *ADDRESS)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == OLD_VALUE
    assert "Traceback" not in read.stderr
    assert read.stderr.count("unreadable") == 1, read.stderr
    again = _ok(ledger.run("get", *ADDRESS))  # started anew: no second warning
    assert "unreadable" not in again.stderr
    # And it protects again: the newest version's deletion is noticed.
    ledger.set(SERVICE, NAME, NEW_VALUE)
    store = Store(ledger)
    position = store.position(".VersionAdded")
    store.delete(position)
    _refused(ledger.run("get", *ADDRESS), position)


def test_an_edited_witness_row_is_not_an_internal_error(ledger: Ledger) -> None:
    ledger.set(SERVICE, NAME, OLD_VALUE)
    (witness,) = ledger.home.glob("seen-heads*.sqlite")
    with sqlite3.connect(witness) as db:
        db.execute("UPDATE seen_heads SET version = 'many', link = 42, label = x'ff00'")
    read = ledger.run("get", *ADDRESS)
    assert read.returncode == 0 and read.stdout.strip() == OLD_VALUE, read.stderr
    ledger.set(SERVICE, NAME, NEW_VALUE)
    with sqlite3.connect(witness) as db:
        types = db.execute("SELECT DISTINCT typeof(version), typeof(link) FROM seen_heads")
        assert set(types.fetchall()) == {("integer", "blob")}
