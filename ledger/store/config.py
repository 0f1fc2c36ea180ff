"""Configuration: where a ledger lives, its file names, lock timeout and checkpoint interval."""

from __future__ import annotations

import os
from pathlib import Path

from ledger.errors import ValidationFailed

HOME_VARIABLE = "SECRETS_LEDGER_HOME"
DATABASE_FILE = "ledger.sqlite"
LOCK_TIMEOUT_SECONDS = "10"
CHECKPOINT_VARIABLE = "SECRETS_LEDGER_CHECKPOINT_EVERY"
LOCK_TIMEOUT_VARIABLE = "SECRETS_LEDGER_LOCK_TIMEOUT"
# Files a ledger home may hold; each must be private to its owner.
PRIVATE_FILES = (
    DATABASE_FILE,
    f"{DATABASE_FILE}-wal",
    f"{DATABASE_FILE}-shm",
    "views.sqlite",
    "views.sqlite-wal",
    "views.sqlite-shm",
    "vault.enc",
)
VAULT_FILE = "vault.enc"
# Not session.json: one that others could read is refused, not repaired, since its secret
# may already have been copied (ledger/access/session_file.py).


def default_home() -> Path:
    explicit = os.environ.get(HOME_VARIABLE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(data) / "secrets-ledger"


def lock_timeout() -> str:
    """Whole seconds a writer waits for another writer's lock (`SECRETS_LEDGER_LOCK_TIMEOUT`).

    Whole seconds because the library's SQLite factory accepts only an integer.
    """
    text = os.environ.get(LOCK_TIMEOUT_VARIABLE, "").strip() or LOCK_TIMEOUT_SECONDS
    seconds = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= seconds <= 3600:
        raise ValidationFailed(
            "lock-timeout",
            f"{LOCK_TIMEOUT_VARIABLE} must be whole seconds from 1 to 3600, got {text[:20]!r}",
        )
    return str(seconds)


def sqlite_env(home: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(home / DATABASE_FILE),
        "SQLITE_LOCK_TIMEOUT": lock_timeout(),
        "APPLICATION_RECORDER_TOPIC": "ledger.store.sqlite:ChainedSQLiteApplicationRecorder",
    }


def checkpoint_interval() -> int:
    """Events between automatic signed checkpoints (`SECRETS_LEDGER_CHECKPOINT_EVERY`, 0 = off)."""
    from ledger.integrity.checkpoint_names import DEFAULT_INTERVAL

    text = os.environ.get(CHECKPOINT_VARIABLE, "").strip()
    try:
        return max(0, int(text)) if text else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
