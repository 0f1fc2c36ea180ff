"""Opening a ledger whose event store is PostgreSQL. Imported only when a URL asks for it.

The event log (events, snapshots, hash chain) is shared by every host that uses the URL; the
home directory stays local to each host: its read-model cache, session file and pending
keychain intents. Values never leave each host's keychain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import BadConfiguration, IntegrityFailure, LedgerUnavailable, NotInitialized
from ledger.store.database_url import PostgresLocation

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from ledger.application import SecretsLedger

APPLICATION_NAME = "SecretsLedger"
RECORDER_TOPIC = "ledger.store.postgres:ChainedPostgresApplicationRecorder"
CONNECT_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT_SECONDS = 30
# No statement of the ledger's waits for a table lock but a writer's LOCK ... EXCLUSIVE, which
# the library bounds itself (POSTGRES_LOCK_TIMEOUT); any other wait is a lock nobody using the
# ledger takes (ACCESS EXCLUSIVE, by a role with UPDATE or an administrator).
SESSION_LOCK_TIMEOUT_SECONDS = 10


def locked_out(exc: BaseException) -> LedgerUnavailable | None:
    """The clear error for a statement that gave up waiting for a table lock, else None."""
    if "lock timeout" not in str(exc):
        return None
    return LedgerUnavailable(
        "the ledger is locked by another session (a table lock held past the time limit: "
        f"{SESSION_LOCK_TIMEOUT_SECONDS} s for a read, {LOCK_TIMEOUT_SECONDS} s for a write; "
        "a role with UPDATE on the events table can hold one, see docs/postgres.md); nothing "
        "was written, try again"
    )


def table_names(location: PostgresLocation) -> tuple[str, str, str]:
    """Schema-qualified, quoted names of the events, chain and snapshots tables."""
    prefix = APPLICATION_NAME.lower()
    return tuple(  # type: ignore[return-value]
        f'"{location.schema}"."{prefix}_{suffix}"'
        for suffix in ("events", "event_chain", "snapshots")
    )


def postgres_env(
    location: PostgresLocation, *, create_tables: bool, idle_timeout: int = 5
) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": RECORDER_TOPIC,
        "POSTGRES_DBNAME": location.dbname,
        "POSTGRES_HOST": location.host,
        "POSTGRES_PORT": str(location.port),
        "POSTGRES_USER": location.user,
        "POSTGRES_PASSWORD": location.password,
        "POSTGRES_SCHEMA": location.schema,
        "POSTGRES_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
        "POSTGRES_LOCK_TIMEOUT": str(LOCK_TIMEOUT_SECONDS),
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(idle_timeout),
        # A command runs one thing at a time: no pool of idle connections per process.
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "2",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "no",
        "CREATE_TABLE": "yes" if create_tables else "no",
    }


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise BadConfiguration(
            "PostgreSQL support is not installed: pip install 'secrets-ledger[postgres]'"
        ) from None


def connection_problem(location: PostgresLocation, exc: BaseException) -> LedgerUnavailable:
    """One clear line for a failed connection; never the password, never a traceback."""
    text = str(exc)
    where = f"PostgreSQL at {location.where}"
    if "password authentication failed" in text or "authentication failed" in text:
        reason = f"{where} refused the login of user {location.user!r} (authentication failed)"
    elif "no password supplied" in text:
        reason = (
            f"{where} wants a password for user {location.user!r}: put it in the URL, "
            "PGPASSWORD or ~/.pgpass"
        )
    elif "does not exist" in text and "database" in text:
        reason = f"database {location.dbname!r} does not exist on {where}"
    elif "role" in text and "does not exist" in text:
        reason = f"{where} has no user {location.user!r}"
    elif "resolve host" in text or "translate host name" in text:
        reason = f"cannot resolve the host {location.host!r}"
    elif "Connection refused" in text:
        reason = f"cannot reach {where} (connection refused; is the server running?)"
    elif "timeout" in text.lower() or "timed out" in text.lower():
        reason = f"cannot reach {where} (timed out)"
    elif "no pg_hba.conf entry" in text:
        reason = f"{where} does not accept connections from this host for {location.user!r}"
    else:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        reason = f"cannot use {where}: {first}"
    if location.password:
        reason = reason.replace(location.password, "***")
    return LedgerUnavailable(f"{reason} [{location.redacted}]")


def probe(location: PostgresLocation, *, create: bool) -> bool:
    """Connect once with a short timeout; return whether the ledger's tables exist.

    Turns an unreachable server, a refused login or a missing database into one clear error
    before the library (which would retry for a long time) sees them.
    """
    _require_driver()
    import psycopg

    events, chain, _ = table_names(location)
    try:
        with psycopg.connect(
            **location.connect_kwargs(),  # type: ignore[arg-type]
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            autocommit=True,
        ) as conn:
            row = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                (events, chain),
            ).fetchone()
            assert row is not None
            has_events, has_chain = bool(row[0]), bool(row[1])
            if create and not has_events and location.schema != "public":
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{location.schema}"')
    except psycopg.Error as exc:
        raise connection_problem(location, exc) from None
    if has_events and not has_chain:
        raise IntegrityFailure(
            f"{location.redacted} holds events but no hash chain table: "
            "not a secrets-ledger database (or its chain was dropped)"
        )
    return has_events


def open_postgres_ledger(
    location: PostgresLocation,
    home: Path,
    *,
    create: bool,
    backend: KeyringBackend | None,
    idle_timeout: int = 5,
) -> SecretsLedger:
    from eventsourcing.persistence import PersistenceError

    from ledger.application import SecretsLedger
    from ledger.store.home import make_private

    exists = probe(location, create=create)
    if not exists and not create:
        raise NotInitialized(f"no ledger in {location.redacted}; run `secrets init`")
    # The home directory still holds this host's views cache, session and pending intents.
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerUnavailable(
            f"cannot create the home directory {home}: {exc.strerror}"
        ) from None
    views_file = location.views_file
    # The same repair as a SQLite home gets: the session, views and intents live here.
    repaired = make_private(home, also=(views_file, f"{views_file}-wal", f"{views_file}-shm"))
    os.umask(0o077)
    for attempt in range(3):
        env = postgres_env(location, create_tables=not exists, idle_timeout=idle_timeout)
        try:
            ledger = SecretsLedger(env=env, home=home, backend=backend)
            break
        except PersistenceError as exc:
            # Two first-time `init`s racing to create the tables: the loser finds them made.
            if exists or attempt == 2:
                raise connection_problem(location, exc) from None
            exists = probe(location, create=create)
        except OSError as exc:  # the library reports missing settings as OSError
            raise BadConfiguration(f"PostgreSQL settings incomplete: {exc}") from None
    ledger.location = location.redacted
    ledger.views_file = views_file
    ledger.warnings.extend(repaired)
    return ledger
