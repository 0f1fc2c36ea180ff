"""A host-local journal of keychain writes whose event may not have landed.

The keychain and the event store cannot share a transaction. Before a value is written to the
keychain an intent file naming its entry (never the value) is created; it is removed once the
event is saved or the entry cleaned up. An intent left behind (a crash, a keychain that failed
during clean-up) is how `secrets doctor` finds orphaned entries on keychains that cannot list
their entries. An intent also names its writer (pid and process start time), so that `doctor`
never removes the value of a write that is still running.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ledger.entries import parse_entry_name
from ledger.errors import LedgerUnavailable
from ledger.home_files import UnsafeFile, read_regular

# A torn intent (empty or half-written JSON) this young may be one a writer is writing now.
TORN_GRACE_SECONDS = 60.0
# An intent names a namespace, an entry, a pid and a start time (a few hundred bytes).
INTENT_FILE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Intent:
    path: Path
    namespace: str
    entry: str
    pid: int | None = None  # the writing process; None in intents written before it was kept
    started: int | None = None  # its start time (Linux clock ticks since boot), if known
    # Why the file is no intent a writer wrote (a pid no process can have, ...): `doctor`
    # reports it and `--repair` removes it, never acting on the entry it names.
    damage: str | None = None


# pid_t is a signed 32-bit int on every platform the ledger runs on: `os.kill` raises
# OverflowError beyond it, so a larger stored pid is damage, not a process to ask about.
_PID_MAX = 2**31 - 1
# A start time in clock ticks since boot; SQLite-sized, as far as a writer could ever record.
_STARTED_MAX = 2**63 - 1


def _field_damage(pid: object, started: object) -> str | None:
    """What is wrong with an intent's writer fields (None: absent or as a writer writes them)."""
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        return "its writer pid is not a number"
    if isinstance(pid, int) and not 0 < pid <= _PID_MAX:
        return "its writer pid is out of range"
    if started is not None and (
        isinstance(started, bool)
        or not isinstance(started, int)
        or not 0 <= started <= _STARTED_MAX
    ):
        return "its writer start time is not a number in range"
    return None


def process_start(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process from /proc, or None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields resume after the last.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


@functools.cache
def _own_start(pid: int) -> int | None:
    # Keyed by pid: a forked child has its own.
    found = process_start(pid)
    return found[1] if found is not None else None


def writer_running(intent: Intent) -> bool:
    """Whether the process that wrote `intent` may still be writing (never this process)."""
    pid = intent.pid
    if pid is None or pid <= 0 or pid == os.getpid():
        # This process runs `doctor` between its writes, never during one.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user holds the pid: cannot tell, so alive
    found = process_start(pid)
    if found is None:
        return True
    state, started = found
    if state in {"Z", "X"}:
        return False  # exited, not yet reaped
    # A different start time: the writer died and the pid was reused.
    return intent.started is None or intent.started == started


class IntentJournal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def pending(self, namespace: str, entry: str) -> Iterator[Intent]:
        """Record the intent; the caller resolves it with `done` on every path it can."""
        path = self.directory / f"{uuid.uuid4().hex}.intent"
        pid = os.getpid()
        started = _own_start(pid)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(
                    {"namespace": namespace, "entry": entry, "pid": pid, "started": started}, f
                )
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            # Without the intent a crash could leave an orphan nobody can find: write nothing.
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            raise LedgerUnavailable(
                f"cannot record a pending keychain write in {self.directory}: {exc.strerror}; "
                "nothing was written"
            ) from None
        yield Intent(path, namespace, entry, pid, started)

    @staticmethod
    def done(intent: Intent) -> None:
        intent.path.unlink(missing_ok=True)

    def outstanding(self, namespace: str) -> list[Intent]:
        found: list[Intent] = []
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.intent")):
            try:
                data = json.loads(read_regular(path, INTENT_FILE_LIMIT).data)
                pid, started = data.get("pid"), data.get("started")
                damage = _field_damage(pid, started)
                if damage is not None:
                    found.append(Intent(path, str(data["namespace"]), "", damage=damage))
                    continue
                found.append(Intent(path, str(data["namespace"]), str(data["entry"]), pid, started))
            except UnsafeFile as exc:
                # A link, a pipe or a huge file was never written by a writer of this
                # ledger: damage, whatever its age (and not followed or waited on).
                found.append(Intent(path, namespace, "", damage=f"{exc.found}, not an intent"))
            except (OSError, ValueError, KeyError, AttributeError, RecursionError):
                # A torn intent file (crash mid-write) names nothing recoverable, unless a
                # writer is writing it right now: leave a young one alone.
                if not _young(path):
                    found.append(Intent(path, namespace, ""))
        # Only a write of a version journals an intent: one naming any other entry (the
        # ledger's own keys) was not written here, and `doctor --repair` must never act on it.
        return [
            i
            if not i.entry or parse_entry_name(i.entry) is not None
            else Intent(i.path, namespace, "", damage=i.damage)
            for i in found
            if i.namespace == namespace
        ]


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < TORN_GRACE_SECONDS
    except OSError:
        return False
