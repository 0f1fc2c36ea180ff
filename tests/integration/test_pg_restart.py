"""The PostgreSQL server restarted during a write (the real throwaway cluster, tests/pg_cluster.py).

Three ways: restarted between the connection's last use and the write (the value is already
in the keychain), restarted inside the write's transaction (events inserted, not committed;
`fast` rolls the transaction back, `immediate` is a crash), and restarted again and again
under a stream of `secrets set` processes, plus a write while the server is down.

Either the write is retried and succeeds or the command fails with a clear error and exit
code; after each: every recorded version has exactly its value in the keychain, no value is
left without its event (or `doctor` reports it and `--repair` removes it), and the chain
and checkpoints verify (`audit verify`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger, entry_name
from ledger.errors import LedgerError
from ledger.store.opening import open_ledger
from ledger.store.postgres import ChainedPostgresApplicationRecorder
from ledger.vault.memory import MemoryKeyring
from tests.pg_cluster import PgCluster
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

ADDRESS = SecretAddress("production", "nexus", "restart.apiKey")


def _durable(url: str) -> str:
    """The throwaway cluster runs with synchronous_commit=off, which lets an `immediate`
    stop lose commits from the last fraction of a second: ask this test's database for
    real durability, as a production server has, so what is lost is the server's doing."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
    return url


def _value() -> str:
    return "val-restart-" + secrets.token_urlsafe(18)


@pytest.fixture
def app(tmp_path: Path, pg_url: str) -> Iterator[tuple[SecretsLedger, Credential, MemoryKeyring]]:  # noqa: F811
    keychain = MemoryKeyring()
    ledger = open_ledger(
        tmp_path / "home", create=True, backend=keychain, database_url=_durable(pg_url)
    )
    issued = ledger.initialize("alice")
    assert issued is not None
    yield ledger, Credential(token=issued.token), keychain
    ledger.close()


def _intact(ledger: SecretsLedger, cred: Credential, values: dict[int, str]) -> None:
    """Nothing half-written: each recorded version has its own value and no other value is
    held; doctor is healthy; the chain and checkpoints verify."""
    secret = ledger.history(cred, ADDRESS)
    assert sorted(secret.versions) == list(range(1, secret.current_version + 1))
    for number, version in secret.versions.items():
        held = ledger.vault.get(entry_name(ADDRESS, number, version.fingerprint))
        assert held == values[number], number
    report = ledger.doctor(cred)
    assert (report.missing_values, report.orphans, report.leftovers) == ([], [], [])
    assert ledger.verify_history().ok


@pytest.mark.slow
def test_restart_between_the_connection_and_the_write(
    app: tuple[SecretsLedger, Credential, MemoryKeyring],
    pg: PgCluster,  # noqa: F811
) -> None:
    """The command has loaded the secret over its connection and put the value in the
    keychain; then the server restarts, so the append meets a dead connection."""
    ledger, cred, _ = app
    first = _value()
    ledger.write(cred, ADDRESS, first)
    vault = ledger.vault
    put = vault.put

    def put_then_restart(entry: str, value: str) -> None:
        put(entry, value)
        pg.restart()

    vault.put = put_then_restart  # type: ignore[method-assign]
    second = _value()
    try:
        added = ledger.write(cred, ADDRESS, second)
    finally:
        vault.put = put  # type: ignore[method-assign]
    # The pool noticed the dead connection and the write was retried on a new one.
    assert added.number == 2
    assert ledger.read(cred, ADDRESS)[1] == second
    _intact(ledger, cred, {1: first, 2: second})


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_inside_the_write_transaction(
    app: tuple[SecretsLedger, Credential, MemoryKeyring],
    pg: PgCluster,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """The events are inserted and the table lock is held, not yet committed, when the server
    goes away: the transaction is lost; the write is retried (or fails cleanly) and never
    leaves a half."""
    ledger, cred, _ = app
    values = {1: _value()}
    ledger.write(cred, ADDRESS, values[1])
    original = ChainedPostgresApplicationRecorder._fetch_ids_after_insert_events
    restarts: list[str] = []

    def restart_first(self: Any, curs: Any, stored: Any, **kwargs: Any) -> Any:
        if not restarts:
            restarts.append(mode)
            pg.restart(mode)
        return original(self, curs, stored, **kwargs)

    monkeypatch.setattr(
        ChainedPostgresApplicationRecorder, "_fetch_ids_after_insert_events", restart_first
    )
    value = _value()
    try:
        added = ledger.write(cred, ADDRESS, value)
    except LedgerError:
        pass  # a clear, documented error is allowed too; then nothing may be recorded
    else:
        values[added.number] = value
    monkeypatch.undo()
    assert restarts == [mode]
    current = ledger.history(cred, ADDRESS).current_version
    assert current == max(values)  # 2 if retried, else still 1: never a version without value
    _intact(ledger, cred, values)
