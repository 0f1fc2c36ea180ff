"""Catching the views up with the log, and rebuilding them from it (with its tuning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import MapperDeserialisationError

from ledger.store import crashpoints
from projections import event_reader, rebuild_feed, replay, replay_states
from projections.views_fold import ViewsFold
from projections.views_schema import (
    AUDIT_INDEXES,
    AUDIT_INSERT,
    SCHEMA,
    TRACKING_NAME,
    VIEW_TABLES,
)

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


class ViewsCatchUp(ViewsFold):
    """`catch_up` and `rebuild` of `Views`."""

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
        folded_classes = replay.FOLDED
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
                        # Only the events `replay.fold` reads more of than the position and
                        # time are folded; the others (reads, denials: most of a log) only
                        # move those two, below.
                        if fold is not None and type(event) in folded_classes:
                            oid = event.originator_id.hex
                            if replay.fold(fold, at, event, oid, ts) and replayer is not None:
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
                self._note_reads(cur, audit_rows)
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
