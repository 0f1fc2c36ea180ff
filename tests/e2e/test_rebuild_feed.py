"""A rebuild read by a forked child process (projections/rebuild_feed.py) gives the views a
rebuild in one process gives, whatever happens to the child, on a real SQLite file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from projections import views as views_module

REPO = Path(__file__).resolve().parents[2]


def test_the_cli_rebuilds_a_log_long_enough_for_the_feed(tmp_path: Path) -> None:
    """`secrets projections rebuild` as a user runs it, on a log past `FEED_FROM`: the views
    rebuilt beside a child process are those the catch-up had built."""
    from tests.benchmarks.generate_ledger import generate

    _, meta = generate(tmp_path / "generated", views_module.FEED_FROM + 2000, 100, 6, seed=5)
    assert meta["events"] >= views_module.FEED_FROM
    env = {
        **os.environ,
        "SECRETS_LEDGER_HOME": meta["home"],
        "SECRETS_LEDGER_TOKEN": meta["token"],
    }
    done = subprocess.run(
        [sys.executable, "-m", "commands", "projections", "rebuild"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # The log and the command's own session event, checked against the views as they were.
    found = re.fullmatch(r"rebuilt views from (\d+) events in [0-9.]+s; identical\n", done.stdout)
    assert found is not None, done.stdout
    assert int(found[1]) > meta["events"]
    assert "Traceback" not in done.stderr
