"""A failed `secrets init` leaves nothing behind.

`init` creates the ledger file before it records anything; when recording fails (no
passphrase for the file vault, say), a leftover empty `ledger.sqlite` made the home look like
a ledger, so later commands asked for `secrets auth login` instead of `secrets init`. What the
failed init created in the home is removed, but only while the file still holds no event: a
ledger that recorded anything is never deleted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path


class Undo:
    """What the home held before `init`; `undo` removes what appeared since."""

    def __init__(self, home: Path, database_file: str) -> None:
        self.home = home
        self.database = home / database_file
        self.made_home = not home.exists()
        self.before = set(os.listdir(home)) if home.is_dir() else set()
        self.made_database = not self.database.exists()

    def undo(self) -> bool:
        """Remove the files `init` created in the home (and the home if it made it), when it
        created the ledger file and that file holds no event; whether it removed anything."""
        if not self.made_database or not self.database.exists() or self._holds_events():
            return False
        for entry in set(os.listdir(self.home)) - self.before:
            path = self.home / entry
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()
        if self.made_home:
            with contextlib.suppress(OSError):
                self.home.rmdir()  # only when empty
        return True

    def _holds_events(self) -> bool:
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
            ) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
                if "stored_events" not in tables:
                    return False
                return db.execute("SELECT 1 FROM stored_events LIMIT 1").fetchone() is not None
        except sqlite3.Error:
            return True  # cannot tell: keep it
