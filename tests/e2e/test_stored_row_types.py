"""Storage is hostile: a stored row whose columns have the wrong type (a text version, a BLOB
topic, a non-UUID originator id, a text chain link) is damage, reported as an integrity failure
(exit 6) naming its position, never an internal error (exit 1) or a traceback.

SQLite lets any column hold any type, so these are what a writer of ledger.sqlite can leave;
PostgreSQL's typed columns refuse most of them (the cases it accepts run there too).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from ledger.operator import operator_id
from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, rechain, start_ledger

ADDRESS = ("--service", "nexus", "--name", "mcp.bun.apiKey")
VALUE = "sk-live-value-0001-abcdefghij"
MAGIC = b"slsnap1:"


@pytest.fixture
def file_vault_ledger(tmp_path: Path) -> Ledger:
    """One ledger whose whole state is its home (SQLite, the encrypted file vault), so that a
    copy of the directory is an independent ledger."""
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    home = tmp_path / "ledger-home"
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    env.pop("SECRETS_LEDGER_DATABASE_URL", None)
    env.update({"SECRETS_LEDGER_VAULT": "file", "SECRETS_LEDGER_PASSPHRASE": FILE_VAULT_PASSPHRASE})
    return start_ledger(
        home,
        env,
        lambda: EncryptedFileKeyring(
            path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE
        ),
    )


def _db(ledger: Ledger) -> sqlite3.Connection:
    return sqlite3.connect(ledger.home / "ledger.sqlite")


def _not_internal(result: subprocess.CompletedProcess[str]) -> None:
    err = result.stderr
    assert result.returncode != 1, (result.returncode, err)
    assert "internal error" not in err and "Traceback" not in err, (result.returncode, err)


def _damage(result: subprocess.CompletedProcess[str], position: int) -> None:
    assert result.returncode == 6, (result.returncode, result.stderr)
    assert str(position) in result.stderr, result.stderr


def _views_show_it_and_verify_names_it(ledger: Ledger, position: int) -> None:
    """The views are a cache of what decodes: a row that does not is shown in the audit log as
    an unreadable event (HBSE-013) at its position; `audit verify` reports it as damage."""
    for args in (("list",), ("projections", "rebuild")):
        result = ledger.run(*args)
        _not_internal(result)
        assert result.returncode == 0, (args, result.stderr)
    shown = ledger.json("audit", "log", "--code", "HBSE-013")["events"]
    assert [e for e in shown if e["position"] == position and e["action"] == "unreadable"], shown
    _damage(ledger.run("audit", "verify"), position)


@pytest.mark.sqlite_file
def test_a_text_version_in_an_event_row_is_reported_as_damage(ledger: Ledger) -> None:
    with _db(ledger) as db:
        (position,) = db.execute("SELECT max(rowid) FROM stored_events").fetchone()
        db.execute("UPDATE stored_events SET originator_version = 'x' WHERE rowid = ?", (position,))
    _damage(ledger.run("audit", "verify"), position)


@pytest.mark.sqlite_file
def test_a_read_receipt_with_a_non_uuid_id_is_damage(ledger: Ledger) -> None:
    with _db(ledger) as db:
        db.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "SELECT 'zzz', 1, 'ledger.records:ReadReceipt.SecretRead', state "
            "FROM stored_events WHERE rowid = 1"
        )
        (position,) = db.execute("SELECT max(rowid) FROM stored_events").fetchone()
    rechain(ledger.home)  # appended after the newest checkpoint: links anyone can compute
    _views_show_it_and_verify_names_it(ledger, position)


@pytest.mark.sqlite_file
def test_a_blob_topic_is_damage_in_a_rebuild(ledger: Ledger) -> None:
    ledger.set(*ADDRESS[1::2], VALUE)
    assert ledger.run("get", *ADDRESS).returncode == 0  # the newest row: a read receipt
    with _db(ledger) as db:
        (position,) = db.execute("SELECT max(rowid) FROM stored_events").fetchone()
        db.execute(
            "UPDATE stored_events SET topic = CAST(topic AS BLOB) WHERE rowid = ?", (position,)
        )
    rechain(ledger.home)
    _views_show_it_and_verify_names_it(ledger, position)


@pytest.mark.sqlite_file
@pytest.mark.parametrize("link", ["'abc'", "1234"], ids=["text", "number"])
def test_a_newest_chain_link_of_another_type_stops_writes(ledger: Ledger, link: str) -> None:
    """The newest link is a secret's event, which no authority check reads: the write itself
    reads the head (text made `bytes()` fail; a number made 1234 zero bytes, linked onto)."""
    ledger.set(*ADDRESS[1::2], VALUE)
    with _db(ledger) as db:
        (position,) = db.execute("SELECT max(notification_id) FROM event_chain").fetchone()
        db.execute(
            f"UPDATE event_chain SET link = {link} WHERE notification_id = ?",  # noqa: S608
            (position,),
        )
    other = ("--service", "nexus", "--name", "other.key")
    wrote = ledger.run("set", *other, "--value-stdin", input=VALUE)
    _not_internal(wrote)
    assert wrote.returncode == 6 and f"position {position}" in wrote.stderr, wrote.stderr
    _damage(ledger.run("audit", "verify"), position)


@pytest.mark.sqlite_file
def test_a_bad_shape_or_unknown_topic_under_a_recomputed_chain_is_damage_in_verify(
    ledger: Ledger,
) -> None:
    """The chain needs no secret: past the newest checkpoint anyone can recompute it over
    bytes that are no event. `audit verify` decodes each event as every load does."""
    ledger.set(*ADDRESS[1::2], VALUE)
    with _db(ledger) as db:
        (position, state) = db.execute(
            "SELECT rowid, state FROM stored_events "
            "WHERE topic = 'ledger.secret:Secret.VersionAdded' ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        shaped = json.loads(state)
        shaped["version"] = "1"  # a text where the class declares an int
        db.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            (json.dumps(shaped).encode(), position),
        )
    rechain(ledger.home)
    result = ledger.run("audit", "verify", "--output", "json")
    assert result.returncode == 6, result.stderr
    fault = json.loads(result.stdout)["fault"]
    assert fault["position"] == position and fault["kind"] == "undecodable", fault
    with _db(ledger) as db:
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state, position))
        db.execute(
            "UPDATE stored_events SET topic = 'ledger.secret:Secret.Forged' WHERE rowid = ?",
            (position,),
        )
    rechain(ledger.home)
    result = ledger.run("audit", "verify", "--output", "json")
    assert result.returncode == 6, result.stderr
    fault = json.loads(result.stdout)["fault"]
    assert fault["position"] == position and fault["kind"] == "undecodable", fault


# -- every column, every wrong type ------------------------------------------------------------

WRONG = {
    "text": "x",
    "blob": b"\x00\xff",
    "null": None,
    "huge": 2**63 - 1,
    "negative": -1,
}
SNAPSHOT = (operator_id("alice").hex, 2, "ledger.operator:Operator", MAGIC + bytes(32) + b"{}")


def _cases() -> list[tuple[str, str, str]]:
    """(file, statement, wrong value name): each column a command reads, one wrong value."""
    statements = [
        *(
            f"UPDATE stored_events SET {column} = ? WHERE rowid = {where}"  # noqa: S608
            for column in ("originator_id", "originator_version", "topic", "state")
            for where in ("1", "(SELECT max(rowid) FROM stored_events)")
        ),
        "UPDATE event_chain SET link = ? "
        "WHERE notification_id = (SELECT max(notification_id) FROM event_chain)",
        *(
            f"INSERT INTO stored_snapshots VALUES ({', '.join(marks)})"  # noqa: S608
            for marks in (
                ["?", ":v", ":t", ":s"],
                [":i", "?", ":t", ":s"],
                [":i", ":v", "?", ":s"],
                [":i", ":v", ":t", "?"],
            )
        ),
    ]
    views = [
        "UPDATE tracking SET position = ?",
        "UPDATE secrets_view SET current_version = ?",
        "UPDATE operators_view SET role = ?",
    ]
    return [("ledger.sqlite", s, w) for s in statements for w in WRONG] + [
        ("views.sqlite", s, w) for s in views for w in WRONG
    ]


def _write(home: Path, name: str, statement: str, wrong: str) -> bool:
    value = WRONG[wrong]
    named = dict(zip("ivts", SNAPSHOT, strict=True))
    sql = statement
    for key in "ivts":
        sql = sql.replace(f":{key}", "?")
    params: list[object] = []
    if statement.startswith("INSERT"):
        marks = statement[statement.index("(") + 1 : statement.index(")")].split(", ")
        params = [value if m == "?" else named[m[1]] for m in marks]
    else:
        params = [value]
    try:
        with sqlite3.connect(home / name) as db:
            db.execute(sql, params)
    except sqlite3.IntegrityError:
        return False  # the schema refuses it (NOT NULL, a key): nothing to read back
    return True


def test_no_wrong_type_in_any_stored_column_is_an_internal_error(
    file_vault_ledger: Ledger, tmp_path: Path
) -> None:
    """Each column that a command reads, written with each wrong type, in a copy of one
    ledger: `list` and `audit verify` never exit 1 or print a traceback, nor does a write
    where the damage is in what a write reads (the chain head, the settings); damage in the
    event store (events, links, snapshots) is exit 6 for verify. (The audit log reads the
    views as `list` does; the tests above run it on the cases that once failed. Each CLI run
    is a process start: 2-3 minutes on two busy cores.)"""
    ledger = file_vault_ledger
    ledger.set(*ADDRESS[1::2], VALUE)
    assert ledger.run("list").returncode == 0  # views caught up, to be damaged too
    write = ("set", *ADDRESS, "--value-stdin")
    cases: list[tuple[str, Path]] = []
    for n, (name, statement, wrong) in enumerate(_cases()):
        home = tmp_path / f"case-{n}"
        shutil.copytree(ledger.home, home)
        if _write(home, name, statement, wrong):
            cases.append((f"{name}: {statement} <- {wrong}", home))

    def run(case: tuple[str, Path]) -> list[str]:
        label, home = case
        problems = []
        commands: list[tuple[str, ...]] = [("list",), ("audit", "verify")]
        if "event_chain" in label or "rowid = 1" in label:
            commands.append(write)
        for args in commands:
            result = ledger.run(*args, input=VALUE + "-2", env={"SECRETS_LEDGER_HOME": str(home)})
            err = result.stderr.strip()[-200:]
            if result.returncode == 1 or "internal error" in err or "Traceback" in err:
                problems.append(f"{label}: {args[:2]} -> {result.returncode}: {err}")
            if (
                args == ("audit", "verify")
                and label.startswith("ledger.sqlite")
                and result.returncode != 6
            ):
                problems.append(f"{label}: verify -> {result.returncode}: {err}")
        return problems

    with ThreadPoolExecutor(max_workers=2) as pool:
        found = [p for problems in pool.map(run, cases) for p in problems]
    assert not found, "\n".join(found)


# -- both stores: what a database writer can do on PostgreSQL too -----------------------------


def _sql(ledger: Ledger, sqlite: str, postgres: str, params: tuple[object, ...] = ()) -> list[Any]:
    """One statement on this ledger's store, as its writer could run it."""
    if ledger.database_url is None:
        with _db(ledger) as db:
            return db.execute(sqlite, params).fetchall()
    import psycopg

    with psycopg.connect(ledger.database_url) as conn:
        cur = conn.execute(postgres, params)
        return cur.fetchall() if cur.description else []


