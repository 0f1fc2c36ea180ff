"""Materialised read models, caught up from the event log before every answer.

The views live in their own SQLite file beside the ledger: a disposable cache that can always
be rebuilt from the log (`secrets projections rebuild`). Rows and the tracked log position are
written in one transaction, so a view never holds half of an event nor an event twice.

`Views` is put together from modules of one concern each: the file, its schema and opening
(views_schema.py), what each event does to the views (views_fold.py), catching up and
rebuilding (views_catchup.py), the queries (views_queries.py) and their rows (view_rows.py).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from projections import replay_states
from projections.event_reader import EventReader
from projections.view_rows import (
    ActionCount,
    AddressCount,
    AuditRow,
    OperatorCount,
    OperatorRow,
    SecretRow,
    StatusCount,
)
from projections.views_catchup import (
    FEED_FROM,
    PAGE,
    REBUILD_SAVE_FACTOR,
    REBUILD_SORT_THREADS,
    REBUILD_WAL_PAGES,
    ViewsCatchUp,
)
from projections.views_queries import ViewsQueries
from projections.views_schema import (
    AUDIT_INDEXES,
    AUDIT_INSERT,
    SCHEMA,
    SNAPSHOT_ORDER,
    SQLITE_MAGIC,
    TIME_BLOCK,
    TRACKING_NAME,
    VIEW_TABLES,
    VIEWS_FILE,
    VIEWS_FORMAT,
    DamagedViews,
    _open,
    damage,
    discard,
    header_problem,
    quick_check,
    tracking_sane,
)

if TYPE_CHECKING:
    from ledger.application import SecretsLedger


class Views(ViewsCatchUp, ViewsQueries):
    def __init__(self, ledger: SecretsLedger, path: Path | None = None) -> None:
        self.ledger = ledger
        self.path = path or ledger.home / ledger.views_file
        try:
            self._db = _open(self.path)
        except sqlite3.OperationalError:
            raise  # locked, unwritable directory: not damage, and not ours to throw away
        except sqlite3.DatabaseError as exc:
            # A cache: a damaged one is thrown away and caught up again from the log, never
            # taken for damage of the ledger. Said on stderr (ledger.warnings), once.
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else "damaged"
            discard(self.path)
            self._db = _open(self.path)
            ledger.warnings.append(
                f"the views cache {self.path} was damaged ({problem}); "
                "it is rebuilt from the ledger's log"
            )
        # originator id -> (environment, service, name): a secret's id is derived from its
        # address, so an entry never goes stale; saves a query per secret event.
        self._addresses: dict[str, tuple[str, str, str]] = {}
        # operator originator id -> name: the id is derived from the name (ledger.operator).
        self._operator_names: dict[str, str] = {}
        self._reader = EventReader(ledger.mapper)
        self._upgrade()

    def _upgrade(self) -> None:
        """Empty views of another `VIEWS_FORMAT` (written by another version of this code),
        in one transaction with the new format number: the next catch-up applies the log
        again, so no view ever holds rows of two formats. Fresh views only take the number.
        Views whose tracked position is no position (text, a BLOB, negative: an edited file)
        are emptied the same way, with a warning."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] == VIEWS_FORMAT:
            if tracking_sane(self._db):
                return
            self.ledger.warnings.append(
                f"the views cache {self.path} was damaged (its tracked position is not a "
                "position); it is rebuilt from the ledger's log"
            )
        with self._write() as cur:
            if cur.execute("PRAGMA user_version").fetchone()[0] == VIEWS_FORMAT and (
                tracking_sane(cur)
            ):
                return  # another process upgraded them meanwhile
            for table in VIEW_TABLES:
                cur.execute(f"DELETE FROM {table}")
            replay_states.clear(cur)
            cur.execute(f"PRAGMA user_version = {VIEWS_FORMAT}")

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """`ViewsCatchUp.catch_up`, once the views' claim is checked against the log: views
        that claim more than it holds (projections/views_ahead.py) would never apply anything
        after their position, so they are rebuilt from it, with a warning."""
        from projections import views_ahead

        problem = views_ahead.ahead(self)
        if problem is not None:
            self.ledger.warnings.append(
                f"the views cache {self.path} claims more than the ledger's log holds "
                f"({problem}); it is rebuilt from the log"
            )
            return self.rebuild(progress)
        return super().catch_up(progress)

    def close(self) -> None:
        self._db.close()

    def lag(self) -> int:
        head = self.ledger.recorder.max_notification_id() or 0
        return max(0, head - self.position())

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every view row, in a stable order: to compare a rebuild with incremental views."""
        return {
            table: list(self._db.execute(f"SELECT * FROM {table} ORDER BY {order}"))
            for table, order in SNAPSHOT_ORDER
        }

    def digest(self) -> str:
        """SHA-256 over every view row in `snapshot`'s order, read as a stream: compares a
        rebuild with the views as they were without holding a large log's rows in memory
        (a million-event audit view is several hundred MiB as Python tuples)."""
        found = hashlib.sha256()
        for table, order in SNAPSHOT_ORDER:
            found.update(f"\x00{table}\x00".encode())
            for row in self._db.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                found.update(repr(row).encode() + b"\n")
        return found.hexdigest()


__all__ = [
    "AUDIT_INDEXES",
    "AUDIT_INSERT",
    "FEED_FROM",
    "PAGE",
    "REBUILD_SAVE_FACTOR",
    "REBUILD_SORT_THREADS",
    "REBUILD_WAL_PAGES",
    "SCHEMA",
    "SNAPSHOT_ORDER",
    "SQLITE_MAGIC",
    "TIME_BLOCK",
    "TRACKING_NAME",
    "VIEWS_FILE",
    "VIEWS_FORMAT",
    "VIEW_TABLES",
    "ActionCount",
    "AddressCount",
    "AuditRow",
    "DamagedViews",
    "OperatorCount",
    "OperatorRow",
    "SecretRow",
    "StatusCount",
    "Views",
    "damage",
    "discard",
    "header_problem",
    "quick_check",
]
