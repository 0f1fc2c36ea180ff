"""This host's witness of the aggregate heads it has already seen ("seen heads").

The hash chain needs no secret: whoever can write the event store can delete an aggregate's
newest event (an operator's `Revoked`, a secret's newest version), or edit an older one and
recompute every link after it, and a load folds what is left as if nothing happened. Signed
checkpoints catch that, but only in `audit verify`. This module lets a decision notice it for
what this host has seen: for every aggregate loaded for a decision (`SecretsLedger.
_load_authority`: operators, settings, secrets) or saved, it keeps the newest version, the log
position of that version's event and the chain link stored at that position. A later load
fails closed (`DamagedHistory`, exit 6, an integrity alarm) when the store ends the aggregate
below the seen version, holds no event of it at the seen version and position, or stores
another link there (an edit anywhere before it, relinked). A passing load advances the record,
never lowers it.

Where: a small SQLite file in the ledger's home, one per event store (named after the store's
views cache: `seen-heads.sqlite` beside `ledger.sqlite`, `seen-heads-pg-<id>.sqlite` for a
PostgreSQL ledger), one row per aggregate. Outside the event store on purpose: a PostgreSQL
writer cannot reach a host's home, and for a SQLite ledger it is at least a second file to
alter. SQLite because several processes of one host load and save at once: its locking (with
a busy timeout) and `ON CONFLICT ... WHERE` make "never lower" one atomic statement.

The record is only ever used to refuse, so it carries no seal: a forged higher record only
denies service (which a writer of the home can do anyway); a deleted or garbled file only
loses protection and is started anew as aggregates are loaded (a warning, never a failure).
The file is read before the store is, so a record another process advanced after its own
commit never exceeds what this load reads.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from ledger.access.authority import DamagedHistory, LinkedRecorder

FORMAT = 1  # PRAGMA user_version of the file's rows
BUSY_TIMEOUT = 5.0  # seconds another process of this host may hold the file's write lock
RESET_HINT = (
    "if this ledger was restored from a backup on purpose, run `secrets audit verify`, then "
    "`secrets audit checkpoint --reset-witness` (senior-engineer), which forgets what this "
    "host had seen"
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seen_heads (aggregate_id TEXT PRIMARY KEY, "
    "version INTEGER NOT NULL, position INTEGER NOT NULL, link BLOB NOT NULL, "
    "label TEXT NOT NULL)"
)
# A row whose cells are not of their types (an edited file) is replaced, whatever it says.
_ADVANCE = (
    "INSERT INTO seen_heads (aggregate_id, version, position, link, label) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (aggregate_id) DO UPDATE SET "
    "version = excluded.version, position = excluded.position, link = excluded.link, "
    "label = excluded.label WHERE typeof(seen_heads.version) != 'integer' "
    "OR typeof(seen_heads.position) != 'integer' OR typeof(seen_heads.link) != 'blob' "
    "OR excluded.version > seen_heads.version"
)


def file_name(views_file: str) -> str:
    """The witness file of the store whose views cache is `views_file` (one per store)."""
    return "seen-heads" + views_file.removeprefix("views")


@dataclass(frozen=True)
class Head:
    version: int
    position: int
    link: bytes
    label: str


def label_of(found: Any) -> str:
    """How an aggregate is named in a refusal: its kind and, where it has one, its name."""
    kind = type(found).__name__
    if kind == "Secret":
        return f"secret {found.environment}/{found.service}/{found.name}"
    if kind == "LedgerSettings":
        return "the ledger settings"
    name = getattr(found, "name", None)
    return f"{kind.lower()} {name}" if isinstance(name, str) else kind.lower()


def _shown(text: str) -> str:
    # Read back from a file anyone with the home can write: escaped and bounded.
    return text.encode("unicode_escape").decode("ascii")[:120]


class SeenHeads:
    """The witness of one event store on this host (see the module's docstring)."""

    def __init__(self, path: Path, store: LinkedRecorder, warn: Callable[[str], None]) -> None:
        self.path = path
        self.store = store
        self._warn = warn
        self._db: sqlite3.Connection | None = None
        self._broken = False  # unreadable and could not be started anew: no protection
        self.suspended = False  # `audit checkpoint --reset-witness` authorises without it

    # -- the file ---------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self._db = self._open()
            except (sqlite3.Error, OSError) as exc:
                self._start_anew(exc)
        return self._db

    def _open(self) -> sqlite3.Connection:
        if not self.path.exists():
            # Private like the rest of the home; opened, not created, by sqlite3 below.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != FORMAT:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {FORMAT}")
            # A file of the right format but without its table (edited) fails here.
            db.execute("SELECT 1 FROM seen_heads LIMIT 0")
        except BaseException:
            db.close()
            raise
        return db

    def _start_anew(self, exc: BaseException) -> None:
        self._db = None
        self._warn(
            f"this host's record of the ledger heads it has seen ({self.path.name}) is "
            f"unreadable ({type(exc).__name__}); it is started anew, and deletions of what it "
            "recorded can no longer be noticed on load (`secrets audit verify` still can)"
        )
        try:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._db = self._open()
        except (sqlite3.Error, OSError):
            self._broken = True

    def _read(self, aggregate_id: UUID) -> Head | None:
        db = self._connection()
        if db is None or self.suspended:
            return None
        try:
            row = db.execute(
                "SELECT version, position, link, label FROM seen_heads WHERE aggregate_id = ?",
                (aggregate_id.hex,),
            ).fetchone()
        except sqlite3.Error as exc:
            self._start_anew(exc)
            return None
        if row is None:
            return None
        version, position, link, label = row
        if not (
            type(version) is int
            and type(position) is int
            and isinstance(link, bytes)
            and isinstance(label, str)
        ):
            return None  # an edited row protects nothing; the next advance replaces it
        return Head(version, position, link, label)

    def _write(self, aggregate_id: UUID, head: Head) -> None:
        db = self._connection()
        if db is None:
            return
        try:
            db.execute(
                _ADVANCE,
                (aggregate_id.hex, head.version, head.position, head.link, head.label),
            )
        except sqlite3.OperationalError as exc:
            # Locked past the timeout, a full disk: the load stands, unrecorded.
            self._warn(
                f"this host's record of the ledger heads it has seen ({self.path.name}) could "
                f"not be advanced ({exc})"
            )
        except sqlite3.Error as exc:
            self._start_anew(exc)

    def forget(self) -> list[str]:
        """Forget every head this host has seen of this store (after a restore: see
        RESET_HINT); what the store contradicted of them, each named, for the record."""
        db = self._connection()
        if db is None:
            return []
        contradicted: list[str] = []
        try:
            rows = db.execute(
                "SELECT aggregate_id, version, position, link, label FROM seen_heads"
            ).fetchall()
            for aggregate_id, version, position, link, label in rows:
                try:
                    oid = UUID(hex=aggregate_id)
                    seen = Head(version, position, link, label)
                    self._check(oid, seen, version)
                except DamagedHistory as refusal:
                    contradicted.append(f"{_shown(str(label))} at position {refusal.position}")
                except (TypeError, ValueError, AttributeError):
                    continue  # an edited row: nothing to contradict
            db.execute("DELETE FROM seen_heads")
        except sqlite3.Error as exc:
            self._start_anew(exc)
        return contradicted

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- loads ------------------------------------------------------------------------------

    def load(
        self,
        aggregate_id: UUID,
        load: Callable[[], Any],
        holds_events: Callable[[], bool],
        rows_read: Callable[[UUID], dict[int, tuple[int, Any]]] | None = None,
    ) -> Any:
        """`load()`'s aggregate, refused as `DamagedHistory` when the store holds less of it
        than this host has seen; the record advanced to what was loaded. `rows_read` gives
        the rows the load itself read and checked against their links (version -> position,
        link), which spares a query for each version found there."""
        from eventsourcing.application import AggregateNotFoundError

        seen = self._read(aggregate_id)  # before the store: see the module's docstring
        try:
            found = load()
        except AggregateNotFoundError:
            # An empty store is a ledger not initialised (deleted whole, or never there):
            # `init` forgets the record; anything less is the deletion of what was seen.
            if seen is not None and holds_events():
                raise self._refusal(aggregate_id, seen, "holds none of its events") from None
            raise
        version = found.version
        read = rows_read(aggregate_id) if rows_read is not None else {}
        if seen is not None:
            self._check(aggregate_id, seen, version, read.get(seen.version))
            if version == seen.version:
                return found
        self._advance(aggregate_id, version, label_of(found), read.get(version))
        return found

    def _row(
        self, aggregate_id: UUID, version: int, read: tuple[int, Any] | None
    ) -> tuple[int, Any] | None:
        """(position, stored link) of the aggregate's event at `version`, None if none."""
        if read is not None:
            return read
        rows = self.store.select_linked(aggregate_id, version - 1, version)
        return (rows[0][0], rows[0][5]) if rows else None

    def _check(
        self, aggregate_id: UUID, seen: Head, version: int, read: tuple[int, Any] | None = None
    ) -> None:
        if version < seen.version:
            raise self._refusal(aggregate_id, seen, f"ends it at version {version}")
        row = self._row(aggregate_id, seen.version, read)
        if row is None:
            raise self._refusal(aggregate_id, seen, "holds no event of it at that version")
        position, link = row
        if position != seen.position:
            raise self._refusal(aggregate_id, seen, f"holds that version at position {position}")
        if not isinstance(link, bytes | bytearray | memoryview):
            raise self._refusal(aggregate_id, seen, "holds no chain link at that position")
        if bytes(link) != seen.link:
            raise self._refusal(
                aggregate_id,
                seen,
                "stores another chain link at that position (history up to it was rewritten)",
                kind="edited",
            )

    def _advance(
        self, aggregate_id: UUID, version: int, label: str, read: tuple[int, Any] | None
    ) -> None:
        row = self._row(aggregate_id, version, read)
        if row is None:
            return  # gone since the load: the next load has nothing to compare either
        position, link = row
        if isinstance(position, int) and isinstance(link, bytes | bytearray | memoryview):
            self._write(aggregate_id, Head(version, position, bytes(link), label))

    def saved(self, aggregates: tuple[Any, ...], recordings: list[Any]) -> None:
        """After a commit: advance the record of each saved operator, secret or settings to
        its newest event (a revoke this host wrote must be missed if deleted)."""
        from ledger.operator import Operator
        from ledger.secret import Secret
        from ledger.settings import LedgerSettings

        positions = {
            (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
            for r in recordings
        }
        for found in aggregates:
            if not isinstance(found, Operator | Secret | LedgerSettings):
                continue
            position = positions.get((found.id, found.version))
            if position is None:
                continue  # nothing of it in this save
            rows = self.store.select_linked(found.id, found.version - 1, found.version)
            if rows and rows[0][0] == position:
                link = rows[0][5]
                if isinstance(link, bytes | bytearray | memoryview):
                    head = Head(found.version, position, bytes(link), label_of(found))
                    self._write(found.id, head)

    def _refusal(
        self, aggregate_id: UUID, seen: Head, now: str, kind: str = "deleted"
    ) -> DamagedHistory:
        return DamagedHistory(
            seen.position,
            kind,
            f"this host has seen {_shown(seen.label)} (aggregate {aggregate_id}) at version "
            f"{seen.version}, position {seen.position}, and the log now {now}; {RESET_HINT}",
        )
