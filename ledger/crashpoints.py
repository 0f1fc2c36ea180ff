"""A test seam: kill this process at a named step boundary to prove crash recovery.

`SECRETS_LEDGER_CRASHPOINT=<name>` makes `reached(name)` send SIGKILL to the calling process
itself, as a power cut or OOM kill would. It can do nothing else: no other process, no other
signal, no state change, so leaving it set in production only makes that one command die.
The variable is read once per process; unset, each call is one comparison with None.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "SECRETS_LEDGER_CRASHPOINT"

# The boundaries the crash tests cover (docs/reliability.md lists what each proves).
POINTS = (
    "after-vault-put",
    "after-append",
    "after-prune-append",
    "after-destroy-append",
    "during-catch-up",
)

_armed: str | None = os.environ.get(VARIABLE) or None


def reached(name: str) -> None:
    if _armed is not None and _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
