"""Two senior-engineers who remove each other at the same time: one wins, the other is refused
as the last senior-engineer, on the SQLite file and on PostgreSQL.

The race is made certain rather than hoped for: the store's write lock is held while both
commands start, so both check "is there another senior-engineer?" before either can write;
then the lock goes and both try to commit. Each changes a different Operator aggregate, so
only the shared LedgerSettings version the fix adds to both writes can make them conflict.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.clikit import Ledger

SENIOR = "senior-engineer"


@contextlib.contextmanager
def _write_lock(ledger: Ledger) -> Iterator[None]:
    """Hold the event store's write lock; readers go on, writers wait."""
    if ledger.database_url is None:
        db = sqlite3.connect(ledger.home / "ledger.sqlite", isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
            db.execute("ROLLBACK")
        finally:
            db.close()
        return
    import psycopg

    with psycopg.connect(ledger.database_url) as conn:
        # The lock every writer of the store takes before it inserts (docs/postgres.md).
        conn.execute("LOCK TABLE public.secretsledger_events IN EXCLUSIVE MODE")
        yield
        conn.rollback()


def _waiting_writers(ledger: Ledger) -> int | None:
    """How many sessions wait on a lock (PostgreSQL); None where it cannot be seen."""
    if ledger.database_url is None:
        return None
    import psycopg

    with psycopg.connect(ledger.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def _start(ledger: Ledger, token: str, *args: str) -> subprocess.Popen[str]:
    env = {**ledger.env, "SECRETS_LEDGER_TOKEN": token, "SECRETS_LEDGER_LOCK_TIMEOUT": "60"}
    return subprocess.Popen(
        [ledger.python, "-m", "commands", *args],
        env=env,
        cwd=ledger.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _seniors(ledger: Ledger) -> list[str]:
    """Who holds senior-engineer now, folded straight from the stored Operator events."""
    roles: dict[str, str | None] = {}
    names: dict[str, str] = {}
    for event in ledger.events("ledger.operator:"):
        kind = event.topic.rsplit(".", 1)[-1]
        if kind == "Registered":
            names[event.originator_id] = event.state["name"]
            roles[event.originator_id] = event.state["role"]
        elif kind == "RoleGranted":
            roles[event.originator_id] = event.state["role"]
        elif kind == "Revoked":
            roles[event.originator_id] = None
    return sorted(names[o] for o, role in roles.items() if role == SENIOR)


REVOKE = ("auth", "revoke", "--operator")


def _demote(name: str) -> list[str]:
    return ["auth", "grant", "--operator", name, "--role", "engineer"]


# (alice's command, bob's command, exit codes expected, what the refused one says)
RACES = {
    # The winner removed the loser, who on its retry is no longer allowed to (exit 4).
    "revoke-each-other": (
        [*REVOKE, "bob"],
        [*REVOKE, "alice"],
        [0, 4],
        "lost senior-engineer",
    ),
    "revoke-and-demote": (
        [*REVOKE, "bob"],
        _demote("alice"),
        [0, 4],
        "lost senior-engineer",
    ),
    # Each steps down: the loser is still allowed, but now the last senior-engineer (exit 5).
    "both-step-down": (_demote("alice"), _demote("bob"), [0, 5], "last senior-engineer"),
    "both-revoke-themselves": ([*REVOKE, "alice"], [*REVOKE, "bob"], [0, 5], "last senior"),
}


@pytest.mark.parametrize("race", list(RACES))
def test_two_seniors_removing_at_once_leave_one(ledger: Ledger, race: str) -> None:
    alices, bobs, expected, refusal = RACES[race]
    granted = ledger.run("auth", "grant", "--operator", "bob", "--role", SENIOR)
    assert granted.returncode == 0, granted.stderr
    bob_token = granted.stdout.strip()
    assert _seniors(ledger) == ["alice", "bob"]
    with _write_lock(ledger):
        procs = [_start(ledger, ledger.token, *alices), _start(ledger, bob_token, *bobs)]
        # Both must have made their check and be waiting to write before the lock goes.
        deadline = time.monotonic() + 30
        if ledger.database_url is not None:
            while _waiting_writers(ledger) != 2:
                assert time.monotonic() < deadline, "the two writers never reached the lock"
                assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
                time.sleep(0.05)
        else:
            time.sleep(6)  # start-up and the check take about a second each on this machine
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in results) == expected, results
    refused = next(err for code, _, err in results if code != 0)
    assert refusal in refused, results
    assert "Traceback" not in "".join(out + err for _, out, err in results)
    left = _seniors(ledger)
    assert len(left) == 1 and left[0] in ("alice", "bob"), left


def test_many_removals_at_once_never_leave_no_senior(ledger: Ledger) -> None:
    """Three seniors, each removing the next one, all started together: at least one stays."""
    tokens = {"alice": ledger.token}
    for name in ("bob", "carol"):
        granted = ledger.run("auth", "grant", "--operator", name, "--role", SENIOR)
        assert granted.returncode == 0, granted.stderr
        tokens[name] = granted.stdout.strip()
    moves = {"alice": "bob", "bob": "carol", "carol": "alice"}
    with _write_lock(ledger):
        procs = [
            _start(ledger, tokens[actor], "auth", "revoke", "--operator", target)
            for actor, target in moves.items()
        ]
        time.sleep(6)
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    # Each refusal is a lost role (4), a target already gone (3) or the last senior (5).
    assert all(code in (0, 3, 4, 5) for code, _, _ in results), results
    assert sorted(code for code, _, _ in results).count(0) >= 1, results
    assert "Traceback" not in "".join(out + err for _, out, err in results)
    assert len(_seniors(ledger)) >= 1
