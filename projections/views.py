"""Materialised read models, caught up from the event log before every answer.

The views live in their own SQLite file beside the ledger: a disposable cache that can always
be rebuilt from the log (`secrets projections rebuild`). Rows and the tracked log position are
written in one transaction, so a view never holds half of an event nor an event twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import (
    MapperDeserialisationError,
)

from ledger import crashpoints
from projections import event_reader, rebuild_feed, replay, replay_states
from projections.audit_codes import EVENT_CODES, REASON_CODES
from projections.event_reader import READ_ACTION, READ_CODE, EventReader

if TYPE_CHECKING:
    from ledger.application import SecretsLedger

VIEWS_FILE = "views.sqlite"
TRACKING_NAME = "views"
PAGE = 2000
REBUILD_WAL_PAGES = 16_000  # 64 MiB of 4 KiB pages: the views' WAL at most during a rebuild
# A rebuild saves replay states every REBUILD_SAVE_FACTOR * replay.SAVE_EVERY positions. Not
# 2: when states were saved whole, 2 halved their cost to the rebuild but doubled how far the
# first replay after it folds, and the cold replay fell from 31x to 13.5x (docs/performance.md).
REBUILD_SAVE_FACTOR = 1
# A rebuild of at least this many events reads them in a child process (rebuild_feed): below,
# starting one costs more than it saves.
FEED_FROM = 20_000
REBUILD_SORT_THREADS = 1  # SQLite's helper threads for the index build (0: none)
# What a view row holds. Raise it with any change to what `_apply` writes: views of another
# format are emptied on open and caught up again from the log (`Views._upgrade`).
# 2: a refused grant's detail shows the recorded (already escaped) name and role as they are.
# 3: a version with its predecessor's fingerprint keeps the predecessor's `last_rotation`
#    (saved replay states, folded by the old rule, are dropped with the rows).
VIEWS_FORMAT = 3
VIEW_TABLES = (
    "tracking",
    "secrets_view",
    "version_rotations",
    "audit_view",
    "operators_view",
    "audit_time_blocks",
    "audit_time_coverage",
)
SNAPSHOT_ORDER = (
    ("tracking", "name"),
    ("secrets_view", "originator_id"),
    ("version_rotations", "originator_id, version"),
    ("audit_view", "position"),
    ("operators_view", "originator_id"),
)
AUDIT_INDEXES = ("audit_view_code", "audit_view_event_counts")
AUDIT_INSERT = "INSERT INTO audit_view VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS tracking (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS secrets_view (
    originator_id TEXT PRIMARY KEY,
    environment TEXT NOT NULL, service TEXT NOT NULL, name TEXT NOT NULL,
    current_version INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT, last_change TEXT, operator TEXT, reason TEXT, last_rotation TEXT,
    deleted INTEGER NOT NULL DEFAULT 0, destroyed INTEGER NOT NULL DEFAULT 0,
    retained INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS secrets_view_address
    ON secrets_view (environment, service, name);
CREATE TABLE IF NOT EXISTS version_rotations (
    originator_id TEXT NOT NULL, version INTEGER NOT NULL, rotated_at TEXT NOT NULL,
    PRIMARY KEY (originator_id, version)
);
CREATE TABLE IF NOT EXISTS audit_view (
    position INTEGER PRIMARY KEY, timestamp TEXT NOT NULL, code TEXT NOT NULL,
    event TEXT NOT NULL, operator TEXT NOT NULL, action TEXT NOT NULL,
    environment TEXT, service TEXT, name TEXT, outcome TEXT NOT NULL,
    correlation_id TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_view_code ON audit_view (code);
CREATE INDEX IF NOT EXISTS audit_view_event_counts
    ON audit_view (event, action, environment, service, name);
CREATE TABLE IF NOT EXISTS operators_view (
    originator_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_time_blocks (block INTEGER PRIMARY KEY, earliest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_time_coverage (since INTEGER NOT NULL);
"""
# `position_at` (what `audit replay --at T` cuts at) is the last position stamped at or before
# T. Timestamps are writers' clocks, not in position order, so that took a scan of the audit
# view back from its end (0.24 s to the middle of a 1M-event log). `audit_time_blocks` keeps,
# per block of TIME_BLOCK positions, the earliest timestamp in it: the last block whose earliest
# is at or before T holds the answer. Kept from `audit_time_coverage.since` on (views built
# before the table existed are scanned below that).
TIME_BLOCK = 1000


