"""PostgreSQL event store with the hash chain written inside the events' insert transaction.

The library's `PostgresApplicationRecorder.insert_events` runs one transaction that
1. calls `_insert_events` (a hook that runs *before* any lock: not usable for the chain),
2. takes `LOCK TABLE <events> IN EXCLUSIVE MODE` (writers serialise here until commit; readers
   are not blocked), inserts the events and syncs the pipeline,
3. calls `_fetch_ids_after_insert_events` to collect the new notification ids.

The chain is written in step 3, after the lock: the chain head read there is the committed head
of the previous writer, so links follow log order even with many concurrent writers. Links are
computed over the rows as stored (read back by notification id) and never assume gap-free ids:
a PostgreSQL sequence skips the ids of every rolled-back insert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.errors import BadConfiguration, IntegrityFailure
from ledger.store.chain import (
    GENESIS,
    MAX_VERSION,
    JoinedPage,
    StoredRow,
    head_link,
    link,
    refuse_cut_log,
)
from ledger.store.config_postgres import SESSION_LOCK_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from psycopg import Cursor
    from psycopg.rows import DictRow

    from ledger.access.authority import LinkedRow

PAGE = 5000
COPY_PAGE = 1000


def table_prefix(events_table_name: str) -> str:
    """`secretsledger` for the library's `secretsledger_events` (named after the application)."""
    suffix = "_events"
    if events_table_name.endswith(suffix):
        return events_table_name[: -len(suffix)]
    return events_table_name


# Every event read as a `StoredRow` has these columns, in this order ({0}: the events table).
_SELECT_ROWS = "SELECT notification_id, originator_id, originator_version, topic, state FROM {0}"


class ChainedPostgresApplicationRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        if datastore.enable_db_functions:
            # The library's insert function bypasses the Python insert path, so no link
            # would be written: refuse rather than record events outside the chain.
            raise ProgrammingError(
                "POSTGRES_ENABLE_DB_FUNCTIONS is not supported: it would bypass the hash chain"
            )
        # Any role that may UPDATE a table may also LOCK it in ACCESS EXCLUSIVE mode, which
        # blocks every read; the library bounds only its own LOCK statement. Every statement
        # of every connection of the pool (opened lazily, by the first query: not before
        # this) waits for a lock at most this long, then fails with a clear error
        # (ledger/store/config_postgres.py `locked_out`).
        connect_kwargs = datastore.pool.kwargs
        if not isinstance(connect_kwargs, dict):  # the library passes a dict: never a callable
            raise ProgrammingError("cannot bound lock waits: unexpected connection pool settings")
        connect_kwargs["options"] = f"-c lock_timeout={SESSION_LOCK_TIMEOUT_SECONDS}s"
        super().__init__(datastore, events_table_name=events_table_name)
        prefix = table_prefix(events_table_name)
        self.chain_table_name = f"{prefix}_event_chain"
        self.snapshots_table_name = f"{prefix}_snapshots"
        self.check_identifier_length(self.chain_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{chain} ("
                "notification_id bigint PRIMARY KEY, link bytea NOT NULL)"
            ).format(schema=self._schema, chain=Identifier(self.chain_table_name))
        )

    # -- names ----------------------------------------------------------------------------

    @property
    def _schema(self) -> Identifier:
        return Identifier(self.datastore.schema)

    @property
    def _events(self) -> Composed:
        return SQL("{0}.{1}").format(self._schema, Identifier(self.events_table_name))

    @property
    def _chain(self) -> Composed:
        return SQL("{0}.{1}").format(self._schema, Identifier(self.chain_table_name))

    @property
    def _snapshots(self) -> Composed:
        return SQL("{0}.{1}").format(self._schema, Identifier(self.snapshots_table_name))

    # -- writing --------------------------------------------------------------------------

    def _fetch_ids_after_insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if not ids:
            return ids
        try:
            self._chain_inserted(curs, ids)
        except BaseException:
            # The library keeps an exception raised here and leaves its transaction block
            # normally, which commits: the events would stay without their links. Fail the
            # transaction on the server first, so that the commit is a rollback.
            with contextlib.suppress(psycopg.Error):
                curs.execute("SELECT 1 / 0").fetchall()
            raise
        return ids

    def _chain_inserted(self, curs: Cursor[DictRow], ids: Sequence[int]) -> None:
        """Link the events just inserted (`ids`) onto the chain head, in this transaction."""
        # This transaction holds the EXCLUSIVE lock on the events table (taken before the
        # insert), so every earlier writer has committed its events and links, and no later
        # one can start: the head read here is current.
        curs.execute(
            SQL(
                "SELECT notification_id, link FROM {0} ORDER BY notification_id DESC LIMIT 1"
            ).format(self._chain)
        )
        head = curs.fetchone()
        previous = head_link(head["notification_id"], head["link"]) if head is not None else GENESIS
        if head is not None:
            # Under the lock no writer can be ahead: an id not past the head is damage.
            refuse_cut_log(int(head["notification_id"]), min(ids))
        # Chain the rows exactly as stored, in notification id order.
        curs.execute(
            SQL(_SELECT_ROWS + " WHERE notification_id = ANY(%s) ORDER BY notification_id").format(
                self._events
            ),
            (list(ids),),
        )
        positions: list[int] = []
        links: list[bytes] = []
        for r in curs.fetchall():
            previous = link(
                previous,
                int(r["notification_id"]),
                r["originator_id"],
                int(r["originator_version"]),
                r["topic"],
                bytes(r["state"]),
            )
            positions.append(int(r["notification_id"]))
            links.append(previous)
        if len(positions) != len(ids):
            raise IntegrityError("inserted events could not be read back to chain them")
        curs.execute(
            SQL(
                "INSERT INTO {0} (notification_id, link) "
                "SELECT * FROM unnest(%s::bigint[], %s::bytea[])"
            ).format(self._chain),
            (positions, links),
        )

    # -- reading for verification ---------------------------------------------------------

    def _rows(self, query: Composed, params: Sequence[Any]) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, params)
            return curs.fetchall()

    @staticmethod
    def _stored_row(r: DictRow) -> StoredRow:
        return StoredRow(
            int(r["notification_id"]),
            r["originator_id"],
            int(r["originator_version"]),
            r["topic"] if r["topic"] is not None else "",
            bytes(r["state"]) if r["state"] is not None else b"",
        )

    def iter_rows(self, start: int = 0) -> Iterator[StoredRow]:
        """Stored events after position `start`, in log order."""
        last = start
        query = SQL(
            _SELECT_ROWS + " WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(self._events)
        while True:
            rows = self._rows(query, (last, PAGE))
            if not rows:
                return
            for r in rows:
                yield self._stored_row(r)
            last = int(rows[-1]["notification_id"])

    def select_rows(self, start: int, limit: int) -> list[tuple[Any, ...]]:
        """(id, originator id, version, topic, state) of the events after `start`, at most
        `limit`, as stored: the views' catch-up reads these (projections/event_reader.py)
        rather than the library's `select_notifications`, whose `bytes(state)` fails with a
        TypeError on a NULL state (the column is nullable) before any decoder can call the
        row damage. A row that does not decode is shown at its position, as on SQLite."""
        query = SQL(_SELECT_ROWS + " WHERE notification_id > %s ORDER BY notification_id LIMIT %s")
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(query.format(self._events), (start, limit))
            return curs.fetchall()

    @staticmethod
    def convert_originator_id(originator_id: Any) -> Any:
        """psycopg reads a `uuid` column as a UUID already (`select_rows`)."""
        return originator_id

    def iter_links(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Chain links after position `start`, in log order."""
        last = start
        query = SQL(
            "SELECT notification_id, link FROM {0} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(self._chain)
        while True:
            rows = self._rows(query, (last, PAGE))
            if not rows:
                return
            for r in rows:
                yield int(r["notification_id"]), bytes(r["link"])
            last = int(rows[-1]["notification_id"])

    def iter_joined(self, start: int = 0) -> Iterator[JoinedPage]:
        """Pages of events after `start` joined with their links, for `verify_fast`: each
        page with the number of links in its id range, then an empty page with the number of
        links past the last event. (Writers hold the events table's EXCLUSIVE lock until they
        commit, so links committed between the two queries all lie past the page.)"""
        last = start
        page = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, "
            "c.link FROM {0} AS e LEFT JOIN {1} AS c ON c.notification_id = e.notification_id "
            "WHERE e.notification_id > %s ORDER BY e.notification_id LIMIT %s"
        ).format(self._events, self._chain)
        within = SQL(
            "SELECT count(*) FROM {0} WHERE notification_id > %s AND notification_id <= %s"
        ).format(self._chain)
        past = SQL("SELECT count(*) FROM {0} WHERE notification_id > %s").format(self._chain)
        while True:
            with (
                self.datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row) as curs,
            ):
                curs.execute(page, (last, PAGE))
                rows = curs.fetchall()
                if rows:
                    curs.execute(within, (last, rows[-1][0]))
                else:
                    curs.execute(past, (last,))
                counted = curs.fetchone()
            links = int(counted[0]) if counted is not None else 0
            yield rows, links
            if not rows:
                return
            last = int(rows[-1][0])

    def select_linked(
        self, originator_id: UUID, gt: int | None, lte: int | None
    ) -> list[LinkedRow]:
        """One aggregate's events (versions in (gt, lte]) each with the link stored at its
        position and the one stored before it, in one query (ledger/access/authority.py)."""
        query = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, "
            "c.link, (SELECT p.link FROM {1} AS p WHERE p.notification_id < e.notification_id "
            "ORDER BY p.notification_id DESC LIMIT 1) "
            "FROM {0} AS e LEFT JOIN {1} AS c ON c.notification_id = e.notification_id "
            # A version no writer stores (below 1, past 2**62: an edited row) is read too,
            # so that it fails its check at its own position instead of being left out of
            # the fold, which then breaks on an innocent row.
            "WHERE e.originator_id = %s AND ((e.originator_version > %s "
            "AND e.originator_version <= %s) OR e.originator_version < 1 "
            "OR e.originator_version > %s) ORDER BY e.originator_version"
        ).format(self._events, self._chain)
        params = (
            originator_id,
            -1 if gt is None else gt,
            MAX_VERSION if lte is None else lte,
            MAX_VERSION,
        )
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(query, params)
            rows: list[LinkedRow] = [
                (int(r[0]), r[1], int(r[2]), r[3], r[4], r[5], r[6]) for r in curs.fetchall()
            ]
        return rows

    def positions(self, first: int, last: int) -> list[int]:
        """The positions in [first, last] that hold an event, ascending: ids only, read from
        the primary key (`audit log`'s check that no entry of them is missing from the views).
        A sequence leaves gaps here (a rolled-back insert), so a count would not do."""
        rows = self._rows(
            SQL(
                "SELECT notification_id FROM {0} "
                "WHERE notification_id BETWEEN %s AND %s ORDER BY notification_id"
            ).format(self._events),
            (first, last),
        )
        return [int(r["notification_id"]) for r in rows]

    def chain_head(self) -> tuple[int, bytes]:
        """The newest (position, link), or (0, GENESIS) for an empty log."""
        rows = self._rows(
            SQL(
                "SELECT notification_id, link FROM {0} ORDER BY notification_id DESC LIMIT 1"
            ).format(self._chain),
            (),
        )
        return (int(rows[0]["notification_id"]), bytes(rows[0]["link"])) if rows else (0, GENESIS)

    def link_at(self, position: int) -> bytes | None:
        rows = self._rows(
            SQL("SELECT link FROM {0} WHERE notification_id = %s").format(self._chain),
            (position,),
        )
        return bytes(rows[0]["link"]) if rows else None

    def row_at(self, position: int) -> StoredRow | None:
        rows = self._rows(
            SQL(_SELECT_ROWS + " WHERE notification_id = %s").format(self._events),
            (position,),
        )
        return self._stored_row(rows[0]) if rows else None

    def position_of(self, originator_id: UUID, version: int) -> int | None:
        rows = self._rows(
            SQL(
                "SELECT notification_id FROM {0} "
                "WHERE originator_id = %s AND originator_version = %s"
            ).format(self._events),
            (originator_id, version),
        )
        return int(rows[0]["notification_id"]) if rows else None

    def delete_snapshot(self, originator_id: UUID, version: int) -> None:
        """Snapshots are a cache: dropping a bad one makes loads fold the events instead.

        The writer role of docs/postgres.md has no DELETE on the snapshots table: then the
        error says what the table's owner must run (exit 6: the bad row stays)."""
        statement = SQL("DELETE FROM {0} WHERE originator_id = %s AND originator_version = %s")
        try:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(statement.format(self._snapshots), (originator_id, version))
        except PersistenceError as exc:
            if "permission denied" not in str(exc):
                raise
            table = f"{self.datastore.schema}.{self.snapshots_table_name}"
            raise IntegrityFailure(  # a message for a person, never run as a query
                f"a bad stored snapshot (aggregate {originator_id}, version {version}) stays: "  # noqa: S608
                f"this database role may not delete from {table}. Loads ignore it; to remove "
                f"it, the tables' owner runs: DELETE FROM {table} WHERE originator_id = "
                f"'{originator_id}' AND originator_version = {version};"
            ) from None

    def last_with_topic(self, topic: str) -> StoredRow | None:
        rows = self._rows(
            SQL(_SELECT_ROWS + " WHERE topic = %s ORDER BY notification_id DESC LIMIT 1").format(
                self._events
            ),
            (topic,),
        )
        return self._stored_row(rows[0]) if rows else None

    # -- copying a whole ledger (`secrets ledger copy`) -----------------------------------

    def iter_snapshots(self) -> Iterator[StoredEvent]:
        last: tuple[Any, int] | None = None
        while True:
            if last is None:
                query = SQL(
                    "SELECT * FROM {0} ORDER BY originator_id, originator_version LIMIT %s"
                ).format(self._snapshots)
                params: tuple[Any, ...] = (PAGE,)
            else:
                query = SQL(
                    "SELECT * FROM {0} WHERE (originator_id, originator_version) > (%s, %s) "
                    "ORDER BY originator_id, originator_version LIMIT %s"
                ).format(self._snapshots)
                params = (*last, PAGE)
            rows = self._rows(query, params)
            if not rows:
                return
            for r in rows:
                # A NULL state or topic (the columns are nullable) is a snapshot that cannot
                # authenticate: checked, reported and dropped as one, never a TypeError here.
                yield StoredEvent(
                    r["originator_id"],
                    int(r["originator_version"]),
                    r["topic"] if r["topic"] is not None else "",
                    bytes(r["state"]) if r["state"] is not None else b"",
                )
            last = (rows[-1]["originator_id"], int(rows[-1]["originator_version"]))

    def is_empty(self) -> bool:
        for table in (self._events, self._chain, self._snapshots):
            if self._rows(SQL("SELECT 1 FROM {0} LIMIT 1").format(table), ()):
                return False
        return True

    def import_history(
        self,
        rows: Iterable[StoredRow],
        links: Iterable[tuple[int, bytes]],
        snapshots: Iterable[StoredEvent],
    ) -> int:
        """Write another store's events (with their positions), links and snapshots into this
        empty store in one transaction, then move the id sequence past the highest position."""
        count = 0
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("LOCK TABLE {0} IN EXCLUSIVE MODE").format(self._events))
            if not self._empty_in(curs):
                raise BadConfiguration("the target store already holds events")
            insert_event = SQL(
                "INSERT INTO {0} (notification_id, originator_id, originator_version, topic, "
                "state) VALUES (%s, %s, %s, %s, %s)"
            ).format(self._events)
            for batch in _batches(rows):
                curs.executemany(
                    insert_event,
                    [
                        (
                            r.notification_id,
                            _uuid(r.originator_id),
                            r.originator_version,
                            r.topic,
                            r.state,
                        )
                        for r in batch
                    ],
                )
                count += len(batch)
            insert_link = SQL("INSERT INTO {0} (notification_id, link) VALUES (%s, %s)").format(
                self._chain
            )
            for link_batch in _batches(links):
                curs.executemany(insert_link, link_batch)
            insert_snapshot = SQL(
                "INSERT INTO {0} (originator_id, originator_version, topic, state) "
                "VALUES (%s, %s, %s, %s)"
            ).format(self._snapshots)
            for snapshot_batch in _batches(snapshots):
                curs.executemany(
                    insert_snapshot,
                    [
                        (_uuid(s.originator_id), s.originator_version, s.topic, s.state)
                        for s in snapshot_batch
                    ],
                )
            # New events must get ids past everything copied: move the sequence on.
            curs.execute(
                SQL("SELECT pg_get_serial_sequence(%s, 'notification_id') AS seq"),
                (f'"{self.datastore.schema}"."{self.events_table_name}"',),
            )
            found = curs.fetchone()
            assert found is not None and found["seq"] is not None
            curs.execute(
                SQL(
                    "SELECT setval(%s::regclass, "
                    "(SELECT COALESCE(MAX(notification_id), 1) FROM {0}), "
                    "(SELECT COUNT(*) > 0 FROM {0}))"
                ).format(self._events),
                (found["seq"],),
            )
        return count

    def _empty_in(self, curs: Cursor[DictRow]) -> bool:
        for table in (self._events, self._chain, self._snapshots):
            curs.execute(SQL("SELECT 1 FROM {0} LIMIT 1").format(table))
            if curs.fetchone() is not None:
                return False
        return True


def _uuid(value: UUID | str) -> UUID | str:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        return value


def _batches(items: Iterable[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= COPY_PAGE:
            yield batch
            batch = []
    if batch:
        yield batch
