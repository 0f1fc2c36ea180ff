"""A rebuild read by a forked child process (projections/rebuild_feed.py) gives the views a
rebuild in one process gives, whatever happens to the child, on a real SQLite file."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledger import context
from ledger.application import SecretsLedger
from ledger.records import IntegrityAlarm
from projections import views_catchup
from projections.rebuild_feed import PageFeed, items
from projections.views import Views
from tests.unit.test_views import _generated_history

FEED = "secrets-rebuild-feed"
REPO = Path(__file__).resolve().parents[2]


def _tampered_history(tmp_path: Path) -> SecretsLedger:
    """The generated history with stored rows no shortcut takes: a read receipt stamped in
    another offset (decoded by the mapper), one whose bytes no longer decode (the unreadable
    row) and one with an upper-case originator id."""
    ledger = _generated_history(tmp_path)
    db = sqlite3.connect(ledger.home / "ledger.sqlite", isolation_level=None)
    reads = [
        r[0]
        for r in db.execute(
            "SELECT rowid FROM stored_events WHERE topic LIKE '%SecretRead' ORDER BY rowid"
        )
    ]
    assert len(reads) > 300
    db.execute(
        "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), '+00:00', "
        "'+01:00') AS BLOB) WHERE rowid = ?",
        (reads[100],),
    )
    db.execute("UPDATE stored_events SET state = x'7b22ff' WHERE rowid = ?", (reads[200],))
    db.execute(
        "UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = ?",
        (reads[300],),
    )
    db.close()
    return ledger


def _feeds() -> list[multiprocessing.process.BaseProcess]:
    return [c for c in multiprocessing.active_children() if c.name == FEED]


def _one_process_digest(ledger: SecretsLedger, path: Path) -> str:
    views = Views(ledger, path=path)
    views.rebuild(feed_from=10**9)
    digest = views.digest()
    views.close()
    return digest


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dozens of pages from a small history: the feed is taken page after page.
    monkeypatch.setattr(views_catchup, "PAGE", 100)


def test_a_fed_rebuild_gives_the_views_of_a_rebuild_in_one_process(
    tmp_path: Path, small_pages: None
) -> None:
    ledger = _tampered_history(tmp_path)
    expected = _one_process_digest(ledger, tmp_path / "one.sqlite")
    seen: list[int] = []

    def progress(applied: int) -> None:
        seen.extend(c.pid or 0 for c in _feeds())

    views = Views(ledger, path=tmp_path / "fed.sqlite")
    assert views.rebuild(progress, feed_from=0) == ledger.recorder.max_notification_id()
    assert seen and os.getpid() not in seen  # a child read the log
    assert _feeds() == []  # and was reaped
    assert views.digest() == expected
    # The tampered rows are shown as a rebuild in one process shows them.
    assert len(views.audit(code="HBSE-013")) >= 1


def test_a_rebuild_whose_feed_was_killed_reads_the_rest_itself(
    tmp_path: Path, small_pages: None
) -> None:
    ledger = _tampered_history(tmp_path)
    expected = _one_process_digest(ledger, tmp_path / "one.sqlite")
    killed: list[int] = []

    def progress(applied: int) -> None:
        for child in _feeds():
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            killed.append(applied)

    views = Views(ledger, path=tmp_path / "fed.sqlite")
    assert views.rebuild(progress, feed_from=0) == ledger.recorder.max_notification_id()
    assert killed and killed[0] < ledger.recorder.max_notification_id() // 2
    assert views.digest() == expected


def test_events_recorded_during_a_fed_rebuild_are_applied_after_the_feed_ends(
    tmp_path: Path, small_pages: None
) -> None:
    ledger = _generated_history(tmp_path)
    recorded: list[int] = []

    def progress(applied: int) -> None:
        if not recorded:
            with context.acting_as("admin"):
                ledger.save(IntegrityAlarm(1, "hash-mismatch", "recorded mid-rebuild"))
            recorded.append(ledger.recorder.max_notification_id() or 0)

    views = Views(ledger, path=tmp_path / "fed.sqlite")
    assert views.rebuild(progress, feed_from=0) == recorded[0]
    (alarm,) = views.audit(after_position=recorded[0] - 1)
    assert (alarm.code, alarm.detail) == ("HBSE-013", "hash-mismatch at position 1")
    assert views.digest() == _one_process_digest(ledger, tmp_path / "one.sqlite")


def test_the_feed_gives_only_the_page_asked_for_and_then_stops(tmp_path: Path) -> None:
    ledger = _generated_history(tmp_path)
    recorder = ledger.recorder
    views = Views(ledger, path=tmp_path / "v.sqlite")
    open_select = recorder.row_opener()  # type: ignore[attr-defined]
    head = recorder.max_notification_id()
    feed = PageFeed(views._reader, open_select, recorder.convert_originator_id, head, 500)  # type: ignore[attr-defined]
    first = feed.take(0)
    assert first == items(views._reader, recorder.select_rows(0, 500))  # type: ignore[attr-defined]
    # Another process caught up meanwhile: the page after 500 is not the one asked for.
    assert feed.take(700) is None
    assert _feeds() == []
    assert feed.take(500) is None  # for good


def test_a_crash_during_a_fed_rebuild_leaves_no_reader_behind(tmp_path: Path) -> None:
    """The parent killed mid-rebuild (a power cut, an OOM kill): its child stops too, and the
    next catch-up completes the views."""
    ledger = _generated_history(tmp_path)
    done = _rebuild_elsewhere(
        ledger,
        tmp_path / "fed.sqlite",
        """
        def progress(applied):
            for child in multiprocessing.active_children():
                print(child.pid, flush=True)
        views.rebuild(progress, feed_from=0)
        """,
        SECRETS_LEDGER_CRASHPOINT="during-catch-up@1500",
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = {int(line) for line in done.stdout.split()}
    assert pids
    assert "Traceback" not in done.stderr
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, "the rebuild's reader outlived it"
        time.sleep(0.05)
    views = Views(ledger, path=tmp_path / "fed.sqlite")
    assert 0 < views.position() < ledger.recorder.max_notification_id()
    views.catch_up()
    assert views.digest() == _one_process_digest(ledger, tmp_path / "one.sqlite")


def _rebuild_elsewhere(
    ledger: SecretsLedger, views_path: Path, body: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `body` in a Python process of its own, in a session of its own (so that a signal to
    its process group reaches it and its feed only), with `views` open on `views_path` and
    pages of 100 events."""
    script = textwrap.dedent(
        f"""
        import multiprocessing, os, signal
        # As in a terminal: a process started in the background of a script (CI) inherits
        # SIGINT ignored, and Python then raises no KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from pathlib import Path
        from ledger.store.opening import open_ledger
        from ledger.vault.memory import MemoryKeyring
        from projections import views_catchup
        from projections.views import Views
        views_catchup.PAGE = 100
        ledger = open_ledger(Path({str(ledger.home)!r}), backend=MemoryKeyring())
        views = Views(ledger, path=Path({str(views_path)!r}))
        """
    ) + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_ctrl_c_during_a_fed_rebuild_stops_both_processes_quietly(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole foreground process group, the feed's child included: the
    rebuild stops with KeyboardInterrupt, the child is gone without a word, and the views
    catch up from where the rebuild stopped."""
    ledger = _generated_history(tmp_path)
    done = _rebuild_elsewhere(
        ledger,
        tmp_path / "fed.sqlite",
        """
        def progress(applied):
            if applied == 1000:
                assert multiprocessing.active_children()
                os.killpg(0, signal.SIGINT)  # what a terminal sends on Ctrl-C
        try:
            views.rebuild(progress, feed_from=0)
        except KeyboardInterrupt:
            print("interrupted", len(multiprocessing.active_children()), flush=True)
        """,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "interrupted 0\n", "")
    views = Views(ledger, path=tmp_path / "fed.sqlite")
    assert 0 < views.position() < ledger.recorder.max_notification_id()
    views.catch_up()
    assert views.digest() == _one_process_digest(ledger, tmp_path / "one.sqlite")