SQLITE_MAGIC = b"SQLite format 3\x00"


class DamagedViews(sqlite3.DatabaseError):
    """The views file is not an intact SQLite database."""


def _open(path: Path) -> sqlite3.Connection:
    """The views database at `path` (created if absent), its tables ready; DatabaseError if
    the file is damaged. A header that does not add up (truncated, overwritten) is checked
    whole (`quick_check`); an intact header costs nothing more."""
    suspect = header_problem(path)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        if suspect is not None:
            problem = quick_check(db)
            if problem is not None:
                raise DamagedViews(f"{suspect}; {problem}")
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        replay_states.prepare(db)
        db.execute("SELECT position FROM tracking LIMIT 1").fetchall()
    except BaseException:
        db.close()
        raise
    return db


def header_problem(path: Path) -> str | None:
    """What in the file's first 100 bytes does not fit its size, or None (absent or empty
    counts as fine: SQLite creates it). Cheap: one read of the header and a stat."""
    try:
        with path.open("rb") as f:
            header = f.read(100)
            size = f.seek(0, 2)
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return "not an SQLite file"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return "bad page size"
    if size % page_size:
        return "not a whole number of pages"
    pages = int.from_bytes(header[28:32], "big")
    # The page count in the header is valid when its change counter matches (offsets 24, 92).
    if header[24:28] == header[92:96] and pages * page_size > size:
        return f"{size // page_size} of its {pages} pages present"
    return None


def quick_check(db: sqlite3.Connection) -> str | None:
    """SQLite's own check of every page (reads the whole file); None when intact.
    OperationalError (locked, say) is raised: it says nothing about the file."""
    try:
        rows = db.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
    found = str(rows[0][0]) if rows else "no answer"
    return None if found == "ok" else found[:200]


def damage(path: Path) -> str | None:
    """Why the views file at `path` cannot be used, or None: the whole file read (for
    `secrets doctor`, not for every command)."""
    if not path.exists():
        return None
    suspect = header_problem(path)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        return str(exc)
    try:
        problem = quick_check(db)
    finally:
        db.close()
    if problem is None and suspect is None:
        return None
    return "; ".join(p for p in (suspect, problem) if p)


