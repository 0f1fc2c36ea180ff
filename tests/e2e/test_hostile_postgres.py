"""Storage is hostile, on PostgreSQL: what the writer role (or anyone who can write the
ledger's tables) can leave there that SQLite's file cannot hold the same way: a NULL `state`
(both `state` columns are nullable), a chain link past the newest event, a table lock held
without end, an event's version set to one no writer stores. Each is damage (exit 6 naming
the row), an ignored cache row, or a clear error; never an internal error, a traceback or a
wait without end. The rows are written straight into the tables, then the real CLI runs.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import pytest

from ledger.operator import operator_id
from tests.clikit import Ledger
from tests.conftest import CliRunner

POSTGRES = pytest.mark.parametrize("ledger", ["postgres"], indirect=True)
ADDRESS = ("--service", "svc", "--name", "key.a")


def _sql(ledger: Ledger, statement: str, params: tuple[object, ...] = ()) -> list[Any]:
    import psycopg

    assert ledger.database_url is not None
    with psycopg.connect(ledger.database_url) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _position(ledger: Ledger, topic_part: str) -> int:
    ((position,),) = _sql(
        ledger,
        "SELECT max(notification_id) FROM public.secretsledger_events WHERE topic LIKE %s",
        (f"%{topic_part}%",),
    )
    return int(position)


def _not_internal(result: subprocess.CompletedProcess[str]) -> None:
    err = result.stderr
    assert result.returncode != 1, (result.returncode, err)
    assert "internal error" not in err and "Traceback" not in err, (result.returncode, err)


def _damage_at(result: subprocess.CompletedProcess[str], position: int) -> None:
    assert result.returncode == 6, (result.returncode, result.stderr)
    assert f"position {position}" in result.stderr, result.stderr


def _history(ledger: Ledger) -> None:
    ledger.set("svc", "key.a", "sk-live-value-0001-abcdefghij")
    ledger.set("svc", "key.a", "sk-live-value-0002-abcdefghij")
    assert ledger.run("get", *ADDRESS).returncode == 0
    assert ledger.run("list").returncode == 0


# -- F1 / F10: a snapshot row that does not authenticate is a cache row, not history ---------


@POSTGRES
@pytest.mark.parametrize("state", [None, b"garbage"], ids=["null", "garbage"])
def test_a_snapshot_that_does_not_authenticate_blocks_nothing(
    ledger: Ledger, state: bytes | None
) -> None:
    """The operator's snapshot, forged with a NULL or garbage state: every command works
    (folding the events); verify and doctor report a bad snapshot (exit 6)
    and never call the history damaged nor name a position 0; doctor --repair (as the table's
    owner) removes it."""
    _history(ledger)
    _sql(
        ledger,
        "INSERT INTO public.secretsledger_snapshots VALUES (%s, 99, %s, %s)",
        (operator_id("alice"), "ledger.operator:Operator", state),
    )
    for args in (("list",), ("get", *ADDRESS), ("auth", "status"), ("audit", "log")):
        result = ledger.run(*args)
        assert result.returncode == 0, (args, result.returncode, result.stderr)
    verified = ledger.run("audit", "verify")
    _not_internal(verified)
    assert verified.returncode == 6, verified.stderr
    assert "position 0" not in verified.stdout + verified.stderr
    assert "history is not intact" not in verified.stderr, verified.stderr
    assert "snapshot" in verified.stderr and "version 99" in verified.stderr, verified.stderr
    doctor = ledger.run("doctor")
    _not_internal(doctor)
    assert doctor.returncode == 6, doctor.stdout + doctor.stderr
    repaired = ledger.run("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert ledger.run("audit", "verify").returncode == 0


@POSTGRES
def test_a_snapshot_the_writer_role_cannot_delete_gets_a_clear_instruction(
    ledger: Ledger,
) -> None:
    """With the grants docs/postgres.md gives the writer role (no DELETE on snapshots),
    doctor --repair cannot remove a bad snapshot: it says what the table's owner must run,
    exit 6, not an internal error."""
    _history(ledger)
    _sql(
        ledger,
        "INSERT INTO public.secretsledger_snapshots VALUES (%s, 99, %s, %s)",
        (operator_id("alice"), "ledger.operator:Operator", b"garbage"),
    )
    url = ledger.database_url
    assert url is not None
    writer = f"w{int(time.time() * 1000) % 10**9}"
    dbname = url.rsplit("/", 1)[1]
    _sql(
        ledger,
        f"CREATE ROLE {writer} LOGIN PASSWORD 'writerpass'; "
        f"GRANT CONNECT ON DATABASE {dbname} TO {writer}; "
        f"GRANT USAGE ON SCHEMA public TO {writer}; "
        "GRANT SELECT, INSERT ON secretsledger_events, secretsledger_event_chain, "
        f"secretsledger_snapshots TO {writer}; "
        f"GRANT UPDATE ON secretsledger_events TO {writer}; "
        f"GRANT USAGE ON SEQUENCE secretsledger_events_notification_id_seq TO {writer};",
    )
    rest = url.split("@", 1)[1]
    as_writer = {"SECRETS_LEDGER_DATABASE_URL": f"postgresql://{writer}:writerpass@{rest}"}
    try:
        repaired = ledger.run("doctor", "--repair", env=as_writer)
        _not_internal(repaired)
        assert repaired.returncode == 6, repaired.stdout + repaired.stderr
        said = repaired.stdout + repaired.stderr
        assert "DELETE FROM" in said and "secretsledger_snapshots" in said, said
    finally:
        _sql(ledger, f"DROP OWNED BY {writer}; DROP ROLE {writer}")


# -- F2: an event row with a NULL state ------------------------------------------------------


@POSTGRES
def test_an_event_with_a_null_state_is_unreadable_and_damage_in_verify(ledger: Ledger) -> None:
    _history(ledger)
    position = _position(ledger, "ReadReceipt")
    assert ledger.run("get", *ADDRESS).returncode == 0  # a receipt after it, too
    _sql(
        ledger,
        "UPDATE public.secretsledger_events SET state = NULL WHERE notification_id = %s",
        (position,),
    )
    ledger.views_file.unlink()  # the catch-up reads the row again
    for args in (("list",), ("audit", "log"), ("audit", "who-can", *ADDRESS), ("dashboard",)):
        result = ledger.run(*args)
        _not_internal(result)
    # As on SQLite (tests/e2e/test_stored_row_types.py): the views are a cache of what
    # decodes, showing the row as an unreadable event at its position; verify names it.
    shown = ledger.json("audit", "log", "--code", "HBSE-013")["events"]
    assert [e for e in shown if e["position"] == position and e["action"] == "unreadable"], shown
    _damage_at(ledger.run("audit", "verify"), position)


# -- F7: a forged link past the newest event -------------------------------------------------


@POSTGRES
def test_a_link_beyond_the_newest_event_is_named_where_it_is(ledger: Ledger) -> None:
    _history(ledger)
    ((head,),) = _sql(ledger, "SELECT max(notification_id) FROM public.secretsledger_events")
    forged = int(head) + 6
    _sql(
        ledger,
        "INSERT INTO public.secretsledger_event_chain VALUES (%s, %s)",
        (forged, bytes.fromhex("ab" * 32)),
    )
    for args in (("set", *ADDRESS, "--value-stdin"), ("get", *ADDRESS)):
        result = ledger.run(*args, input="sk-live-value-0003-abcdefghij")
        _not_internal(result)
        _damage_at(result, forged)
        assert f"a link at position {forged} has no event" in result.stderr, result.stderr
        assert "were deleted" not in result.stderr, result.stderr
    verified = ledger.run("audit", "verify")
    _damage_at(verified, forged)


# -- F8: a table lock held by another session ------------------------------------------------


@POSTGRES
def test_a_table_locked_by_another_session_is_a_clear_error_not_a_wait(ledger: Ledger) -> None:
    import psycopg

    _history(ledger)
    assert ledger.database_url is not None
    locked = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with psycopg.connect(ledger.database_url) as conn:  # type: ignore[arg-type]
            # The holder's own session settings: no server timeout ends its transaction.
            conn.execute("SET idle_in_transaction_session_timeout = 0")
            conn.execute("LOCK TABLE public.secretsledger_events IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(90)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        got = ledger.run("get", *ADDRESS)
        took = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert got.returncode == 1, (got.returncode, got.stderr)
    assert "internal error" not in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert "locked by another session" in got.stderr, got.stderr
    assert took < 45, took
    assert ledger.run("get", *ADDRESS).returncode == 0


# -- F9: an event's version set to one no writer stores --------------------------------------


@POSTGRES
@pytest.mark.parametrize("version", [-1, 2**63 - 1], ids=["negative", "max"])
def test_an_edited_version_is_blamed_on_its_own_row(ledger: Ledger, version: int) -> None:
    _history(ledger)
    ledger.set("svc", "key.a", "sk-live-value-0003-abcdefghij")
    edited = _position(ledger, "ledger.secret:Secret.VersionAdded") - 2
    ((topic,),) = _sql(
        ledger,
        "SELECT topic FROM public.secretsledger_events WHERE notification_id = %s",
        (edited,),
    )
    assert topic.startswith("ledger.secret:"), topic
    ledger.run("audit", "checkpoint")  # events after the edited one, a later position
    _sql(
        ledger,
        "UPDATE public.secretsledger_events SET originator_version = %s WHERE notification_id = %s",
        (version, edited),
    )
    for args in (("get", *ADDRESS), ("versions", *ADDRESS)):
        result = ledger.run(*args)
        _not_internal(result)
        _damage_at(result, edited)
    _damage_at(ledger.run("audit", "verify"), edited)
    alarms = ledger.json("audit", "log", "--code", "HBSE-013")["events"]
    assert alarms and all(str(edited) in str(a) for a in alarms), alarms


# -- F11: a checkpoint is never signed over a log that does not verify -----------------------


@POSTGRES
def test_a_checkpoint_is_refused_over_damage_before_the_previous_one(ledger: Ledger) -> None:
    _history(ledger)
    edited = _position(ledger, "ledger.secret:Secret.VersionAdded")
    first = ledger.run("audit", "checkpoint")
    assert first.returncode == 0, first.stderr
    ledger.set("svc", "key.b", "sk-live-value-0009-abcdefghij")
    _sql(
        ledger,
        "UPDATE public.secretsledger_events SET state = state || '\\x20'::bytea "
        "WHERE notification_id = %s",
        (edited,),
    )
    second = ledger.run("audit", "checkpoint")
    _not_internal(second)
    _damage_at(second, edited)
    assert "refusing to sign" in second.stderr, second.stderr


# -- F12: a malformed database URL is a usage error ------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@127.0.0.1:notaport/db",
        "postgresql://u@[::1/db",
        "postgresql://u@127.0.0.1:5432/db?schema=a-b",
        "postgresql://u@127.0.0.1:5432/",
        "mysql://u@127.0.0.1/db",
    ],
)
def test_a_malformed_database_url_is_a_usage_error(cli: CliRunner, url: str) -> None:
    for args in (("list", "--database-url", url), ("init", "--database-url", url)):
        result = cli(*args, env={"SECRETS_LEDGER_DATABASE_URL": ""})
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr
