"""`audit verify`'s fast pass (events joined with their links, ledger/store/chain.py `verify_fast`)
against the careful walk alone, on SQLite and PostgreSQL: for an untouched ledger and for each
kind of tampering the two give the same report (fault kind, position, detail, counts, head).
Pages are made tiny so that faults fall inside pages, on their edges and past the last one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)
from tests.verify_fast_cases import CASES, Sql, _both, _build, _check, _last

# -- PostgreSQL -----------------------------------------------------------------------------

PG_TABLES = {
    "E": "secretsledger_events",
    "C": "secretsledger_event_chain",
    "id": "notification_id",
}


@pytest.mark.usefixtures("tiny_pages")
@pytest.mark.parametrize(("name", "tamper", "kind"), CASES, ids=[c[0] for c in CASES])
def test_postgres_fast_pass_and_careful_walk_agree(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
    name: str,
    tamper: Callable[[Sql, dict[str, str]], None],
    kind: str | None,
) -> None:
    ledger, _ = _build(tmp_path / "home", database_url=pg_url)
    try:
        assert ledger.verify_history().ok
        with psycopg.connect(pg_url) as conn:

            def sql(statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
                cur = conn.execute(statement, params)  # type: ignore[call-overload]
                return list(cur.fetchall()) if cur.description else []

            assert _last(sql, PG_TABLES) > 30
            tamper(sql, PG_TABLES)
        _check(*_both(ledger), kind)
    finally:
        ledger.close()
