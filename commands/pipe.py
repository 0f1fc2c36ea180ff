"""A closed output pipe (`secrets rotate-status | head -1`) ends the command as it ends any
Unix tool: quietly, killed by SIGPIPE (status 141 in a shell), never exit 1, which is a
finding (an overdue secret, a failed check), and never "internal error".

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError instead; the CLI
catches it at its edge (commands/main.py) and only then restores the default action, so a
closed pipe never stops a command between two writes of the ledger.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

# What a shell reports for a process killed by SIGPIPE; also the oplog's exit code for it.
CLOSED = 128 + signal.SIGPIPE


_started_on: tuple[int, int] | None = None


def _stdout_file() -> tuple[int, int] | None:
    try:
        found = os.fstat(1)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def watch() -> None:
    """Note which file stdout is, for `swapped_for_devnull`."""
    global _started_on
    _started_on = _stdout_file()


def swapped_for_devnull() -> bool:
    """Whether stdout was replaced by /dev/null since `watch`: what rich's Console does on a
    broken pipe (help is drawn by rich) before it raises SystemExit(1)."""
    if _started_on is None:
        return False
    now = _stdout_file()
    if now is None or now == _started_on:
        return False
    null = os.stat(os.devnull)
    return now == (null.st_dev, null.st_ino)


def flushed() -> bool:
    """Flush stdout; False when its reader has gone."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        return False
    return True


def end() -> None:
    """Leave as a process killed by SIGPIPE, with nothing more written to the closed pipe."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere at exit
    os.close(devnull)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(CLOSED)  # not reached: the signal's default action ends the process
