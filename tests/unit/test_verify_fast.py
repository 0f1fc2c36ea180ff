"""`audit verify`'s fast pass (events joined with their links, ledger/store/chain.py `verify_fast`)
against the careful walk alone, on SQLite and PostgreSQL: for an untouched ledger and for each
kind of tampering the two give the same report (fault kind, position, detail, counts, head).
Pages are made tiny so that faults fall inside pages, on their edges and past the last one."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.verify_fast_cases import CASES, Sql, _both, _build, _check, _checkpoints, _flip, _last

SQLITE_ONLY: list[tuple[str, Callable[[Sql, dict[str, str]], None], str | None]] = [
    # Values a damaged SQLite file can hold where the library wrote other types: the fast pass
    # hands these rows to the careful walk, which reads them as it always did.
    (
        "state stored as text (still the same bytes)",
        lambda sql, t: sql(
            "UPDATE stored_events SET state = CAST(state AS TEXT) WHERE rowid = 10", ()
        ),
        None,
    ),
    (
        "originator id stored as a number",
        lambda sql, t: sql("UPDATE stored_events SET originator_id = 12345 WHERE rowid = 4", ()),
        "edited",
    ),
    (
        "link stored as text",
        lambda sql, t: sql("UPDATE event_chain SET link = 'abc' WHERE notification_id = 6", ()),
        "edited",
    ),
]


# -- SQLite ---------------------------------------------------------------------------------


def _sqlite_sql(db: sqlite3.Connection) -> Sql:
    def sql(statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return db.execute(statement.replace("%s", "?"), params).fetchall()

    return sql


SQLITE_TABLES = {"E": "stored_events", "C": "event_chain", "id": "rowid"}


@pytest.mark.usefixtures("tiny_pages")
@pytest.mark.parametrize(
    ("name", "tamper", "kind"), CASES + SQLITE_ONLY, ids=[c[0] for c in CASES + SQLITE_ONLY]
)
def test_sqlite_fast_pass_and_careful_walk_agree(
    tmp_path: Path,
    name: str,
    tamper: Callable[[Sql, dict[str, str]], None],
    kind: str | None,
) -> None:
    ledger, _ = _build(tmp_path)
    try:
        assert ledger.verify_history().ok
        db = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
        try:
            db.execute("BEGIN")
            assert _last(_sqlite_sql(db), SQLITE_TABLES) > 30
            tamper(_sqlite_sql(db), SQLITE_TABLES)
            db.execute("COMMIT")
        finally:
            db.close()
        _check(*_both(ledger), kind)
    finally:
        ledger.close()


def test_the_careful_walk_starts_where_the_fast_pass_stopped(
    tmp_path: Path, tiny_pages: None
) -> None:
    ledger, _ = _build(tmp_path)
    try:
        recorder = ledger.recorder
        starts: list[int] = []
        original = recorder.iter_rows

        def spy(start: int = 0) -> Iterator[Any]:
            starts.append(start)
            return original(start)

        recorder.iter_rows = spy
        assert ledger.verify_history().ok
        assert starts == []  # an untouched ledger never needs the walk
        db = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
        try:
            sql = _sqlite_sql(db)
            target = min(set(range(22, 30)) - set(_checkpoints(sql, SQLITE_TABLES)))
            _flip(sql, SQLITE_TABLES, target)
        finally:
            db.close()
        report = ledger.verify_history()
        assert report.fault is not None
        assert (report.fault.position, report.fault.kind) == (target, "edited")
        assert starts == [target - 1] and report.events_valid == target - 1
    finally:
        ledger.close()
