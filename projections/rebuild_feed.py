"""A rebuild's reading, done beside it on a second core.

A rebuild spends more than a third of its time reading stored rows and building the audit
rows of the events that change no view but the audit log (reads, denials, validation
failures: 85% of a busy log; `EventReader.audit_row`). That work needs nothing from the
events before it, so a child process forked at the start of a rebuild does it, a page ahead,
while the parent applies the other events, writes and commits. The parent stays the only
writer: each page is applied and committed by it in one transaction, as without a feed.

The feed is an optimisation only. The parent takes a page from it only when the page starts
where the parent's own tracking position is; anything else (another process caught up in
between, the child died or was killed, the log ended) and the parent reads the rest itself,
the same way. Items are what `items` makes of rows in either process, so the views are the
same (tests/test_rebuild_feed.py compares them).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from projections.event_reader import EventReader, Row

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

# A page item: an audit row `EventReader.audit_row` built (audit_view's 12 values), or the
# stored row itself (ROW_WIDTH values) for the parent to decode and apply.
Item = tuple[Any, ...]
ROW_WIDTH = 5
RowSelect = Callable[[int, int], list[Row]]


def items(reader: EventReader, rows: list[Row]) -> list[Item]:
    """The page's items: each row's audit row where the shortcut builds it, else the row."""
    quick = reader.audit_row
    return [quick(row) or row for row in rows]


def _produce(
    inbox: Connection,
    out: Connection,
    reader: EventReader,
    open_select: Callable[[], RowSelect],
    start: int,
    head: int,
    page: int,
) -> None:
    """The child: pages after `start` up to `head`, then an empty page. Blocks while the
    parent has not taken the previous page (the pipe holds less than one), so at most two
    pages are in flight. Ctrl-C is the parent's to handle (it stops this process); a parent
    gone or anything else going wrong ends this one quietly: the parent, if any, reads the
    rest itself."""
    # SIGINT was blocked before the fork (`PageFeed.__init__`): ignored from here on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # The parent's end, inherited by the fork: held open here, a send to a parent that died
    # would wait for this process itself to read it, for ever.
    inbox.close()
    try:
        select = open_select()
        while start < head:
            rows = [row for row in select(start, page) if row[0] <= head]
            if not rows:
                break
            out.send(items(reader, rows))
            start = rows[-1][0]
        out.send([])
    except Exception:  # see the docstring: the parent reads the rest itself
        os._exit(1)
    finally:
        out.close()


class PageFeed:
    """Pages of items up to `head`, prepared by a forked child process; `convert` is what the
    recorder makes of a stored originator id (for the rows the parent decodes)."""

    @staticmethod
    def useful(reader: EventReader) -> bool:
        """Whether a feed can help: the child builds audit rows only through the reader's
        shortcut (without it every row would cross the pipe as it is), and needs fork."""
        import multiprocessing  # here: every catch-up imports this module, few rebuild

        return reader.shortcut and "fork" in multiprocessing.get_all_start_methods()

    def __init__(
        self,
        reader: EventReader,
        open_select: Callable[[], RowSelect],
        convert: Callable[[Any], Any],
        head: int,
        page: int,
        start: int = 0,
    ) -> None:
        self.convert = convert
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._pipe: Connection | None
        self._pipe, out = context.Pipe(duplex=False)
        self._child = context.Process(
            target=_produce,
            args=(self._pipe, out, reader, open_select, start, head, page),
            name="secrets-rebuild-feed",
            daemon=True,
        )
        self._next = start
        try:
            # Ctrl-C between the fork and the child's SIG_IGN would print the child's
            # traceback; held back here, it reaches this process once the child runs.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self._child.start()
            finally:
                out.close()
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        except BaseException:
            # The caller never gets this feed to close: a child started is stopped here.
            self.close()
            raise

    def take(self, start: int) -> list[Item] | None:
        """The page after `start`; None, for good, once the feed cannot give that one."""
        if self._pipe is None:
            return None
        if start != self._next:
            self.close()
            return None
        try:
            page: list[Item] = self._pipe.recv()
        except (EOFError, OSError):
            page = []
        if not page:
            self.close()
            return None
        self._next = page[-1][0]
        return page

    def close(self) -> None:
        """Stop the child (it may be blocked sending a page no one will take) and reap it."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._child.pid is None:
            return  # never started
        if self._child.is_alive():
            self._child.kill()
        self._child.join()
