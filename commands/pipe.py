"""A closed output pipe (`secrets rotate-status | head -1`) ends the command as it ends any
Unix tool: quietly, killed by SIGPIPE (status 141 in a shell), never exit 1, which is a
finding (an overdue secret, a failed check), and never "internal error".

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError instead; the CLI
catches it at its edge (commands/main.py: `PipeClosed`, the final flush, rich's own handling
of help) and only then restores the default action, so a closed pipe never stops a command
between two writes of the ledger. Imported only then.
"""

from __future__ import annotations

import os
import signal
import sys


def end() -> None:
    """Leave as a process killed by SIGPIPE, with nothing more written to the closed pipe."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere at exit
    os.close(devnull)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(128 + signal.SIGPIPE)  # not reached: the signal's default action ends the process
