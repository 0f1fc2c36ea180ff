"""Saved replay states (in views.sqlite), each stored as a small head and its secrets' parts,
parts shared between states.

A state of a large ledger is about 4 MiB of JSON (1M events, 5,000 secrets), and between two
saves 10,000 positions apart about one secret in five changes. Saved whole, a rebuild wrote
420 MiB of states, three quarters of views.sqlite, twice (WAL, then the file). Saved as parts,
a save writes only the secrets whose text changed plus the list of its parts; a load still
reads one state's parts directly (no chain of deltas to apply, which halved the speed of a
cold replay in a prototype: docs/performance.md).

A state is trusted only as it was saved: bound to the ledger's chain link at its position and
to an HMAC-SHA256 over that link, its head and the SHA-256 of each of its parts in order, under
a key derived from the ledger's fingerprint key (`SecretsLedger.replay_state_key`: only the
keychain holds it). A part missing, edited or shared by mistake fails the MAC, and so does a
state forged whole by a writer of views.sqlite (an unkeyed digest could be recomputed by
anyone: a forged state made `audit replay` and `who-can` show a senior-engineer nobody
appointed). Without the key (a command that does not open the keychain) states are neither
saved nor used, nor deleted: the replay folds from the first event.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import sqlite3
from collections.abc import Callable
from typing import Any

State = dict[str, Any]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replay_checkpoints (position INTEGER PRIMARY KEY, "
    "head TEXT NOT NULL, parts TEXT NOT NULL, link BLOB, digest TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS replay_parts (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
)

_COLUMNS = {
    "replay_checkpoints": ["position", "head", "parts", "link", "digest"],
    "replay_parts": ["id", "text"],
}
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_DIGEST_LABEL = b"secrets-ledger replay state v2\x00"
# A secret's part as known to this process: (its text, SHA-256 of the text, its row id once
# stored).
Part = tuple[str, bytes, int | None]


def prepare(db: sqlite3.Connection) -> None:
    """Create the tables. Saved states of an older layout (whole texts; before them, states
    not bound to the log), or tables not as created here, are dropped: they are a cache,
    saved again by the next replay."""
    for table, expected in _COLUMNS.items():
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        if columns and columns != expected:
            db.execute(f"DROP TABLE {table}")
    for statement in SCHEMA:
        db.execute(statement)


def clear(cur: sqlite3.Cursor) -> None:
    """Drop every saved state (a rebuild saves them again)."""
    cur.execute("DELETE FROM replay_checkpoints")
    cur.execute("DELETE FROM replay_parts")


def encode(state: State) -> str:
    """The state as one JSON text: what a loaded state encodes to, key for key."""
    return _DUMPS(state)


def _part_text(oid: str, secret: Any) -> str:
    return _DUMPS(oid) + ":" + _DUMPS(secret)


def _hash(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _head(state: State) -> str:
    # "secrets" stays in its place (as null) so that a loaded state keeps the key order.
    return _DUMPS({k: (None if k == "secrets" else v) for k, v in state.items()})


def _digest(key: bytes, link: bytes | None, head: str, hashes: list[bytes]) -> str:
    found = hmac.new(key, _DIGEST_LABEL, hashlib.sha256)
    found.update(len(link or b"").to_bytes(8, "big"))
    found.update(link or b"")
    encoded = head.encode()
    found.update(len(encoded).to_bytes(8, "big"))
    found.update(encoded)
    found.update(b"".join(hashes))
    return found.hexdigest()


class SavedStates:
    """The saved states of one connection, and the parts of the one state this process folds
    and saves again and again (`track`: the state it loaded or started from).

    Only the secrets marked `changed` since the last save are encoded again (every `Secret.*`
    event folded; a marked secret whose text is unchanged keeps its part). A state saved that
    is not the tracked one is encoded whole, so a missed mark can only come from a caller
    that folds the tracked state without marking."""

    def __init__(self, db: sqlite3.Connection, key: bytes | None) -> None:
        self.db = db
        self.key = key
        prepare(db)
        self._state: State | None = None
        self._parts: dict[str, Part] = {}
        self._changed: set[str] = set()

    def track(self, state: State, parts: dict[str, Part] | None = None) -> None:
        self._state, self._parts, self._changed = state, parts or {}, set()

    def changed(self, oid: str) -> None:
        self._changed.add(oid)

    def save(self, state: State, link: bytes | None) -> None:
        """Save `state` (taken at its position, whose chain link is `link`) in one transaction
        (a savepoint inside the caller's), unless a state is saved there already: a good one
        is as good, and a bad one is deleted by the first load that meets it, before the
        replay that loaded it saves again. So a process whose ids went stale (another one
        rebuilt) cannot overwrite a good state, and no overwritten state leaves parts behind.
        Without the key nothing is saved (no load could believe it)."""
        key = self.key
        if key is None:
            self._changed.clear()
            return
        if state is not self._state:
            self.track(state)
        secrets: dict[str, Any] = state["secrets"]
        parts = self._parts
        for oid in self._changed:
            secret = secrets.get(oid)
            if secret is not None:
                text = _part_text(oid, secret)
                known = parts.get(oid)
                if known is None or known[0] != text:
                    parts[oid] = (text, _hash(text), None)
        self._changed.clear()
        cur = self.db.cursor()
        cur.execute("SAVEPOINT replay_state")
        try:
            taken = cur.execute(
                "SELECT 1 FROM replay_checkpoints WHERE position = ?", (state["position"],)
            ).fetchone()
            if taken is None:
                ids: list[int] = []
                hashes: list[bytes] = []
                for oid, secret in secrets.items():
                    known = parts.get(oid)
                    if known is None:
                        text = _part_text(oid, secret)
                        known = (text, _hash(text), None)
                    stored = known[2]
                    if stored is None:
                        cur.execute("INSERT INTO replay_parts (text) VALUES (?)", (known[0],))
                        stored = cur.lastrowid
                        assert stored is not None
                        parts[oid] = (known[0], known[1], stored)
                    ids.append(stored)
                    hashes.append(known[1])
                head = _head(state)
                cur.execute(
                    "INSERT INTO replay_checkpoints (position, head, parts, link, digest) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (state["position"], head, _DUMPS(ids), link, _digest(key, link, head, hashes)),
                )
        except BaseException:
            cur.execute("ROLLBACK TO replay_state")
            cur.execute("RELEASE replay_state")
            # The ids just given to parts are gone with the savepoint: know nothing stored.
            self._state, self._parts = None, {}
            raise
        cur.execute("RELEASE replay_state")

    def nearest(self, position: int, link_at: Callable[[int], bytes | None]) -> State | None:
        """The saved state nearest at or before `position` that is as it was saved and
        belongs to this log (`link_at(p)`: the chain link at p now), tracked; None if none.
        Those that are not (another history, damaged, edited) are deleted on the way, and
        then the parts no state lists. Without the key: None, and nothing is deleted."""
        if self.key is None:
            return None
        deleted = False
        try:
            while True:
                row = self.db.execute(
                    _SELECT_STATE + "WHERE position <= ? ORDER BY position DESC LIMIT 1",
                    (position,),
                ).fetchone()
                if row is None:
                    return None
                at = row[0]
                state = self._load(row, link_at(at))
                if state is not None:
                    return state
                # Only the row as read: a good one saved there meanwhile stays.
                self.db.execute(
                    "DELETE FROM replay_checkpoints WHERE position = ? "
                    "AND CAST(digest AS BLOB) IS ?",
                    (at, row[4]),
                )
                deleted = True
                position = at - 1
        finally:
            if deleted:
                self._collect()

    def _collect(self) -> None:
        # Lists that are not JSON belong to states no load will accept: their parts go too.
        # Parts left behind only take space, so a SQLite without its JSON functions (built
        # in since 3.38; loads then refuse every state) keeps them rather than failing.
        with contextlib.suppress(sqlite3.OperationalError):
            self.db.execute(
                "DELETE FROM replay_parts WHERE id NOT IN (SELECT j.value FROM replay_checkpoints "
                "AS c, json_each(CASE WHEN json_valid(c.parts) THEN c.parts ELSE '[]' END) AS j)"
            )

    def read(self, position: int) -> State | None:
        """The state saved at `position` if it is as it was saved (its chain link is not
        compared with the log's: `nearest` does that), else None; nothing is deleted."""
        if self.key is None:
            return None
        row = self.db.execute(_SELECT_STATE + "WHERE position = ?", (position,)).fetchone()
        return None if row is None else self._load(row, row[3])

    def _load(self, row: tuple[Any, ...], current: bytes | None) -> State | None:
        """The state of a `_SELECT_STATE` row if it is as it was saved and its link is
        `current`, tracked; None for anything else, however the row was damaged."""
        at, raw_head, raw_listed, link, raw_digest = row
        head, listed, digest = _text(raw_head), _text(raw_listed), _text(raw_digest)
        if link != current or head is None or listed is None or digest is None:
            return None
        # Checked before parsing: the list is not under the digest, and a deep nesting of
        # brackets would raise RecursionError out of `json.loads`.
        if _ID_LIST.fullmatch(listed) is None:
            return None
        ids = json.loads(listed)
        if len(set(ids)) != len(ids):
            return None  # a save lists each part once; a repeated id could make a load huge
        try:
            # The list drives the loop (CROSS JOIN), so rows come in its order; checked below.
            rows = self.db.execute(
                "SELECT j.value, p.text FROM json_each(?) AS j "
                "CROSS JOIN replay_parts AS p ON p.id = j.value",
                (listed,),
            ).fetchall()
        except sqlite3.Error:  # a damaged byte in a part: "Could not decode to UTF-8"
            return None
        if [r[0] for r in rows] != ids:
            return None  # a part missing
        texts: list[str] = [r[1] for r in rows]
        if any(type(t) is not str for t in texts):
            return None
        hashes = [_hash(t) for t in texts]
        key = self.key
        # Compared as bytes: `compare_digest` of two str raises TypeError for non-ASCII text,
        # which an edited row may hold.
        if key is None or not hmac.compare_digest(
            digest.encode(), _digest(key, link, head, hashes).encode()
        ):
            return None
        try:
            state = json.loads(head)
            secrets = json.loads("{" + ",".join(texts) + "}")
        except (ValueError, RecursionError):
            return None
        if (
            type(state) is not dict
            or state.get("position") != at
            or "secrets" not in state
            or type(secrets) is not dict
            or len(secrets) != len(ids)
        ):
            return None
        state["secrets"] = secrets
        parts = zip(texts, hashes, ids, strict=True)
        self.track(state, dict(zip(secrets, parts, strict=True)))
        return state


# Text columns are read as bytes and decoded here: a damaged byte would otherwise raise out
# of the fetch (sqlite3 decodes TEXT as UTF-8).
_SELECT_STATE = (
    "SELECT position, CAST(head AS BLOB), CAST(parts AS BLOB), link, CAST(digest AS BLOB) "
    "FROM replay_checkpoints "
)
_ID_LIST = re.compile(r"\[(?:[0-9]{1,18}(?:,[0-9]{1,18})*)?\]")


def _text(value: Any) -> str | None:
    if type(value) is not bytes:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None
