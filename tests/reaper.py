"""The safety net behind every service the tests start: a watcher that outlives its test process.

    python tests/reaper.py        (stdin: a pipe from the test process)

tests/infra.py starts one per service (`Reaper`) with the write end of a pipe kept in the test
process, and writes to it, one JSON object a line, what to clean: `{"pgids": [...],
"commands": [[...]], "paths": [...]}` (the directory first, the daemons' ids once they exist).
The watcher blocks reading that pipe. A clean stop writes `disarm` first: the
watcher exits and touches nothing. Any other way out of the test process (an exception past the
finalizers, SIGKILL, an xdist worker torn down mid-test, os._exit) closes the pipe without that
word: the watcher then kills the named process groups, runs the stop commands (pg_ctl, tmux
kill-server) and removes the directories, so no daemon and no temp dir outlives the run.

Stdlib only, and its own session: a Ctrl-C sent to the terminal's process group must not kill
the watcher before it has cleaned up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

DISARM = b"disarm"


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)


def clean(plan: dict[str, list[object]]) -> None:
    for pgid in plan.get("pgids", []):
        _kill_group(int(str(pgid)))
    for command in plan.get("commands", []):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(part) for part in command],  # type: ignore[attr-defined]
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
    for path in plan.get("paths", []):
        shutil.rmtree(str(path), ignore_errors=True)


def main() -> None:
    # Signals meant for the test run are not for the watcher: it acts on the pipe alone.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    plan: dict[str, list[object]] = {"pgids": [], "commands": [], "paths": []}
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line == DISARM:
            return
        with contextlib.suppress(ValueError):
            for key, values in json.loads(line).items():
                plan.setdefault(key, []).extend(values)
    clean(plan)


if __name__ == "__main__":
    main()
