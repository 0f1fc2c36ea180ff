"""SQLite event store with the hash chain written inside the events' insert transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteCursor,
)

from ledger.errors import BadConfiguration
from ledger.store.chain import (
    GENESIS,
    MAX_VERSION,
    JoinedPage,
    StoredRow,
    head_link,
    link,
    refuse_cut_log,
)

if TYPE_CHECKING:
    from ledger.access.authority import LinkedRow

CHAIN_TABLE = "event_chain"
SNAPSHOTS_TABLE = "stored_snapshots"  # the library's fixed name on SQLite
PAGE = 5000
# (id, originator id as stored, version, topic, state): a stored event as `select_rows` reads it.
RawRow = tuple[int, str, int, str, bytes]


class ChainedSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    # Ids are max(rowid) + 1 and a rolled-back insert takes none: a hole in the middle of the
    # log can only be a deletion (PostgreSQL sequences do skip, so it does not say this).
    consecutive_ids = True

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} ("
            "notification_id INTEGER PRIMARY KEY, link BLOB NOT NULL)",
            # Finding the newest checkpoint (and every scan by event type) without a full scan.
            f"CREATE INDEX IF NOT EXISTS {self.events_table_name}_topic "
            f"ON {self.events_table_name} (topic)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # The events' INSERT comes first: it takes SQLite's write lock, so the chain head read
        # below cannot be stale (writers are serialised from here to commit).
        ids = super()._insert_events(c, stored_events, **kwargs)
        assert ids is not None
        c.execute(
            f"SELECT notification_id, link FROM {CHAIN_TABLE} ORDER BY notification_id DESC LIMIT 1"
        )
        row = c.fetchone()
        previous = head_link(row[0], row[1]) if row is not None else GENESIS
        if row is not None:
            refuse_cut_log(int(row[0]), min(ids))
        for notification_id, s in zip(ids, stored_events, strict=True):
            previous = link(
                previous,
                notification_id,
                s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
            )
            c.execute(
                f"INSERT INTO {CHAIN_TABLE} (notification_id, link) VALUES (?, ?)",
                (notification_id, previous),
            )
        return ids

    def select_rows(self, start: int, limit: int) -> list[RawRow]:
        """(id, originator id as stored, version, topic, state) of the events after `start`,
        at most `limit`: what `select_notifications` reads, as plain tuples. The views'
        catch-up reads a rebuild's million events this way: a `sqlite3.Row`, a `UUID` and a
        frozen `Notification` per event cost more than decoding it."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(self._rows_after, (start, limit))
            rows: list[RawRow] = c.fetchall()
            return rows

    @property
    def _rows_after(self) -> str:
        """The query of `select_rows`: (start, limit)."""
        return f"{self._select_rows} WHERE rowid > ? ORDER BY rowid LIMIT ?"

    @property
    def _select_rows(self) -> str:
        """Every event read as a `StoredRow` or `RawRow` has these columns, in this order."""
        return (
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {self.events_table_name}"
        )

    def row_opener(self) -> Callable[[], Callable[[int, int], list[RawRow]]] | None:
        """For a process forked from this one: what opens, there, a read-only `select_rows`
        on a connection of its own (a connection must not be used across a fork). None for an
        in-memory database, which no other process sees.

        SQLite keeps, per process, which files it holds open and locked; a forked child
        inherits that record, so its new connection borrows the parent's shared lock on the
        WAL index instead of taking one (seen in /proc/locks). That holds while the parent
        lives; a child whose parent died may read an inconsistent page, which nobody then
        receives (the rebuild's reader, projections/rebuild_feed.py, stops at its next send).
        It never writes (`query_only`)."""
        pool = self.datastore.pool
        if pool.is_sqlite_memory_mode:
            return None
        name, timeout = pool.db_name, pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT
        query = self._rows_after

        def open_select() -> Callable[[int, int], list[RawRow]]:
            db = sqlite3.connect(name, uri=True, timeout=timeout, isolation_level=None)
            db.execute("PRAGMA query_only = 1")

            def select(start: int, limit: int) -> list[RawRow]:
                rows: list[RawRow] = db.execute(query, (start, limit)).fetchall()
                return rows

            return select

        return open_select

    # -- reading for verification ---------------------------------------------------------

    def iter_rows(self, start: int = 0) -> Iterator[StoredRow]:
        last = start
        while True:
            with self.datastore.transaction(commit=False) as c:
                c.execute(self._rows_after, (last, PAGE))
                rows = c.fetchall()
            if not rows:
                return
            for r in rows:
                yield _stored_row(r)
            last = rows[-1][0]

    def iter_joined(self, start: int = 0) -> Iterator[JoinedPage]:
        """Pages of events after `start` joined with their links, for `verify_fast`: each
        page with the number of links in its id range (read in the same transaction), then
        an empty page with the number of links past the last event."""
        last = start
        while True:
            with self.datastore.transaction(commit=False) as c:
                c.sqlite_cursor.row_factory = None  # plain tuples: no sqlite3.Row per event
                c.execute(
                    f"SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state, "
                    f"c.link FROM {self.events_table_name} AS e "
                    f"LEFT JOIN {CHAIN_TABLE} AS c ON c.notification_id = e.rowid "
                    "WHERE e.rowid > ? ORDER BY e.rowid LIMIT ?",
                    (last, PAGE),
                )
                rows = c.fetchall()
                if rows:
                    c.execute(
                        f"SELECT count(*) FROM {CHAIN_TABLE} "
                        "WHERE notification_id > ? AND notification_id <= ?",
                        (last, rows[-1][0]),
                    )
                else:
                    c.execute(
                        f"SELECT count(*) FROM {CHAIN_TABLE} WHERE notification_id > ?",
                        (last,),
                    )
                links = int(c.fetchone()[0])
            yield rows, links
            if not rows:
                return
            last = rows[-1][0]

    def select_linked(
        self, originator_id: UUID, gt: int | None, lte: int | None
    ) -> list[LinkedRow]:
        """One aggregate's events (versions in (gt, lte]) each with the link stored at its
        position and the one stored before it, in one query (ledger/access/authority.py)."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(
                f"SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state, "
                f"c.link, (SELECT p.link FROM {CHAIN_TABLE} AS p "
                "WHERE p.notification_id < e.rowid ORDER BY p.notification_id DESC LIMIT 1) "
                f"FROM {self.events_table_name} AS e "
                f"LEFT JOIN {CHAIN_TABLE} AS c ON c.notification_id = e.rowid "
                # A version that is not an integer, or one no writer stores (below 1, past
                # 2**62: an edited row), is read too, so that it fails its check at its own
                # position instead of being left out of the fold, which then breaks on an
                # innocent row.
                "WHERE e.originator_id = ? AND ((e.originator_version > ? "
                "AND e.originator_version <= ?) OR typeof(e.originator_version) != 'integer' "
                "OR e.originator_version < 1 OR e.originator_version > ?) "
                "ORDER BY e.originator_version",
                (
                    originator_id.hex,
                    -1 if gt is None else gt,
                    MAX_VERSION if lte is None else lte,
                    MAX_VERSION,
                ),
            )
            rows: list[LinkedRow] = c.fetchall()
            return rows

    def positions(self, first: int, last: int) -> list[int]:
        """The positions in [first, last] that hold an event, ascending: ids only, read from
        the primary key (`audit log`'s check that no entry of them is missing from the views)."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None
            c.execute(
                f"SELECT rowid FROM {self.events_table_name} "
                "WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                (first, last),
            )
            return [int(r[0]) for r in c.fetchall()]

    def chain_head(self) -> tuple[int, bytes]:
        """The newest (position, link), or (0, GENESIS) for an empty log."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT notification_id, link FROM {CHAIN_TABLE} "
                "ORDER BY notification_id DESC LIMIT 1"
            )
            row = c.fetchone()
        return (int(row[0]), _as_link(row[1])) if row is not None else (0, GENESIS)

    def link_at(self, position: int) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT link FROM {CHAIN_TABLE} WHERE notification_id = ?", (position,))
            row = c.fetchone()
        return _as_link(row[0]) if row is not None else None

    def row_at(self, position: int) -> StoredRow | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"{self._select_rows} WHERE rowid = ?", (position,))
            r = c.fetchone()
        return _stored_row(r) if r is not None else None

    def position_of(self, originator_id: UUID, version: int) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid FROM {self.events_table_name} "
                "WHERE originator_id = ? AND originator_version = ?",
                (originator_id.hex, version),
            )
            r = c.fetchone()
        return int(r[0]) if r is not None else None

    def delete_snapshot(self, originator_id: UUID, version: int) -> None:
        """Snapshots are a cache: dropping a bad one makes loads fold the events instead."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"DELETE FROM {SNAPSHOTS_TABLE} WHERE originator_id = ? AND originator_version = ?",
                (originator_id.hex, version),
            )

    def last_with_topic(self, topic: str) -> StoredRow | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"{self._select_rows} WHERE topic = ? ORDER BY rowid DESC LIMIT 1", (topic,))
            r = c.fetchone()
        return _stored_row(r) if r is not None else None

    def iter_links(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        last = start
        while True:
            with self.datastore.transaction(commit=False) as c:
                c.execute(
                    f"SELECT notification_id, link FROM {CHAIN_TABLE} "
                    "WHERE notification_id > ? ORDER BY notification_id LIMIT ?",
                    (last, PAGE),
                )
                rows = c.fetchall()
            if not rows:
                return
            for r in rows:
                yield int(r[0]), _as_link(r[1])
            last = rows[-1][0]

    # -- copying a whole ledger (`secrets ledger copy`) -----------------------------------

    def iter_snapshots(self) -> Iterator[StoredEvent]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_id, originator_version, topic, state FROM {SNAPSHOTS_TABLE} "
                "ORDER BY originator_id, originator_version"
            )
            rows = c.fetchall()
        for r in rows:
            yield StoredEvent(r[0], r[1], r[2], _as_bytes(r[3]))

    def is_empty(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            for table in (self.events_table_name, CHAIN_TABLE, SNAPSHOTS_TABLE):
                c.execute(f"SELECT 1 FROM {table} LIMIT 1")
                if c.fetchone() is not None:
                    return False
        return True

    def import_history(
        self,
        rows: Iterable[StoredRow],
        links: Iterable[tuple[int, bytes]],
        snapshots: Iterable[StoredEvent],
    ) -> int:
        """Write another store's events with their positions (as rowids), links and snapshots
        into this empty store, in one transaction. New events then get rowids past the copy."""
        count = 0
        with self.datastore.transaction(commit=True) as c:
            for table in (self.events_table_name, CHAIN_TABLE, SNAPSHOTS_TABLE):
                c.execute(f"SELECT 1 FROM {table} LIMIT 1")
                if c.fetchone() is not None:
                    raise BadConfiguration("the target store already holds events")
            for r in rows:
                c.execute(
                    f"INSERT INTO {self.events_table_name} "
                    "(rowid, originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        r.notification_id,
                        _hex(r.originator_id),
                        r.originator_version,
                        r.topic,
                        r.state,
                    ),
                )
                count += 1
            c.executemany(f"INSERT INTO {CHAIN_TABLE} (notification_id, link) VALUES (?, ?)", links)
            c.executemany(
                f"INSERT INTO {SNAPSHOTS_TABLE} VALUES (?, ?, ?, ?)",
                (
                    (_hex(s.originator_id), s.originator_version, s.topic, s.state)
                    for s in snapshots
                ),
            )
        return count


def _stored_row(r: Any) -> StoredRow:
    return StoredRow(r[0], r[1], r[2], r[3], _as_bytes(r[4]))


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else str(originator_id)


def _as_link(value: object) -> bytes:
    # A damaged file can hold NULL or text where a link belongs: it is compared as the empty
    # link (a fault the verifier reports), never failed on for its type.
    return value if isinstance(value, bytes) else b""


def _as_bytes(value: object) -> bytes:
    # A tampered row may hold TEXT or a number where the library wrote a BLOB.
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()
