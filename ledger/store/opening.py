"""Opening a ledger: the SQLite file in a home, or the PostgreSQL store a database URL names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import LedgerUnavailable, NotInitialized
from ledger.store.config import DATABASE_FILE, checkpoint_interval, default_home, sqlite_env
from ledger.store.home import make_private, refuse_unsafe
from ledger.store.sqlite_file import check_sqlite_file, storage_failure

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from ledger.application import SecretsLedger


def open_ledger(
    home: Path | None = None,
    *,
    create: bool = False,
    backend: KeyringBackend | None = None,
    database_url: str | None = None,
    private: bool = True,
) -> SecretsLedger:
    """Open (or with `create`, make) the ledger in `home`.

    Without `create`, a missing ledger is an error and nothing is written to disk.
    `database_url` (default: $SECRETS_LEDGER_DATABASE_URL) puts the event store elsewhere:
    `postgresql://...` for a shared PostgreSQL store (`home` then holds only this host's
    views cache, session and pending intents), or `sqlite:///dir` for the SQLite ledger there.
    With `private` (the default) loose modes on the home and its files are repaired; a copy
    opened only to be verified (an evidence bundle) passes False and is left exactly as found.
    """
    from eventsourcing.persistence import PersistenceError

    from ledger.application import SecretsLedger
    from ledger.store.database_url import PostgresLocation, configured_url, parse

    home = home or default_home()
    url = configured_url(database_url)
    if url:
        location = parse(url)
        if isinstance(location, PostgresLocation):
            from ledger.store.config_postgres import open_postgres_ledger

            shared = open_postgres_ledger(location, home, create=create, backend=backend)
            shared.checkpoint_every = checkpoint_interval()
            return shared
        home = location.home
    db = home / DATABASE_FILE
    if not os.path.lexists(db):
        if not create:
            raise NotInitialized(f"no ledger at {home}; run `secrets init`")
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Create the file ourselves so that it is private from its first byte.
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            raise LedgerUnavailable(f"cannot create the ledger at {home}: {exc.strerror}") from None
    else:
        refuse_unsafe(home)
        check_sqlite_file(db)
    repaired = make_private(home) if private else []
    # SQLite's -wal and -shm files inherit the process umask: keep them private too.
    os.umask(0o077)
    try:
        ledger = SecretsLedger(env=sqlite_env(home), home=home, backend=backend)
    except PersistenceError as exc:
        raise storage_failure(exc, home) or LedgerUnavailable(
            f"cannot open the ledger at {home}: {exc}"
        ) from None
    ledger.warnings.extend(repaired)
    ledger.checkpoint_every = checkpoint_interval()
    return ledger
