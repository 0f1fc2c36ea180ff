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

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger, entry_name
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from tests.clikit import FILE_VAULT_PASSPHRASE, Ledger, start_ledger
from tests.pg_cluster import PgCluster
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

ADDRESS = SecretAddress("production", "nexus", "restart.apiKey")
RESTARTS = 3  # of each mode, under the CLI writer


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


# -- the CLI ----------------------------------------------------------------------------------


def _file_vault(home: Path) -> Any:
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    return EncryptedFileKeyring(path=str(home / "vault.enc"), passphrase=FILE_VAULT_PASSPHRASE)


@pytest.fixture
def cli(tmp_path: Path, pg_url: str) -> Ledger:  # noqa: F811
    from tests.e2e.test_cli_postgres import _env

    home = tmp_path / "host"
    return start_ledger(home, _env(home, _durable(pg_url)), lambda: _file_vault(home))


def _set(cli: Ledger, value: str) -> subprocess.CompletedProcess[str]:
    return cli.run(
        "set", "-e", ADDRESS.environment, "--service", ADDRESS.service, "--name", ADDRESS.name,
        "--value-stdin", input=value,
    )  # fmt: skip


def _clear(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 0, or a one-line documented error with its exit code; never a traceback."""
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    if result.returncode != 0:
        assert result.returncode in (1, 7, 8), result.stderr
        assert result.stderr.startswith("error: "), result.stderr


@pytest.mark.slow
def test_cli_writes_while_the_server_restarts(cli: Ledger, pg: PgCluster) -> None:  # noqa: F811
    """`secrets set` in a loop while the server is restarted (fast and immediate) under it,
    then a write while it is down."""
    attempts: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    timings: list[float] = []
    done = threading.Event()

    def writer() -> None:
        while not done.is_set():
            value = _value()
            began = time.monotonic()
            attempts.append((value, _set(cli, value)))
            timings.append(time.monotonic() - began)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for n, mode in enumerate(["fast", "immediate"] * RESTARTS):
            # Restart at a moment that drifts through the next command's run.
            while len(attempts) < n + 1:
                time.sleep(0.02)
            time.sleep(0.15 * (n % 6))
            pg.restart(mode)
    finally:
        done.set()
        thread.join(timeout=300)
    for _, result in attempts:
        _clear(result)

    # A write while the server is down: a clear error, nothing written.
    pg._run("pg_ctl", "-D", str(pg.data), "-m", "fast", "-w", "stop")
    try:
        down_value = _value()
        down = _set(cli, down_value)
    finally:
        pg._start_server()
    _clear(down)
    assert down.returncode == 1 and "error: " in down.stderr
    attempts.append((down_value, down))

    doc = cli.json("versions", "-e", ADDRESS.environment, "--service", ADDRESS.service,
                   "--name", ADDRESS.name)  # fmt: skip
    recorded = {v["version"]: v["fingerprint"] for v in doc["versions"]}
    assert sorted(recorded) == list(range(1, len(recorded) + 1))
    landed = [value for value, result in attempts if result.returncode == 0]
    assert len(recorded) >= len(landed)  # an error after COMMIT may still have recorded one

    # Every recorded version holds one of the written values; doctor finds nothing missing
    # and any value without its event is reported as an orphan and removed by --repair.
    app = open_ledger(
        cli.home,
        backend=_file_vault(cli.home),
        database_url=cli.env["SECRETS_LEDGER_DATABASE_URL"],
    )
    secret = app.history(Credential(token=cli.token), ADDRESS)
    written = {value for value, _ in attempts}
    for number, version in secret.versions.items():
        if version.retained:
            assert app.vault.get(entry_name(ADDRESS, number, version.fingerprint)) in written
    doctor = json.loads(cli.run("doctor", "--output", "json").stdout)
    assert doctor["missing_values"] == [] and doctor["leftovers"] == []
    repaired = json.loads(cli.run("doctor", "--repair", "--output", "json").stdout)
    assert sorted(repaired["repaired"]) == sorted(doctor["orphans"])
    assert json.loads(cli.run("doctor", "--output", "json").stdout)["healthy"]
    verified = cli.run("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    failed = sum(1 for _, r in attempts if r.returncode != 0)
    print(
        f"{len(attempts)} sets, {failed} failed cleanly, orphans {len(doctor['orphans'])}, "
        f"slowest {max(timings):.1f} s; down: {down.returncode} {down.stderr.strip()!r}"
    )
