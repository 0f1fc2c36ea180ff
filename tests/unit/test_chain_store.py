"""The hash chain on a real SQLite file: written with the events, verified end to end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ledger.secret import Secret
from ledger.store.chain import verify
from ledger.store.opening import open_ledger
from ledger.store.sqlite import ChainedSQLiteApplicationRecorder
from ledger.vault.memory import MemoryKeyring

_KEEP: list[object] = []  # the application owns the connection pool: keep it alive


def _ledger_with_events(home: Path, count: int) -> ChainedSQLiteApplicationRecorder:
    ledger = open_ledger(home, create=True, backend=MemoryKeyring())
    for n in range(count):
        secret = Secret("default", "svc", f"key{n}")
        secret.add_version(f"{n:064x}", "manual", "h")
        ledger.save(secret)
    _KEEP.append(ledger)
    recorder = ledger.recorder
    assert isinstance(recorder, ChainedSQLiteApplicationRecorder)
    return recorder


def test_every_event_gets_a_link_and_an_untouched_ledger_verifies(tmp_path: Path) -> None:
    recorder = _ledger_with_events(tmp_path, 5)
    report, verified = verify(recorder.iter_rows(), recorder.iter_links())
    assert report.ok and report.events_checked == 10 and len(verified) == 10


def test_an_edited_event_is_detected_at_its_position(tmp_path: Path) -> None:
    recorder = _ledger_with_events(tmp_path, 5)
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        db.execute(
            "UPDATE stored_events SET state = replace(state, 'manual', 'rotate') WHERE rowid = 4"
        )
    report, _ = verify(recorder.iter_rows(), recorder.iter_links())
    assert report.fault is not None
    assert (report.fault.position, report.fault.kind) == (4, "edited")


def test_a_deleted_or_inserted_event_is_detected(tmp_path: Path) -> None:
    recorder = _ledger_with_events(tmp_path, 3)
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        db.execute("DELETE FROM stored_events WHERE rowid = 2")
    report, _ = verify(recorder.iter_rows(), recorder.iter_links())
    assert report.fault is not None and (report.fault.position, report.fault.kind) == (2, "deleted")

    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        db.execute("DELETE FROM event_chain WHERE notification_id = 2")
        db.execute("DELETE FROM event_chain WHERE notification_id = 6")
    report, _ = verify(recorder.iter_rows(), recorder.iter_links(), consecutive_ids=True)
    # Row and link gone together: the hole in SQLite's ids gives the deletion away.
    assert report.fault is not None and (report.fault.position, report.fault.kind) == (2, "deleted")


def test_link_rows_roll_back_with_a_failed_insert(tmp_path: Path) -> None:
    recorder = _ledger_with_events(tmp_path, 1)
    ledger = open_ledger(tmp_path, backend=MemoryKeyring())
    _KEEP.append(ledger)
    stale = Secret("default", "svc", "key0")  # version 1 again: the insert must conflict
    stale.add_version("f" * 64, "manual", "h")
    try:
        ledger.save(stale)
    except Exception as exc:  # the library's IntegrityError
        assert type(exc).__name__ == "IntegrityError"
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        events = db.execute("SELECT count(*) FROM stored_events").fetchone()[0]
        links = db.execute("SELECT count(*) FROM event_chain").fetchone()[0]
    assert events == links == 2
    report, _ = verify(recorder.iter_rows(), recorder.iter_links())
    assert report.ok
