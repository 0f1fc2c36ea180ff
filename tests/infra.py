"""Start and stop the real services the tests run against.

Plain functions and small handle classes, no pytest: tests/conftest.py wraps them in fixtures,
and benchmark or demo scripts can use them directly.

- `start_secret_service()`: a private D-Bus session bus plus an unlocked gnome-keyring daemon
  (Secret Service), in a throwaway HOME and XDG_RUNTIME_DIR.
- `start_postgres()`: a throwaway PostgreSQL 15 cluster from Debian's server binaries, on a free
  TCP port on 127.0.0.1 with trust auth (through `runuser -u postgres` when running as root).
- `create_database()` / `drop_database()`: one fresh database per test on such a cluster.
- `require_binary()`: the path of a program, or `MissingBinaryError` naming the Debian package.

A missing program is never a reason to skip: every error names the package to install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
SECRET_SERVICE_BUS_NAME = "org.freedesktop.secrets"
# Unlocks the throwaway login keyring; it guards nothing of value.
TEST_KEYRING_PASSWORD = "secrets-ledger-test-keyring"

# Which Debian package provides each program the tests need.
DEBIAN_PACKAGES: dict[str, str] = {
    "dbus-daemon": "dbus",
    "gnome-keyring-daemon": "gnome-keyring",
    "secret-tool": "libsecret-tools",
    "tmux": "tmux",
    "promtool": "prometheus",
    "pass": "pass",
    "runuser": "util-linux",
    "chattr": "e2fsprogs",
    str(PG_BIN / "initdb"): "postgresql-15",
    str(PG_BIN / "pg_ctl"): "postgresql-15",
}

# XDG base directories would move gnome-keyring's files (and the ledger's default home) out of
# the throwaway HOME, and a leftover keyring control socket would point at another daemon.
_HOST_VARS_DROPPED = (
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "GNOME_KEYRING_CONTROL",
    "SSH_AUTH_SOCK",
)

# A session bus with no service directories: nothing is D-Bus-activated behind our back (an
# activated, still locked second gnome-keyring would otherwise race the one we start).
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class InfraError(RuntimeError):
    """A service could not be started or did not become ready."""


class MissingBinaryError(InfraError):
    """A program the tests need is not installed."""


def require_binary(name: str, package: str | None = None) -> str:
    """The absolute path of `name` (a program on PATH or an absolute path), or a clear error."""
    package = package or DEBIAN_PACKAGES.get(name, "?")
    if os.path.isabs(name):
        if os.access(name, os.X_OK):
            return name
        found = None
    else:
        found = shutil.which(name)
    if not found:
        raise MissingBinaryError(
            f"{name} not found: install the Debian package `{package}` "
            f"(apt-get install -y {package}), or run scripts/test-all, which installs it"
        )
    return found


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the caller retries on a lost race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process group of `proc` (started with start_new_session), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def worker_tag() -> str:
    """`gw0`, `gw1`... under pytest-xdist, `main` otherwise: in every service's dir name, so a
    leftover says which worker of a run it came from."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def service_tempdir(kind: str) -> Path:
    """A new private temp dir `sl-<kind>-<worker>-XXXX` (short: unix socket paths max 107)."""
    return Path(tempfile.mkdtemp(prefix=f"sl-{kind}-{worker_tag()}-"))


REAPER_SCRIPT = Path(__file__).with_name("reaper.py")


class Reaper:
    """A watcher process (tests/reaper.py) that cleans up after this process if it goes away
    without calling `disarm()`: SIGKILL, an xdist worker torn down mid-test, a crash.

    `watch(...)` tells it what to clean; a normal stop cleans up itself, then disarms."""

    def __init__(self) -> None:
        import sys

        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, str(REAPER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the run's process group leaves it working
            close_fds=True,
        )

    def watch(
        self,
        *,
        pgids: list[int] | None = None,
        commands: list[list[str]] | None = None,
        paths: list[Path] | None = None,
    ) -> None:
        import json

        plan = {
            "pgids": pgids or [],
            "commands": commands or [],
            "paths": [str(p) for p in paths or []],
        }
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.write(json.dumps(plan).encode() + b"\n")
                self._proc.stdin.flush()

    def disarm(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.write(b"disarm\n")
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- Secret Service


@dataclass
class SecretService:
    """A running private session bus with an unlocked gnome-keyring Secret Service on it.

    `env`: os.environ (as it was at start, less host keyring/XDG variables) plus
    DBUS_SESSION_BUS_ADDRESS, HOME, XDG_RUNTIME_DIR and PYTHON_KEYRING_BACKEND: pass it to
    subprocesses (the `secrets` CLI, secret-tool). In this process, `backend()` talks to the bus
    named by os.environ["DBUS_SESSION_BUS_ADDRESS"] at call time: see `bus_environment()`.
    """

    base_dir: Path
    home: Path
    runtime_dir: Path
    bus_address: str
    env: dict[str, str]
    password: str
    startup_seconds: float = 0.0
    _procs: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)
    _reaper: Reaper | None = field(default=None, repr=False)

    def backend(self) -> Any:
        """A keyring Secret Service backend (needs the bus address in os.environ when used)."""
        from keyring.backends.SecretService import Keyring

        return Keyring()  # type: ignore[no-untyped-call]

    @contextlib.contextmanager
    def bus_environment(self) -> Iterator[None]:
        """Point this process's D-Bus session address at the private bus, restore afterwards."""
        saved = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = self.bus_address
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SESSION_BUS_ADDRESS"] = saved

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{_tail(p)}" for p in sorted(self.base_dir.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in reversed(self._procs):  # the keyring daemon first, then its bus
            _stop_process(proc)
        self._procs.clear()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._reaper is not None:
            self._reaper.disarm()


