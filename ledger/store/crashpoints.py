"""A test seam: kill this process at a named step boundary to prove crash recovery.

`SECRETS_LEDGER_CRASHPOINT=<name>` makes `reached(name)` send SIGKILL to the calling process
itself, as a power cut or OOM kill would; `<name>@<n>` waits for the n-th time the boundary is
reached (the middle of a batch). It can do nothing else: no other process, no other signal, no
state change, so leaving it set in production only makes that one command die.
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


def _parse(text: str) -> tuple[str | None, int]:
    name, _, nth = text.strip().partition("@")
    if not name:
        return None, 0
    return name, int(nth) if nth.isdigit() and int(nth) > 0 else 1


_armed, _remaining = _parse(os.environ.get(VARIABLE, ""))


def reached(name: str) -> None:
    global _remaining
    if _armed is None or _armed != name:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
