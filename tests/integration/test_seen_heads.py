"""The seen-heads file (ledger/integrity/seen_heads.py) under processes of one host writing at
once, and
its rule that a record is never lowered. The attacks it stops are in
tests/e2e/test_seen_heads.py."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from uuid import UUID, uuid4

from ledger.integrity.seen_heads import Head, SeenHeads

AGGREGATE = UUID(int=7)


class _NoStore:
    def select_linked(self, originator_id: UUID, gt: int | None, lte: int | None) -> list[object]:
        return []


def _advance(path: str, versions: list[int], problems: multiprocessing.Queue[str]) -> None:
    seen = SeenHeads(Path(path), _NoStore(), problems.put)  # type: ignore[arg-type]
    for version in versions:
        seen._write(AGGREGATE, Head(version, version * 10, b"l" * 32, "secret a/b/c"))
        seen._write(uuid4(), Head(version, version, b"x", "operator x"))
    seen.close()


def test_processes_advancing_at_once_lose_nothing_and_never_lower(tmp_path: Path) -> None:
    path = str(tmp_path / "seen-heads.sqlite")
    SeenHeads(Path(path), _NoStore(), print)._connection()  # type: ignore[arg-type]
    problems: multiprocessing.Queue[str] = multiprocessing.Queue()
    # One process writes the even versions rising, the other the odd ones falling.
    workers = [
        multiprocessing.Process(target=_advance, args=(path, list(range(0, 400, 2)), problems)),
        multiprocessing.Process(target=_advance, args=(path, list(range(399, 0, -2)), problems)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert problems.empty()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (count,) = db.execute("SELECT count(*) FROM seen_heads").fetchone()
        row = db.execute(
            "SELECT version, position FROM seen_heads WHERE aggregate_id = ?", (AGGREGATE.hex,)
        ).fetchone()
    assert row == (399, 3990)
    assert count == 1 + 400  # every other aggregate written once, none lost


def test_a_garbled_file_is_one_warning_and_started_anew(tmp_path: Path) -> None:
    path = tmp_path / "seen-heads.sqlite"
    path.write_bytes(b"not a database " * 100)
    warnings: list[str] = []
    seen = SeenHeads(path, _NoStore(), warnings.append)  # type: ignore[arg-type]
    assert seen._read(AGGREGATE) is None
    seen._write(AGGREGATE, Head(3, 30, b"l", "secret a/b/c"))
    assert seen._read(AGGREGATE) == Head(3, 30, b"l", "secret a/b/c")
    assert len(warnings) == 1 and "unreadable" in warnings[0]
    assert path.stat().st_mode & 0o077 == 0