def _start_dbus(
    config: Path, log: Path, env: Mapping[str, str], timeout: float
) -> tuple[subprocess.Popen[bytes], str]:
    dbus_daemon = require_binary("dbus-daemon")
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [dbus_daemon, f"--config-file={config}", "--nofork", "--print-address=1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=dict(env),
            start_new_session=True,
        )
    assert proc.stdout is not None
    # dbus-daemon prints its address once it listens.
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode().strip() if ready else ""
    proc.stdout.close()
    if not line:
        _stop_process(proc)
        raise InfraError(f"dbus-daemon printed no address within {timeout}s:\n{_tail(log)}")
    return proc, line


def _bus_name_has_owner(address: str, name: str, timeout: float) -> bool:
    from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]
    from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

    bus = DBusAddress("/org/freedesktop/DBus", "org.freedesktop.DBus", "org.freedesktop.DBus")
    with open_dbus_connection(bus=address) as conn:
        reply = conn.send_and_get_reply(
            new_method_call(bus, "NameHasOwner", "s", (name,)), timeout=timeout
        )
    return bool(reply.body[0])


def _with_timeout(func: Any, timeout: float) -> Any:
    """Run func() in a thread; raise TimeoutError if it hangs (e.g. an unlock prompt)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _keyring_round_trip(service: SecretService) -> None:
    backend = service.backend()
    name, user, value = "secrets-ledger-infra", f"probe-{uuid.uuid4().hex[:8]}", "ready?"
    backend.set_password(name, user, value)
    got = backend.get_password(name, user)
    if got != value:
        raise InfraError(f"keyring round trip read back {got!r}")
    backend.delete_password(name, user)


def start_secret_service(
    password: str = TEST_KEYRING_PASSWORD, timeout: float = 20.0
) -> SecretService:
    """Start dbus-daemon and `gnome-keyring-daemon --unlock` in a throwaway HOME.

    Returns only once a keyring set/get/delete round trip worked through the bus.
    """
    started = time.monotonic()
    try:
        import jeepney  # type: ignore[import-untyped]  # noqa: F401
        import keyring.backends.SecretService  # noqa: F401
        import secretstorage  # noqa: F401
    except ImportError as exc:
        raise InfraError(f"{exc}: run pip install -e '.[test]' (keyring, secretstorage)") from exc
    keyring_daemon = require_binary("gnome-keyring-daemon")
    require_binary("dbus-daemon")
    reaper = Reaper()
    base = service_tempdir("keyring")
    reaper.watch(paths=[base])
    home = base / "home"
    runtime = base / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    runtime.chmod(0o700)
    config = base / "session.conf"
    config.write_text(_BUS_CONFIG.format(socket=runtime / "bus"))

    env = {k: v for k, v in os.environ.items() if k not in _HOST_VARS_DROPPED}
    env.update({"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)})
    service = SecretService(
        base_dir=base, home=home, runtime_dir=runtime, bus_address="", env=env, password=password
    )
    service._reaper = reaper
    try:
        dbus, address = _start_dbus(config, base / "dbus-daemon.log", env, timeout)
        service._procs.append(dbus)
        reaper.watch(pgids=[dbus.pid])
        service.bus_address = address
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        env["PYTHON_KEYRING_BACKEND"] = SECRET_SERVICE_BACKEND

        with open(base / "gnome-keyring-daemon.log", "wb") as log:
            daemon = subprocess.Popen(
                [keyring_daemon, "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=home,
                start_new_session=True,
            )
        service._procs.append(daemon)
        reaper.watch(pgids=[daemon.pid])
        assert daemon.stdin is not None
        daemon.stdin.write(password.encode())  # --unlock reads the password up to EOF
        daemon.stdin.close()

        deadline = started + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            for proc in service._procs:
                if proc.poll() is not None:
                    raise InfraError(f"{proc.args!r} exited with {proc.returncode}")
            try:
                if _bus_name_has_owner(address, SECRET_SERVICE_BUS_NAME, timeout=5):
                    with service.bus_environment():
                        _with_timeout(lambda: _keyring_round_trip(service), 10)
                    service.startup_seconds = time.monotonic() - started
                    return service
                last_error = InfraError(f"{SECRET_SERVICE_BUS_NAME} not on the bus yet")
            except Exception as exc:  # not ready yet: retry until the deadline
                last_error = exc
            time.sleep(0.05)
        raise InfraError(f"Secret Service not ready within {timeout}s (last error: {last_error!r})")
    except BaseException as exc:
        logs = service.logs()
        service.stop()
        if isinstance(exc, InfraError):
            raise InfraError(f"{exc}\n{logs}") from exc
        raise


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresCluster:
    """A running throwaway PostgreSQL cluster; `url` connects as the superuser `postgres`."""

    base_dir: Path
    data_dir: Path
    socket_dir: Path
    port: int
    run_as: str | None  # "postgres" when we are root
    startup_seconds: float = 0.0
    host: str = "127.0.0.1"
    user: str = "postgres"
    _reaper: Reaper | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            result = _pg_run(
                self.run_as,
                [str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
                cwd=self.base_dir,
                check=False,
            )
            if result.returncode != 0:
                _kill_postmaster(self.data_dir)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._reaper is not None:
            self._reaper.disarm()


def pg_stop_command(run_as: str | None, pg_ctl: Path | str, data_dir: Path) -> list[str]:
    """The command a Reaper runs to stop a cluster at once (immediate: no checkpoint)."""
    args = [str(pg_ctl), "stop", "-D", str(data_dir), "-m", "immediate", "-w"]
    return [require_binary("runuser"), "-u", run_as, "--", *args] if run_as else args


def _pg_run(
    run_as: str | None, args: list[str], cwd: Path, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    if run_as:
        args = [require_binary("runuser"), "-u", run_as, "--", *args]
    result = subprocess.run(
        args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise InfraError(
            f"{shlex.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def _kill_postmaster(data_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)


def start_postgres(
    settings: Mapping[str, str] | None = None, durable: bool = False, attempts: int = 3
) -> PostgresCluster:
    """initdb + pg_ctl start a PostgreSQL 15 cluster on a free 127.0.0.1 port, trust auth.

    Not `durable` (the default, for tests): fsync and synchronous_commit off. Benchmarks that
    measure commit costs pass durable=True. `settings` adds `-c name=value` server options.
    """
    started = time.monotonic()
    initdb = require_binary(str(PG_BIN / "initdb"))
    pg_ctl = require_binary(str(PG_BIN / "pg_ctl"))
    run_as: str | None = None
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        require_binary("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise MissingBinaryError(
                "running as root needs the `postgres` system user, created by the Debian "
                "package `postgresql-common` (apt-get install -y postgresql-15)"
            ) from exc
        run_as = "postgres"

    reaper = Reaper()
    base = service_tempdir("pg")
    data, sockets = base / "data", base / "sock"
    reaper.watch(commands=[pg_stop_command(run_as, pg_ctl, data)], paths=[base])
    for d in (data, sockets):
        d.mkdir(mode=0o700)
    if owner is not None:
        for d in (base, data, sockets):
            os.chown(d, owner.pw_uid, owner.pw_gid)
    base.chmod(0o700)
    cluster = PostgresCluster(
        base_dir=base, data_dir=data, socket_dir=sockets, port=0, run_as=run_as, _reaper=reaper
    )
    try:
        _pg_run(
            run_as,
            [
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",  # a fresh machine may have no other locale generated
                "--no-sync",
                "--no-instructions",
            ],
            cwd=base,
        )
        options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(sockets)}
        if not durable:
            options.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        options.update(settings or {})
        last = ""
        for _ in range(attempts):  # a free port can be taken between probe and bind
            port = free_tcp_port()
            opts = [f"-p {port}", *(f"-c {k}={shlex.quote(v)}" for k, v in options.items())]
            result = _pg_run(
                run_as,
                [
                    pg_ctl,
                    "start",
                    "-D",
                    str(data),
                    "-l",
                    str(cluster.log_file),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    " ".join(opts),
                ],
                cwd=base,
                check=False,
            )
            if result.returncode == 0:
                cluster.port = port
                cluster.startup_seconds = time.monotonic() - started
                return cluster
            last = f"{result.stdout}\n{result.stderr}\n{_tail(cluster.log_file)}"
        raise InfraError(f"pg_ctl start failed {attempts} times:\n{last}")
    except BaseException:
        cluster.stop()
        raise


def _connect(url: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise InfraError("psycopg is missing: pip install -e '.[test]'") from exc
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def create_database(cluster: PostgresCluster, prefix: str = "t") -> str:
    """Create a uniquely named database; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with _connect(cluster.url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.url_for(name)


def drop_database(cluster: PostgresCluster, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _connect(cluster.url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- tmux


def kill_tmux_server(socket_path: Path | str) -> None:
    """Kill the tmux server on `socket_path` (no error if none runs) and remove the socket."""
    tmux = shutil.which("tmux")
    if tmux and Path(socket_path).exists():
        subprocess.run(
            [tmux, "-S", str(socket_path), "kill-server"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    with contextlib.suppress(OSError):
        Path(socket_path).unlink()