def _append_linked(ledger: Ledger, oid: UUID, topic: str, state: bytes) -> int:
    """An event appended with the link anyone can compute (the chain needs no secret)."""
    from ledger.store.chain import link

    _sql(
        ledger,
        "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
        "VALUES (?, 1, ?, ?)",
        "INSERT INTO public.secretsledger_events "
        "(originator_id, originator_version, topic, state) VALUES (%s, 1, %s, %s)",
        (oid.hex if ledger.database_url is None else oid, topic, state),
    )
    ((position,),) = _sql(
        ledger,
        "SELECT max(rowid) FROM stored_events",
        "SELECT max(notification_id) FROM public.secretsledger_events",
    )
    ((previous,),) = _sql(
        ledger,
        "SELECT link FROM event_chain ORDER BY notification_id DESC LIMIT 1",
        "SELECT link FROM public.secretsledger_event_chain ORDER BY notification_id DESC LIMIT 1",
    )
    chained = link(bytes(previous), position, oid.hex, 1, topic, state)
    _sql(
        ledger,
        "INSERT INTO event_chain VALUES (?, ?)",
        "INSERT INTO public.secretsledger_event_chain VALUES (%s, %s)",
        (position, chained),
    )
    return int(position)


def test_an_unknown_topic_with_a_computed_link_is_undecodable_in_verify(ledger: Ledger) -> None:
    ledger.set(*ADDRESS[1::2], VALUE)
    state = json.dumps({"timestamp": {"_type_": "datetime_iso", "_data_": "x"}}).encode()
    position = _append_linked(ledger, uuid4(), "ledger.records:ReadReceipt.Forged", state)
    result = ledger.run("audit", "verify", "--output", "json")
    assert result.returncode == 6, result.stderr
    fault = json.loads(result.stdout)["fault"]
    assert fault["position"] == position and fault["kind"] == "undecodable", fault


