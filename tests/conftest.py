"""Fixtures that start REAL services: a Secret Service (gnome-keyring on a private D-Bus), a
throwaway PostgreSQL 15 cluster, private tmux servers, promtool, and the real `secrets` CLI.

A missing program fails the test with the Debian package to install; nothing is skipped.
`scripts/test-all` installs everything. The start/stop code lives in tests/infra.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import settings

from tests import infra

# The suite is a gate: every run of `scripts/test-all` (and so CI) tries the same examples, so
# a commit lands or not on its own merits, not on a draw. Exploring for new failures is a
# separate, deliberate run: HYPOTHESIS_PROFILE=explore (random examples), repeated with
# `--hypothesis-seed=N` over many seeds (docs/reliability.md).
settings.register_profile("gate", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))

REPO = Path(__file__).resolve().parent.parent

# The `ledger` fixture (a logged-in CLI ledger per real vault and store) and the PostgreSQL
# fixtures it uses live in their own modules.
pytest_plugins = ["tests.ledger_fixtures", "tests.pg_fixtures"]

# The session bus address as it was before `secret_service` pointed this process at its bus:
# `cli_env` uses it, so a CLI test's environment does not depend on fixture order.
_HOST_BUS_ADDRESS = os.environ.get("DBUS_SESSION_BUS_ADDRESS")

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


class TerminatedError(KeyboardInterrupt):
    """SIGTERM/SIGHUP as an interruption: pytest stops, and runs every finalizer on the way out."""


def _terminate(signum: int, _frame: object) -> None:
    # Once: a second signal during teardown must not cut the finalizers short (the Reaper
    # watchers in tests/infra.py still clean up if the process is killed outright).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise TerminatedError(f"terminated by {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    """By default SIGTERM kills Python where it stands: no finalizer runs, so the services the
    session fixtures started (PostgreSQL, dbus, gnome-keyring, tmux) and their temp dirs would
    stay. Raise instead, as Ctrl-C does. In every process of a run (xdist workers too)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _terminate)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # xdist sets these in each worker to its controller's terminal size. Every CLI the
        # tests start would inherit them, and rich would draw 80x24 where a serial run draws
        # to the size of the (tmux) terminal in front of it.
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


T = TypeVar("T")


def _start(start: Callable[[], T]) -> T:
    """Run a start/lookup function; a missing program fails the test with its package name."""
    try:
        return start()
    except infra.MissingBinaryError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside `except`: no chained traceback


def _require(name: str) -> str:
    return _start(lambda: infra.require_binary(name))


@pytest.fixture(scope="session")
def secret_service() -> Iterator[infra.SecretService]:
    """An unlocked gnome-keyring Secret Service on a private session bus, for the whole run.

    `.env` is for subprocesses; `.backend()` works in-process because this fixture points
    os.environ["DBUS_SESSION_BUS_ADDRESS"] at the private bus until the session ends.
    The daemon is shared: tests keep apart by using unique service names.
    """
    service = _start(infra.start_secret_service)
    try:
        with service.bus_environment():
            yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[infra.PostgresCluster]:
    """The throwaway PostgreSQL 15 cluster behind `postgres_url` (port, dirs, log file)."""
    cluster = _start(infra.start_postgres)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: infra.PostgresCluster) -> str:
    """`postgresql://postgres@127.0.0.1:PORT/postgres` of a throwaway cluster (trust auth)."""
    return postgres_cluster.url


@pytest.fixture
def fresh_pg_database(postgres_cluster: infra.PostgresCluster) -> Iterator[str]:
    """The URL of a new, uniquely named, empty database; dropped after the test."""
    url = infra.create_database(postgres_cluster)
    try:
        yield url
    finally:
        infra.drop_database(postgres_cluster, url)


@pytest.fixture
def tmux_server() -> Iterator[Path]:
    """A private tmux socket path: use `tmux -S <path> ...`; its server is killed afterwards."""
    tmux = _require("tmux")
    reaper = infra.Reaper()
    base = infra.service_tempdir("tmux")
    sock = base / "tmux.sock"
    reaper.watch(commands=[[tmux, "-S", str(sock), "kill-server"]], paths=[base])
    try:
        yield sock
    finally:
        infra.kill_tmux_server(sock)
        shutil.rmtree(base, ignore_errors=True)
        reaper.disarm()


@pytest.fixture(scope="session")
def promtool() -> str:
    """The path of Debian's promtool (package `prometheus`)."""
    return _require("promtool")


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """os.environ plus SECRETS_LEDGER_HOME=<tmp_path>/home, for the `secrets` CLI.

    The session bus address is the host's, even while `secret_service` is active: merge
    `secret_service.env` to run against the test keyring.
    """
    env = dict(os.environ)
    if _HOST_BUS_ADDRESS is None:
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    else:
        env["DBUS_SESSION_BUS_ADDRESS"] = _HOST_BUS_ADDRESS
    env["SECRETS_LEDGER_HOME"] = str(tmp_path / "home")
    return env


@pytest.fixture
def cli(cli_env: dict[str, str]) -> CliRunner:
    """run(*args, input=None, env=None, check=None): the real `secrets` CLI in a subprocess.

    `env` entries are merged onto `cli_env`; `check=True` raises CalledProcessError on a
    non-zero exit (None and False return the result whatever the exit code). Timeout 60 s.
    """

    def run(
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        check: bool | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "commands", *args],
            # No input: stdin at EOF, so a prompt fails fast instead of waiting for the timeout.
            input="" if input is None else input,
            env={**cli_env, **(env or {})},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=bool(check),
        )

    return run


@pytest.fixture(params=["sqlite", "postgres"])
def store_for(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], str]]:
    """Each event store for in-process ledgers: `store_for(home)` is the database URL of a new
    ledger whose home is `home`: its SQLite file, or a fresh database (one per call) on the
    throwaway PostgreSQL cluster, dropped after the test."""
    if request.param == "sqlite":
        yield lambda home: f"sqlite://{home}"
        return
    cluster = request.getfixturevalue("pg")
    made: list[str] = []

    def fresh(_home: Path) -> str:
        made.append(cluster.create_database())
        return str(cluster.url(made[-1]))

    yield fresh
    for name in made:
        cluster.drop_database(name)


@pytest.fixture
def store_url(store_for: Callable[[Path], str], tmp_path: Path) -> str:
    """The event store of an in-process ledger whose home is `tmp_path / "home"`."""
    return store_for(tmp_path / "home")


@pytest.fixture
def tiny_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 4 rows in both stores' paged reads, so that faults fall inside pages, on their
    edges and past the last one (tests/*/test_verify_fast.py)."""
    import ledger.store.postgres
    import ledger.store.sqlite

    monkeypatch.setattr(ledger.store.sqlite, "PAGE", 4)
    monkeypatch.setattr(ledger.store.postgres, "PAGE", 4)
