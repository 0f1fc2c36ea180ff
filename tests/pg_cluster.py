"""A throwaway PostgreSQL 15 cluster for tests: started once per session, one database per test.

initdb and pg_ctl refuse to run as root, so when the tests run as root they run the server as
the `postgres` user with its data and socket directories owned by that user. Host connections
use password (SCRAM) authentication, so tests can also prove what a wrong password looks like.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.infra import Reaper, pg_stop_command, service_tempdir

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/local/pgsql/bin")
SUPERUSER = "postgres"
PASSWORD = "pg-test-password"  # a throwaway cluster on loopback only


def find_bin() -> Path | None:
    explicit = os.environ.get("PG_BIN_DIR")
    for candidate in ([explicit] if explicit else []) + list(PG_BIN_DIRS):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.sockets = base / "run"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        # Stops the server and removes `base` if this process goes away without `stop()`.
        self._reaper = Reaper()
        self._reaper.watch(
            commands=[
                pg_stop_command("postgres" if self._as_root else None, bindir / "pg_ctl", self.data)
            ],
            paths=[base],
        )

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        pwfile = self.base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_root:
            # The server user must own (and be able to reach) everything it touches.
            self.base.chmod(0o755)
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        )
        pwfile.unlink()
        self._start_server()

    def _start_server(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.base / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def restart(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back open transactions and close every connection;
        `immediate`: like a crash) and start it again on the same port.

        Not `pg_ctl restart`: it would send the server's log to our captured stdout and wait
        for it forever."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self._start_server()

    def stop(self) -> None:
        with suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def disarm(self) -> None:
        """After `stop()` and removing `base`: the watcher has nothing left to do."""
        self._reaper.disarm()

    def url(
        self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str = PASSWORD
    ) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_cluster() -> Iterator[PgCluster]:
    bindir = find_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (set PG_BIN_DIR)")
    base = service_tempdir("pgpw")
    cluster = PgCluster(bindir, base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
        cluster.disarm()


_shared: PgCluster | None = None


def shared_cluster() -> PgCluster:
    """One password-authenticated cluster per test process, stopped when the process exits."""
    global _shared
    if _shared is None:
        import atexit

        bindir = find_bin()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries not found: apt-get install -y postgresql-15 "
                "(or set PG_BIN_DIR)"
            )
        base = service_tempdir("pgpw")
        cluster = PgCluster(bindir, base)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            shutil.rmtree(base, ignore_errors=True)
            cluster.disarm()
            raise

        atexit.register(stop_shared)  # a backstop: the `pg` fixture stops it at session end
        _shared = cluster
    return _shared


def stop_shared() -> None:
    global _shared
    cluster, _shared = _shared, None
    if cluster is not None:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(cluster.base, ignore_errors=True)
            cluster.disarm()
