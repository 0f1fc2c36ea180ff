"""`secrets agent`: a process of the user's own that has already imported the CLI, and runs
each read command handed to it in a fresh fork, as the client would have run it.

Why a fork per command: the child starts from the agent's imported modules and nothing else
(no command has ever run in the agent), takes the client's standard streams (passed over the
socket), working directory, umask, argv and environment, and runs the same `commands.main.run`
as a `secrets` process would: same checks, same recorded read, same output and exit status.
Nothing of one command can be left over for the next, and the agent never sees a value.

The agent serves only its own user (SO_PEERCRED), from a socket in a directory only that user
can open; only clients whose interpreter, flags, import path and environment (bar the shell's
bookkeeping, agent_client.SHELL_VARIABLES) equal its own; and only while the code it imported
is unchanged on disk (an upgrade stops it). Anything else: the client runs the command itself.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from commands.agent import client as agent_client

# What a served command imports, loaded once by the agent: the point of it.
PRELOAD = (
    "commands.main",
    "commands.secrets_cmds",
    "commands.runtime",
    "commands.oplog",
    "commands.fastparams",
    "commands.typerfast",
    "commands.exit_codes",
    "ledger.store.config",
    "ledger.application",
    "ledger.records",
    "ledger.access.session_file",
    "ledger.vault.keyring_vault",
    "keyring",
    "keyring.backends.SecretService",
    "eventsourcing.sqlite",
    "projections.views",
)
# Loaded as well when the environment names a shared ledger (psycopg alone takes longer to
# import than a whole `get` through the agent).
POSTGRES_PRELOAD = (
    "ledger.store.config_postgres",
    "ledger.store.postgres",
    "eventsourcing.postgres",
)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
KILL_AFTER = 2.0  # seconds between the SIGINT and the SIGKILL of an abandoned command


class AgentProblem(Exception):
    """The agent cannot start (say so, exit non-zero)."""


@dataclass
class Agent:
    listener: socket.socket
    path: str
    idle_seconds: float
    started: float = field(default_factory=time.time)
    served: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)


def prepare(path: str, idle_seconds: float) -> Agent:
    """Load the CLI, then listen at `path` (0600, in a 0700 directory of this user's)."""
    identity = agent_client.identity()  # before any import could change the environment
    from ledger.store.database_url import DATABASE_URL_VARIABLE

    shared = bool(os.environ.get(DATABASE_URL_VARIABLE, "").strip())
    for name in PRELOAD + (POSTGRES_PRELOAD if shared else ()):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if threading.active_count() != 1:
        # fork() copies only the calling thread: a lock held by another one stays held.
        raise AgentProblem("loading the CLI started threads; the agent cannot fork safely")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory, mode=0o700)
        except OSError as exc:
            raise AgentProblem(f"cannot create {directory}: {exc.strerror}") from exc
    problem = agent_client.private_directory_problem(directory)
    if problem is not None:
        # Worded as `status` and `stop` word it (agent_client.control).
        raise AgentProblem(f"cannot use the agent socket {path}: {problem}")
    if len(os.fsencode(path)) >= 107:
        raise AgentProblem(f"socket path too long for a Unix socket: {path}")
    # Two `agent start` at once: one checks, clears, binds and listens while the other
    # waits, then finds the first one listening.
    with _socket_lock(path):
        if os.path.lexists(path):
            try:
                agent_client.connect(path).close()
            except OSError:
                os.unlink(path)  # left by an agent that died
            else:
                raise AgentProblem(f"an agent is already listening at {path}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mask = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(mask)
        listener.listen(16)
    agent = Agent(listener, path, idle_seconds)
    agent.sources = _sources()
    agent.identity = identity
    return agent


def serve(agent: Agent) -> None:
    """Answer until idle for `idle_seconds`, told to stop, SIGTERM/SIGINT, or the code
    changed. A stop signal is taken only between connections: one that comes while a
    connection is answered waits (blocked) until the answer is complete, so a client never
    hears of a command that did not run, nor misses the end of one that did."""

    def on_signal(_signum: int, _frame: Any) -> None:
        raise _Stopping

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    agent.listener.settimeout(agent.idle_seconds)
    try:
        while True:
            try:
                conn, _ = agent.listener.accept()
            except TimeoutError:
                return
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                with conn:
                    conn.settimeout(agent_client.WAIT_SECONDS)
                    if not _answer(agent, conn):
                        return
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    except _Stopping:
        return
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        _remove_socket(agent)


class _Stopping(Exception):
    pass


def _answer(agent: Agent, conn: socket.socket) -> bool:
    """Answer one connection; False when the agent must stop."""
    if agent_client.peer(conn)[1] != os.getuid():
        return True  # another user's process: no answer at all
    try:
        request = _receive(conn)
        # Stop and status first, from a client of any protocol version: an agent older or
        # newer than the `secrets` asking can still be told to stop.
        kind = request.get("control")
        if kind == "stop":
            _reply(conn, {"stopped": os.getpid()})
            return False
        if kind == "status":
            _reply(conn, _status(agent))
            return True
        changed = _changed_source(agent)
        if changed is not None:
            _reply(conn, {"refused": f"the agent's code changed on disk ({changed}); it stops"})
            return False
        if request.get("protocol") != agent_client.PROTOCOL:
            _reply(conn, {"refused": "another version of the agent protocol", "pid": os.getpid()})
            return True
        refusal = _refusal(agent, request)
        if refusal is not None:
            _reply(conn, {"refused": refusal})
            return True
        _reply(conn, {"ready": True})
        # The caller's standard streams come with its go-ahead, never before: a request
        # that waits in the queue must not hold the caller's pipes open.
        fds = _receive_go(conn)
        if fds is None:
            return True  # the client gave up waiting and runs the command itself
        try:
            conn.settimeout(None)
            status = _run_forked(agent, conn, request, fds)
        finally:
            _close(fds)
        agent.served += 1
        with contextlib.suppress(OSError):
            _reply(conn, {"exit": status})
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return True  # a client that went away or sent nonsense: it runs the command itself


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _receive(conn: socket.socket) -> dict[str, Any]:
    import json

    size = int.from_bytes(_read_exactly(conn, 4), "big")
    if size > agent_client.MAX_REQUEST:
        raise ValueError("request too long")
    request = json.loads(_read_exactly(conn, size))
    if not isinstance(request, dict):
        raise ValueError("bad request")
    return request


def _receive_go(conn: socket.socket) -> list[int] | None:
    """The client's go-ahead with its three standard streams, or None (nothing to run)."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(conn, len(agent_client.GO), 3)
    except OSError:
        return None
    if data != agent_client.GO or len(fds) != 3:
        _close(list(fds))
        return None
    return list(fds)


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    found = b""
    while len(found) < size:
        chunk = conn.recv(size - len(found))
        if not chunk:
            raise ValueError("short read")
        found += chunk
    return found


def _reply(conn: socket.socket, message: dict[str, Any]) -> None:
    import json

    conn.sendall(json.dumps(message).encode() + b"\n")


def _refusal(agent: Agent, request: dict[str, Any]) -> str | None:
    argv = request.get("argv")
    if not isinstance(argv, list) or len(argv) < 2 or not all(isinstance(a, str) for a in argv):
        return "no command"
    if argv[1] not in agent_client.SERVED:
        return f"the agent does not run `{argv[1]}`"
    for key in agent_client.IDENTITY_KEYS:
        if key != "env" and request.get(key) != agent.identity[key]:
            return f"another {key} than the agent's"
    theirs = request.get("env")
    if not isinstance(theirs, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in theirs.items()
    ):
        return "no environment"
    theirs = agent_client.shared_environment(theirs)
    ours = agent_client.shared_environment(agent.identity["env"])
    if theirs != ours:
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        # Names only: a variable's value may be a token.
        return "another environment than the agent's: " + ", ".join(differ[:5])
    cwd = request.get("cwd")
    if not isinstance(cwd, str) or not os.path.isdir(cwd):
        return "the working directory is gone"
    if not isinstance(request.get("umask"), int):
        return "no umask"
    return None


def _run_forked(agent: Agent, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    """Run the command in a fork; the exit status it ends with. Should the client go away
    first (Ctrl-C, killed), the command is interrupted as it would have been in the
    client's own process: SIGINT, then SIGKILL after KILL_AFTER seconds."""
    # The stop signals are blocked here (`serve`): the child resets the agent's handlers
    # before it unblocks them, so it never runs them (nor cleans up the agent's socket).
    pid = os.fork()
    if pid == 0:
        agent.listener.close()
        conn.close()
        _child(request, fds)  # never returns
    return _wait(pid, conn)


def _wait(pid: int, conn: socket.socket) -> int:
    import select

    try:
        ended: Any = os.pidfd_open(pid)
    except (AttributeError, OSError):
        ended = None  # no pidfd here: look every 50 ms
    try:
        interrupted_at: float | None = None
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(wait_status)
                return code if code >= 0 else 128 - code  # signal N: 128 + N, as a shell says
            if interrupted_at is not None:
                left = interrupted_at + KILL_AFTER - time.monotonic()
                if left <= 0:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    _, wait_status = os.waitpid(pid, 0)
                    return 128 + signal.SIGKILL
                select.select([ended] if ended is not None else [], [], [], min(left, 0.05))
                continue
            watch = [conn] if ended is None else [conn, ended]
            readable, _, _ = select.select(watch, [], [], 0.05 if ended is None else None)
            if conn in readable and not _client_still_there(conn):
                # The client went away (Ctrl-C, killed): as in its own process, SIGINT.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
                interrupted_at = time.monotonic()
    finally:
        if ended is not None:
            os.close(ended)


def _client_still_there(conn: socket.socket) -> bool:
    try:
        # A client sends nothing after its go-ahead: anything else is read and dropped.
        return conn.recv(4096, socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _child(request: dict[str, Any], fds: list[int]) -> None:
    code = 1
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        # As Python sets them up for a new process: stdout line-buffered only on a terminal.
        sys.stdout.reconfigure(line_buffering=os.isatty(1))  # type: ignore[union-attr]
        from commands.main import run

        run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        # As `secrets` itself: a traceback only when asked for (it could show a value).
        with contextlib.suppress(BaseException):
            if os.environ.get("SECRETS_LEDGER_DEBUG") == "1":
                import traceback

                traceback.print_exc()
            else:
                print("internal error in the agent's child", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _sources() -> dict[str, int]:
    """Modification times of every imported module's file."""
    found: dict[str, int] = {}
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if isinstance(name, str):
            with contextlib.suppress(OSError):
                found[name] = os.stat(name).st_mtime_ns
    return found


def _changed_source(agent: Agent) -> str | None:
    for name, mtime in agent.sources.items():
        try:
            if os.stat(name).st_mtime_ns != mtime:
                return name
        except OSError:
            return name
    return None


def _status(agent: Agent) -> dict[str, Any]:
    return {
        "protocol": agent_client.PROTOCOL,
        "pid": os.getpid(),
        "socket": agent.path,
        "started": agent.started,
        "served": agent.served,
        "idle_seconds": agent.idle_seconds,
    }


@contextlib.contextmanager
def _socket_lock(path: str) -> Iterator[None]:
    """Held while a socket file is checked, cleared, bound or removed."""
    import fcntl

    lock = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def _remove_socket(agent: Agent) -> None:
    """Remove the socket file, unless another agent listens there since."""
    agent.listener.close()
    with contextlib.suppress(OSError), _socket_lock(agent.path):
        try:
            agent_client.connect(agent.path).close()
        except OSError:
            os.unlink(agent.path)


READY = "agent ready"


def interpreter_flags() -> list[str]:
    """The options of this interpreter that decide what the agent may import and how it
    warns, read from the public `sys.flags` and `sys.warnoptions`: an agent started from an
    isolated (`-I`) or environment-blind (`-E`) `secrets` must be just as isolated."""
    flags = sys.flags
    args = ["-" + "O" * flags.optimize] if flags.optimize else []
    if flags.isolated:
        args.append("-I")
    else:
        args += [
            opt
            for on, opt in (
                (flags.ignore_environment, "-E"),
                (flags.no_user_site, "-s"),
                (flags.safe_path, "-P"),
            )
            if on
        ]
    args += [opt for on, opt in ((flags.no_site, "-S"), (flags.dont_write_bytecode, "-B")) if on]
    warnings = list(sys.warnoptions)
    if flags.dev_mode:
        warnings.remove("default")  # `-X dev` adds it; passing it again would double it
    args += [f"-W{option}" for option in warnings]
    if flags.dev_mode:
        args += ["-X", "dev"]
    return args


def command_line(idle_seconds: float, *, foreground: bool) -> list[str]:
    """How `secrets agent start` starts the agent: a new process of this interpreter, with
    its flags and import path, running only this module (so no command ever ran in it)."""
    import json

    flags = interpreter_flags()
    # Not `-m`: that would find `commands` on the new process's own path before this one's
    # is in place, and could load it from elsewhere than the `ledger` it then imports.
    start = (
        "import json, runpy, sys; options = json.loads(sys.argv[1]); "
        "sys.path[:] = options['path']; "
        "runpy.run_module('commands.agent.server', run_name='__main__', alter_sys=True)"
    )
    return [
        sys.executable,
        *flags,
        "-c",
        start,
        json.dumps({"idle_seconds": idle_seconds, "path": sys.path, "foreground": foreground}),
    ]


def main(argv: list[str]) -> int:
    import json

    options = json.loads(argv[0])
    # The import path of the `secrets` that started it (set before this module was found).
    if sys.path != options["path"]:
        print("error: the agent's import path is not its starter's", file=sys.stderr)
        return 1
    path = agent_client.socket_path()
    try:
        agent = prepare(path, float(options["idle_seconds"]))
    except AgentProblem as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    if options["foreground"]:
        print(f"agent listening at {path} (pid {os.getpid()})", file=sys.stderr, flush=True)
    else:
        # The starter waits for this line on our stderr, then we let go of its pipe.
        print(READY, file=sys.stderr, flush=True)
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        os.chdir("/")
    with contextlib.suppress(KeyboardInterrupt):
        serve(agent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
