"""The views' SQLite file: its tables and format, opening it (and telling a damaged one), and
the connection that the catch-up (projections/views_catchup.py) writes and the queries
(projections/views_queries.py) read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from projections import replay_states

VIEWS_FILE = "views.sqlite"
TRACKING_NAME = "views"
# What a view row holds. Raise it with any change to what `_apply` writes: views of another
# format are emptied on open and caught up again from the log (`Views._upgrade`).
# 2: a refused grant's detail shows the recorded (already escaped) name and role as they are.
# 3: a version with its predecessor's fingerprint keeps the predecessor's `last_rotation`
#    (saved replay states, folded by the old rule, are dropped with the rows).
# 4: each secret's last read (`last_read`, `last_reader`, `last_read_version`).
VIEWS_FORMAT = 4
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
    retained INTEGER NOT NULL DEFAULT 0,
    last_read TEXT, last_reader TEXT, last_read_version INTEGER
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
        problem = schema_problem(db)
        if problem is not None:
            raise DamagedViews(problem)
        db.execute("PRAGMA journal_mode=WAL")
        # One transaction: a process opening the file meanwhile sees all the tables or none,
        # never a table missing beside the others (which `schema_problem` calls damage).
        db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
        replay_states.prepare(db)
        db.execute("SELECT position FROM tracking LIMIT 1").fetchall()
    except BaseException:
        db.close()
        raise
    return db


_Entry = tuple[str, str, str, str | None]
_expected: frozenset[_Entry] | None = None


def _expected_schema() -> frozenset[_Entry]:
    """Every entry of sqlite_master our schema makes, as SQLite words it: built once in
    memory from the same statements, so no hand-kept copy can drift from them."""
    global _expected
    if _expected is None:
        db = sqlite3.connect(":memory:")
        try:
            db.executescript(SCHEMA)
            replay_states.prepare(db)
            _expected = frozenset(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        finally:
            db.close()
    return _expected


def schema_problem(db: sqlite3.Connection) -> str | None:
    """What in the file's schema is not ours, or None. A writer of views.sqlite can drop a
    table (the catch-up would then apply the log again over rows it holds), replace one with
    other columns, or add a trigger or view that fails every write: each made the views
    fail as "the event store failed". Anything we did not create, or a view table missing
    beside the others, is damage. Indexes and the replay tables may be missing (an
    interrupted rebuild, an older file): the open creates them. One query of sqlite_master."""
    found = set(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    if not found:
        return None  # a new file
    extra = found - _expected_schema()
    if extra:
        names = ", ".join(sorted(f"{kind} {name}" for kind, name, _, _ in extra))
        return f"its schema is not as created ({names[:200]})"
    tables = {name for kind, name, _, _ in found if kind == "table"}
    missing = [t for t in VIEW_TABLES if t not in tables]
    if missing and len(missing) < len(VIEW_TABLES):
        return f"its table {missing[0]} is missing"
    return None


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
        if problem is None:
            problem = schema_problem(db)
    finally:
        db.close()
    if problem is None and suspect is None:
        return None
    return "; ".join(p for p in (suspect, problem) if p)


def tracking_sane(db: sqlite3.Connection | sqlite3.Cursor) -> bool:
    """Whether the tracked position is a position (an edited file may hold text, a BLOB or a
    negative number there)."""
    row = db.execute(
        "SELECT typeof(position) = 'integer' AND position >= 0 FROM tracking WHERE name = ?",
        (TRACKING_NAME,),
    ).fetchone()
    return row is None or bool(row[0])


def discard(path: Path) -> None:
    """Remove a views file and its WAL: the next open starts empty and catches up."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        (path.parent / name).unlink(missing_ok=True)


class ViewsDatabase:
    """The open views file: one connection, written one transaction at a time."""

    _db: sqlite3.Connection

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
