"""A host-local journal of keychain writes whose event may not have landed.

The keychain and the event store cannot share a transaction. Before a value is written to the
keychain an intent file naming its entry (never the value) is created; it is removed once the
event is saved or the entry cleaned up. An intent left behind (a crash, a keychain that failed
during clean-up) is how `secrets doctor` finds orphaned entries, since keyring cannot list them.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import LedgerUnavailable


@dataclass(frozen=True)
class Intent:
    path: Path
    namespace: str
    entry: str


class IntentJournal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def pending(self, namespace: str, entry: str) -> Iterator[Intent]:
        """Record the intent; the caller resolves it with `done` on every path it can."""
        path = self.directory / f"{uuid.uuid4().hex}.intent"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"namespace": namespace, "entry": entry}, f)
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
        yield Intent(path, namespace, entry)

    @staticmethod
    def done(intent: Intent) -> None:
        intent.path.unlink(missing_ok=True)

    def outstanding(self, namespace: str) -> list[Intent]:
        found: list[Intent] = []
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.intent")):
            try:
                data = json.loads(path.read_text())
                found.append(Intent(path, str(data["namespace"]), str(data["entry"])))
            except (OSError, ValueError, KeyError):
                # A torn intent file (crash mid-write) names nothing recoverable.
                found.append(Intent(path, namespace, ""))
        return [i for i in found if i.namespace == namespace]