def discard(path: Path) -> None:
    """Remove a views file and its WAL: the next open starts empty and catches up."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        (path.parent / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class SecretRow:
    environment: str
    service: str
    name: str
    current_version: int
    fingerprint: str
    last_change: str
    operator: str
    reason: str
    last_rotation: str
    deleted: bool
    destroyed: bool
    retained: int

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "service": self.service,
            "name": self.name,
            "current_version": self.current_version,
            "fingerprint": self.fingerprint[:12],
            "last_change": self.last_change,
            "operator": self.operator,
            "reason": self.reason,
            "last_rotation": self.last_rotation,
            "deleted": self.deleted,
            "destroyed": self.destroyed,
            "value": "********",
        }


@dataclass(frozen=True)
class AuditRow:
    position: int
    timestamp: str
    code: str
    event: str
    operator: str
    action: str
    environment: str | None
    service: str | None
    name: str | None
    outcome: str
    correlation_id: str
    detail: str

    @property
    def target(self) -> str:
        if self.service is None:
            return ""
        return f"{self.environment}/{self.service}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "timestamp": self.timestamp,
            "code": self.code,
            "event": self.event,
            "operator": self.operator,
            "action": self.action,
            "environment": self.environment,
            "service": self.service,
            "name": self.name,
            "outcome": self.outcome,
            "correlation_id": self.correlation_id,
            "detail": self.detail,
        }


class Views:
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
        again, so no view ever holds rows of two formats. Fresh views only take the number."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] == VIEWS_FORMAT:
            return
        with self._write() as cur:
            if cur.execute("PRAGMA user_version").fetchone()[0] == VIEWS_FORMAT:
                return  # another process upgraded them meanwhile
            for table in VIEW_TABLES:
                cur.execute(f"DELETE FROM {table}")
            replay_states.clear(cur)
            cur.execute(f"PRAGMA user_version = {VIEWS_FORMAT}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        cur = self._db.cursor()
        # IMMEDIATE: two processes catching up at once must not both apply the same events.
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def position(self) -> int:
        row = self._db.execute(
            "SELECT position FROM tracking WHERE name = ?", (TRACKING_NAME,)
        ).fetchone()
        return int(row[0]) if row else 0

    def lag(self) -> int:
        head = self.ledger.recorder.max_notification_id() or 0
        return max(0, head - self.position())

    @contextmanager
    def consistent_read(self) -> Iterator[int]:
        """Queries made inside see one committed state of the views; yields its position.

        Several aggregate queries answering one question (a metrics scrape) must not straddle
        a concurrent catch-up or rebuild, or counters would disagree with each other.
        """
        self._db.execute("BEGIN")
        try:
            yield self.position()
        finally:
            self._db.execute("COMMIT")

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply every event recorded since the last tracked position; return how many.

        Also folds the replay state (projections/replay.py) over the same events and saves it
        at every `replay.SAVE_EVERY`-th position, in the same transaction, so that a replay
        (even the first after a rebuild) starts near its cut. The fold is resumed only when a
        page crosses such a position, from a saved state near the start (`Replayer.resume`);
        with none near (views caught up before states were saved), replays save them."""
        return self._catch_up(progress, replay.SAVE_EVERY)

    def _catch_up(
        self,
        progress: Callable[[int], None] | None,
        every: int,
        feed: rebuild_feed.PageFeed | None = None,
    ) -> int:
        """`catch_up`, saving the replay state at every `every`-th position; pages come from
        `feed` as long as it has them (projections/rebuild_feed.py), then from the log."""
        applied = 0
        replayer: replay.Replayer | None = None
        fold: replay_states.State | None = None
        folded_to = -1  # the position `fold` has seen every event up to
        is_folded = replay.is_folded_kind
        while True:
            with self._write() as cur:
                row = cur.execute(
                    "SELECT position FROM tracking WHERE name = ?", (TRACKING_NAME,)
                ).fetchone()
                start = int(row[0]) if row else 0
                page = None
                if feed is not None:
                    page, convert = feed.take(start), feed.convert
                if page is None:
                    rows, convert = event_reader.read_rows(self.ledger.recorder, start, PAGE)
                    page = rebuild_feed.items(self._reader, rows)
                    if not page:
                        return applied
                last = page[-1][0]
                if folded_to != start:
                    # First page, or another process caught up in between: start again.
                    fold = None
                    if start == 0 or last // every > start // every:
                        replayer = replay.Replayer(self.ledger, self._db)
                        # Without the key no state could be saved: no fold to keep.
                        fold = replayer.resume(start) if replayer.saves else None
                # Audit rows are written with one executemany per page (nothing in `_apply`
                # reads audit_view back): per-row execute calls were most of a rebuild's cost.
                audit_rows: list[tuple[Any, ...]] = []
                add, apply = audit_rows.append, self._apply
                read, row_width = self._reader.read_row, rebuild_feed.ROW_WIDTH
                for item in page:
                    at = item[0]
                    folded = False
                    # Reads, denials and validation failures come as their audit row alone.
                    audit_row = item
                    if len(item) == row_width:
                        try:
                            event, ts = read(item, convert)
                        except MapperDeserialisationError:
                            # Damaged bytes must not blind the audit log: show the spot.
                            add(self._unreadable(at, item[3]))
                            continue
                        audit_row = apply(cur, at, event, ts)
                        kind = audit_row[3]
                        # Only the kinds `replay.fold` reads more of than the position and
                        # time are folded; the others (reads, denials: most of a log) only
                        # move those two, below.
                        if fold is not None and is_folded(kind):
                            oid = event.originator_id.hex
                            replay.fold(fold, at, event, kind, oid, ts)
                            if kind.startswith("Secret.") and replayer is not None:
                                replayer.changed(oid)
                            folded = True
                    add(audit_row)
                    if fold is not None and replayer is not None:
                        if not folded:
                            fold["position"], fold["timestamp"] = at, audit_row[1]
                        if at % every == 0:
                            replayer.save_state(fold)
                    crashpoints.reached("during-catch-up")
                cur.executemany(AUDIT_INSERT, audit_rows)
                self._note_times(cur, start, audit_rows)
                folded_to = last if fold is not None else -1
                cur.execute(
                    "INSERT INTO tracking (name, position) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                    (TRACKING_NAME, last),
                )
                applied += len(page)
            if progress is not None:
                progress(applied)

    def rebuild(
        self, progress: Callable[[int], None] | None = None, *, feed_from: int = FEED_FROM
    ) -> int:
        """Apply the whole log again to emptied views; return how many events. With at least
        `feed_from` events in an SQLite file, a child process reads them and builds most audit
        rows beside this one (projections/rebuild_feed.py)."""
        # What this process remembers of the views is remembered again from the log.
        self._addresses.clear()
        self._operator_names.clear()
        with self._write() as cur:
            for table in VIEW_TABLES:
                cur.execute(f"DELETE FROM {table}")
            # Saved replay states are a cache of the same log (projections/replay_states.py); the
            # catch-up below saves them again as it folds from the first event.
            replay_states.clear(cur)
            # The audit log's secondary indexes are built once at the end: kept up to date
            # row by row they cost as much as the rows themselves on a large log. Every open
            # (SCHEMA) creates them again should the rebuild be interrupted.
            for index in AUDIT_INDEXES:
                cur.execute(f"DROP INDEX IF EXISTS {index}")
        # A rebuild commits every page: no fsync per commit (WAL still syncs at checkpoints,
        # and keeps every commit atomic; a power cut can only lose the last pages, which the
        # next catch-up applies again: the views are a cache of the log), and a checkpoint
        # every REBUILD_WAL_PAGES instead of every 1,000 pages (each one syncs twice and
        # copies the pages every commit touches again: the last leaf, the tracking row).
        synchronous = int(self._db.execute("PRAGMA synchronous").fetchone()[0])
        checkpoint = int(self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(f"PRAGMA wal_autocheckpoint = {REBUILD_WAL_PAGES}")
        feed: rebuild_feed.PageFeed | None = None
        try:
            recorder: Any = self.ledger.recorder
            opener = getattr(recorder, "row_opener", None)  # SQLite files only
            open_select = opener() if opener is not None else None
            head = recorder.max_notification_id() or 0
            if (
                open_select is not None
                and head >= feed_from
                and rebuild_feed.PageFeed.useful(self._reader)
            ):
                feed = rebuild_feed.PageFeed(
                    self._reader, open_select, recorder.convert_originator_id, head, PAGE
                )
            # Replay states every REBUILD_SAVE_FACTOR * SAVE_EVERY positions: a replay starting
            # from one folds at most that far. Each save writes only the secrets changed since
            # the last (projections/replay_states.py): about 14 ms at 1M events.
            return self._catch_up(progress, REBUILD_SAVE_FACTOR * replay.SAVE_EVERY, feed)
        finally:
            if feed is not None:
                feed.close()
            self._db.execute(f"PRAGMA synchronous = {synchronous}")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {checkpoint}")
            # The indexes dropped above are built here, sorted by SQLite on a second thread
            # (a third less time at 1M events; the feed's child has finished by now).
            threads = int(self._db.execute("PRAGMA threads").fetchone()[0])
            self._db.execute(f"PRAGMA threads = {max(threads, REBUILD_SORT_THREADS)}")
            try:
                self._db.executescript(SCHEMA)
            finally:
                self._db.execute(f"PRAGMA threads = {threads}")

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

    # -- folding --------------------------------------------------------------------------

    @staticmethod
    def _note_times(cur: sqlite3.Cursor, start: int, audit_rows: list[tuple[Any, ...]]) -> None:
        """Keep `audit_time_blocks` for a page of audit rows (read after position `start`)."""
        if cur.execute("SELECT since FROM audit_time_coverage").fetchone() is None:
            cur.execute("INSERT INTO audit_time_coverage VALUES (?)", (start + 1,))
        earliest: dict[int, str] = {}
        for row in audit_rows:
            position, ts = row[0], row[1]
            if ts:
                block = position // TIME_BLOCK
                if block not in earliest or ts < earliest[block]:
                    earliest[block] = ts
        cur.executemany(
            "INSERT INTO audit_time_blocks VALUES (?, ?) ON CONFLICT(block) DO UPDATE "
            "SET earliest = min(earliest, excluded.earliest)",
            list(earliest.items()),
        )

    @staticmethod
    def _unreadable(position: int, topic: str) -> tuple[Any, ...]:
        """The audit row shown in place of an event that cannot be decoded."""
        kind = topic.rpartition(":")[2]
        return (
            position,
            "",
            "HBSE-013",
            kind,
            "",
            "unreadable",
            None,
            None,
            None,
            "failed",
            "",
            "event cannot be decoded; run `secrets audit verify`",
        )

    def _apply(self, cur: sqlite3.Cursor, position: int, event: Any, ts: str) -> tuple[Any, ...]:
        """Fold one event into the secret and operator views; return its audit row (the
        caller inserts the page's audit rows together). `ts` is `iso(event.timestamp)`."""
        kind = type(event).__qualname__
        operator = getattr(event, "operator", "")
        if kind == "ReadReceipt.SecretRead":
            # Most of any log (72% of the generated one): no view but the audit row.
            return (
                position,
                ts,
                READ_CODE,
                kind,
                operator,
                READ_ACTION,
                event.environment,
                event.service,
                event.name,
                "success",
                getattr(event, "correlation_id", ""),
                f"v{event.version}",
            )
        target: tuple[str | None, str | None, str | None] = (None, None, None)
        outcome = "success"
        detail = ""

        if kind.startswith("Secret."):
            oid = event.originator_id.hex
            if kind == "Secret.Registered":
                cur.execute(
                    "INSERT OR IGNORE INTO secrets_view (originator_id, environment, service, "
                    "name) VALUES (?, ?, ?, ?)",
                    (oid, event.environment, event.service, event.name),
                )
            target = self._secret_address(cur, oid)
            if kind == "Secret.VersionAdded":
                rotated_at = ts
                source = event.rolled_back_from
                if source is None:
                    # A set of the value already in use brings no new value (Secret.value_source).
                    current = cur.execute(
                        "SELECT current_version, fingerprint FROM secrets_view "
                        "WHERE originator_id = ?",
                        (oid,),
                    ).fetchone()
                    if current is not None and current[1] == event.fingerprint:
                        source = current[0]
                if source is not None:
                    # A rollback restores an old value: its age runs from that value's birth.
                    found = cur.execute(
                        "SELECT rotated_at FROM version_rotations WHERE originator_id = ? "
                        "AND version = ?",
                        (oid, source),
                    ).fetchone()
                    rotated_at = found[0] if found else ts
                cur.execute(
                    "INSERT OR REPLACE INTO version_rotations VALUES (?, ?, ?)",
                    (oid, event.version, rotated_at),
                )
                cur.execute(
                    "UPDATE secrets_view SET current_version = ?, fingerprint = ?, "
                    "last_change = ?, operator = ?, reason = ?, last_rotation = ?, deleted = 0, "
                    "destroyed = 0, retained = retained + 1 WHERE originator_id = ?",
                    (event.version, event.fingerprint, ts, operator, event.reason, rotated_at, oid),
                )
                code, action = REASON_CODES.get(event.reason, ("HBSE-002", event.reason))
                detail = f"v{event.version} [{event.fingerprint[:12]}]"
                if event.rolled_back_from is not None:
                    detail += f" from v{event.rolled_back_from}"
            else:
                code, action = EVENT_CODES.get(kind, ("HBSE-000", kind))
                if kind == "Secret.Deleted":
                    cur.execute(
                        "UPDATE secrets_view SET deleted = 1, last_change = ?, operator = ? "
                        "WHERE originator_id = ?",
                        (ts, operator, oid),
                    )
                elif kind == "Secret.Restored":
                    cur.execute(
                        "UPDATE secrets_view SET deleted = 0, last_change = ?, operator = ? "
                        "WHERE originator_id = ?",
                        (ts, operator, oid),
                    )
                elif kind == "Secret.Destroyed":
                    cur.execute(
                        "UPDATE secrets_view SET deleted = 1, destroyed = 1, retained = 0, "
                        "last_change = ?, operator = ? WHERE originator_id = ?",
                        (ts, operator, oid),
                    )
                    detail = "values of " + ", ".join(f"v{n}" for n in event.versions)
                elif kind == "Secret.VersionPruned":
                    cur.execute(
                        "UPDATE secrets_view SET retained = retained - 1 WHERE originator_id = ?",
                        (oid,),
                    )
                    detail = f"v{event.version}"
        elif kind.startswith("Operator."):
            oid = event.originator_id.hex
            code, action = EVENT_CODES.get(kind, ("HBSE-000", kind))
            if kind == "Operator.Registered":
                cur.execute(
                    "INSERT OR REPLACE INTO operators_view VALUES (?, ?, ?, ?)",
                    (oid, event.name, event.role, ts),
                )
                self._operator_names[oid] = event.name
                detail = f"{event.name} as {event.role}"
            else:
                name = self._operator_name(cur, oid)
                if kind == "Operator.RoleGranted":
                    cur.execute(
                        "UPDATE operators_view SET role = ?, updated_at = ? "
                        "WHERE originator_id = ?",
                        (event.role, ts, oid),
                    )
                    detail = f"{name} as {event.role}"
                elif kind == "Operator.Revoked":
                    cur.execute(
                        "UPDATE operators_view SET role = NULL, updated_at = ? "
                        "WHERE originator_id = ?",
                        (ts, oid),
                    )
                    detail = name
                elif kind == "Operator.SessionClosed":
                    detail = f"{name} ({event.reason})"
                else:
                    detail = name
        else:
            code, action = EVENT_CODES.get(kind, ("HBSE-000", kind))
            if kind == "Denial.AccessDenied":
                target = event.environment, event.service, event.name
                action, outcome, detail = event.action, "denied", event.reason
            elif kind == "Rejection.ValidationFailed":
                target = event.environment, event.service, event.name
                outcome, detail = "rejected", event.rule
            elif kind == "GrantRejection.GrantRefused":
                outcome = "rejected"
                # Recorded escaped (ledger.records.escaped): shown as recorded, not escaped twice.
                detail = f"{event.rule}: operator '{event.name}' role '{event.role}'"
            elif kind == "IntegrityAlarm.IntegrityCheckFailed":
                outcome, detail = "failed", f"{event.fault} at position {event.position}"
            elif kind == "Checkpoint.CheckpointSigned":
                detail = f"#{event.sequence} signs position {event.position}"
            elif kind == "LedgerSettings.SeniorEngineersChanged":
                detail = "still senior-engineer: " + ", ".join(event.senior_engineers)
            elif kind == "Incident.EmergencyRotationStarted":
                detail = event.reason
            elif kind == "Incident.EmergencyRotationCompleted":
                detail = json.dumps(
                    {
                        k: len(v)
                        for k, v in (
                            ("rotated", event.rotated),
                            ("needs_value", event.needs_value),
                            ("failed", event.failed),
                        )
                    },
                    sort_keys=True,
                )
        return (
            position,
            ts,
            code,
            kind,
            operator,
            action,
            *target,
            outcome,
            getattr(event, "correlation_id", ""),
            detail,
        )

    def _operator_name(self, cur: sqlite3.Cursor, oid: str) -> str:
        """The operator's name as operators_view holds it, or its id if not registered."""
        found = self._operator_names.get(oid)
        if found is not None:
            return found
        row = cur.execute(
            "SELECT name FROM operators_view WHERE originator_id = ?", (oid,)
        ).fetchone()
        if row is None:
            return oid
        name: str = row[0]
        self._operator_names[oid] = name
        return name

    def _secret_address(
        self, cur: sqlite3.Cursor, oid: str
    ) -> tuple[str | None, str | None, str | None]:
        found = self._addresses.get(oid)
        if found is not None:
            return found
        row = cur.execute(
            "SELECT environment, service, name FROM secrets_view WHERE originator_id = ?", (oid,)
        ).fetchone()
        if row is None:
            return (None, None, None)
        self._addresses[oid] = (row[0], row[1], row[2])
        return self._addresses[oid]

    # -- queries --------------------------------------------------------------------------

    def secrets(
        self, environment: str | None = None, include_deleted: bool = False
    ) -> list[SecretRow]:
        sql = (
            "SELECT environment, service, name, current_version, fingerprint, last_change, "
            "operator, reason, last_rotation, deleted, destroyed, retained FROM secrets_view "
            "WHERE current_version > 0"
        )
        params: list[Any] = []
        if environment is not None:
            sql += " AND environment = ?"
            params.append(environment)
        if not include_deleted:
            sql += " AND deleted = 0"
        sql += " ORDER BY environment, service, name"
        return [
            SecretRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4] or "",
                r[5] or "",
                r[6] or "",
                r[7] or "",
                r[8] or "",
                bool(r[9]),
                bool(r[10]),
                r[11],
            )
            for r in self._db.execute(sql, params)
        ]

    def audit(
        self,
        *,
        code: str | None = None,
        operator: str | None = None,
        service: str | None = None,
        name: str | None = None,
        environment: str | None = None,
        since: str | None = None,
        until: str | None = None,
        after_position: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRow]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("code", code),
            ("operator", operator),
            ("service", service),
            ("name", name),
            ("environment", environment),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("timestamp >= ?")
            params.append(since)
        if until is not None:
            clauses.append("timestamp <= ?")
            params.append(until)
        if after_position is not None:
            clauses.append("position > ?")
            params.append(after_position)
        sql = "SELECT * FROM audit_view"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY position " + ("DESC" if newest_first else "ASC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [AuditRow(*r) for r in self._db.execute(sql, params)]

    @property
    def db(self) -> sqlite3.Connection:
        """The views database, for caches that live beside the views (replay states)."""
        return self._db

    def position_at(self, when: str) -> int:
        """The last position whose event timestamp (ISO, as stored) is at or before `when`."""
        below = self.position() + 1  # positions below this are still to search
        covered = self._db.execute("SELECT since FROM audit_time_coverage").fetchone()
        if covered is not None:
            # Blocks wholly at or after `since` are complete; the last one with an event at
            # or before `when` holds the answer (every later event is stamped after it).
            since = int(covered[0])
            first = 0 if since <= 1 else -(-since // TIME_BLOCK)
            row = self._db.execute(
                "SELECT max(block) FROM audit_time_blocks WHERE block >= ? AND earliest <= ?",
                (first, when),
            ).fetchone()
            if row is not None and row[0] is not None:
                return self._last_at_or_before(when, (int(row[0]) + 1) * TIME_BLOCK)
            below = min(below, first * TIME_BLOCK)
        return self._last_at_or_before(when, below)

    def _last_at_or_before(self, when: str, below: int) -> int:
        row = self._db.execute(
            "SELECT max(position) FROM audit_view WHERE position < ? AND timestamp <= ? "
            "AND timestamp != ''",
            (below, when),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def unreadable(self, upto: int) -> list[int]:
        """Positions up to `upto` whose event could not be decoded when the views applied it."""
        rows = self._db.execute(
            "SELECT position FROM audit_view WHERE code = 'HBSE-013' AND action = 'unreadable' "
            "AND position <= ? ORDER BY position",
            (upto,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def event_count(self, event: str | None = None) -> int:
        """How many events of one kind (qualified class name) were applied; all if None."""
        if event is None:
            row = self._db.execute("SELECT COUNT(*) FROM audit_view").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM audit_view WHERE event = ?", (event,)
            ).fetchone()
        return int(row[0])

    def action_counts(self, events: list[str]) -> list[tuple[str, str, str | None, int]]:
        """(event, action, environment, count) for the given event kinds."""
        marks = ", ".join("?" for _ in events)
        return [
            (r[0], r[1], r[2], int(r[3]))
            for r in self._db.execute(
                f"SELECT event, action, environment, COUNT(*) FROM audit_view "
                f"WHERE event IN ({marks}) GROUP BY event, action, environment "
                "ORDER BY event, action, environment",
                events,
            )
        ]

    def operator_counts(self, event: str) -> list[tuple[str, str, str | None, int]]:
        """(operator, action, environment, count) of one event kind."""
        return [
            (r[0], r[1], r[2], int(r[3]))
            for r in self._db.execute(
                "SELECT operator, action, environment, COUNT(*) FROM audit_view "
                "WHERE event = ? GROUP BY operator, action, environment "
                "ORDER BY operator, action, environment",
                (event,),
            )
        ]

    def address_counts(self, event: str) -> list[tuple[str, str, str, int]]:
        """(environment, service, name, count) of one event kind that names a secret."""
        return [
            (r[0], r[1], r[2], int(r[3]))
            for r in self._db.execute(
                "SELECT environment, service, name, COUNT(*) FROM audit_view "
                "WHERE event = ? AND service IS NOT NULL "
                "GROUP BY environment, service, name ORDER BY environment, service, name",
                (event,),
            )
        ]

    def secret_status_counts(self) -> list[tuple[str, str, int]]:
        """(environment, status, count): status is active, deleted or destroyed."""
        return [
            (r[0], r[1], int(r[2]))
            for r in self._db.execute(
                "SELECT environment, CASE WHEN destroyed THEN 'destroyed' "
                "WHEN deleted THEN 'deleted' ELSE 'active' END AS status, COUNT(*) "
                "FROM secrets_view WHERE current_version > 0 "
                "GROUP BY environment, status ORDER BY environment, status"
            )
        ]

    def operators(self) -> list[tuple[str, str | None, str]]:
        return [
            (r[0], r[1], r[2])
            for r in self._db.execute(
                "SELECT name, role, updated_at FROM operators_view ORDER BY name"
            )
        ]