def test_a_short_newest_chain_link_stops_every_write(ledger: Ledger) -> None:
    """The newest link is a secret's event, which no authority check reads: the write itself
    finds the head it would link to damaged, and appends nothing onto it."""
    ledger.set(*ADDRESS[1::2], VALUE)
    ((position,),) = _sql(
        ledger,
        "SELECT max(notification_id) FROM event_chain",
        "SELECT max(notification_id) FROM public.secretsledger_event_chain",
    )
    _sql(
        ledger,
        "UPDATE event_chain SET link = ? WHERE notification_id = ?",
        "UPDATE public.secretsledger_event_chain SET link = %s WHERE notification_id = %s",
        (b"abc", position),
    )
    other = ("--service", "nexus", "--name", "other.key")
    wrote = ledger.run("set", *other, "--value-stdin", input=VALUE)
    _not_internal(wrote)
    assert wrote.returncode == 6 and f"position {position}" in wrote.stderr, wrote.stderr
    assert len(ledger.events("ledger.secret:Secret.Registered")) == 1  # nothing written
    _damage(ledger.run("audit", "verify"), position)


@pytest.mark.parametrize(
    "stamp",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"],
    ids=["after-the-last-utc-day", "before-the-first-utc-day"],
)
def test_an_event_time_beyond_utc_is_unreadable_in_views_and_damage_in_verify(
    ledger: Ledger, stamp: str
) -> None:
    """An aware timestamp that fits the state's shape but overflows when put in UTC: exit 1,
    `internal error (OverflowError)`, for `list`, `audit log`, `dashboard`, `report
    compliance`, `projections rebuild`, `audit replay` and `who-can` before the fix."""
    ledger.set(*ADDRESS[1::2], VALUE)
    state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": stamp},
        "originator_topic": "ledger.records:ReadReceipt",
        "operator": "alice",
        "correlation_id": "0" * 32,
        "environment": "default",
        "service": "nexus",
        "name": "mcp.bun.apiKey",
        "version": 1,
    }
    raw = json.dumps(state, separators=(",", ":")).encode()
    position = _append_linked(ledger, uuid4(), "ledger.records:ReadReceipt.SecretRead", raw)
    for command in (("dashboard",), ("report", "compliance")):
        _not_internal(ledger.run(*command))
    _views_show_it_and_verify_names_it(ledger, position)
    # The past is answered without the row and the row named, as for any undecodable event.
    for command in (
        ("audit", "replay", "--position", str(position)),
        ("audit", "who-can", *ADDRESS),
    ):
        result = ledger.run(*command)
        _not_internal(result)
        _damage(result, position)
        assert "cannot be decoded" in result.stderr, result.stderr


@pytest.mark.sqlite_file
def test_an_unchained_event_time_beyond_utc_is_not_an_internal_error(ledger: Ledger) -> None:
    """The review's PoC: the same read receipt inserted with no chain link."""
    ledger.set(*ADDRESS[1::2], VALUE)
    state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "9999-12-31T23:59:59-23:59"},
        "originator_topic": "ledger.records:ReadReceipt",
        "operator": "alice",
        "correlation_id": "0" * 32,
        "environment": "default",
        "service": "nexus",
        "name": "mcp.bun.apiKey",
        "version": 1,
    }
    with _db(ledger) as db:
        db.execute(
            "INSERT INTO stored_events VALUES (?, 1, ?, ?)",
            (uuid4().hex, "ledger.records:ReadReceipt.SecretRead", json.dumps(state).encode()),
        )
    for command in (
        ("list",),
        ("audit", "log"),
        ("dashboard",),
        ("report", "compliance"),
        ("projections", "rebuild"),
    ):
        _not_internal(ledger.run(*command))
    verify = ledger.run("audit", "verify")
    _not_internal(verify)
    assert verify.returncode == 6, verify.stderr
