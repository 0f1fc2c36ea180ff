"""A rebuild read by a forked child process (projections/rebuild_feed.py) gives the views a
rebuild in one process gives, whatever happens to the child, on a real SQLite file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from ledger.application import SecretsLedger
from projections import views_catchup
from projections.views import Views
from tests.unit.test_views import _generated_history

FEED = "secrets-rebuild-feed"


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


def test_no_feed_is_started_where_the_child_could_build_no_audit_row(
    tmp_path: Path, small_pages: None
) -> None:
    """Without the reader's shortcut (a cipher, a compressor, another transcoder) every row
    would cross the pipe as it is: the rebuild reads in one process."""
    ledger = _generated_history(tmp_path)
    views = Views(ledger, path=tmp_path / "fed.sqlite")
    views._reader.shortcut = False
    seen: list[object] = []
    assert views.rebuild(lambda applied: seen.extend(_feeds()), feed_from=0) > 0
    assert seen == []
    assert views.digest() == _one_process_digest(ledger, tmp_path / "one.sqlite")
