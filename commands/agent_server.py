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
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from commands import agent_client

# What a served command imports, loaded once by the agent: the point of it.
PRELOAD = (
    "commands.main",
    "commands.secrets_cmds",
    "commands.runtime",
    "commands.oplog",
    "commands.fastparams",
    "commands.typerfast",
    "commands.exit_codes",
    "ledger.config",
    "ledger.application",
    "ledger.records",
    "ledger.session_file",
    "ledger.vault.keyring_vault",
    "keyring",
    "keyring.backends.SecretService",
    "eventsourcing.sqlite",
    "projections.views",
)


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
    for name in PRELOAD:
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
        raise AgentProblem(problem)
    if len(os.fsencode(path)) >= 107:
        raise AgentProblem(f"socket path too long for a Unix socket: {path}")
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
    """Answer until idle for `idle_seconds`, told to stop, SIGTERM, or the code changed."""

    def on_term(_signum: int, _frame: Any) -> None:
        raise _Stopping

    signal.signal(signal.SIGTERM, on_term)
    agent.listener.settimeout(agent.idle_seconds)
    try:
        while True:
            try:
                conn, _ = agent.listener.accept()
            except TimeoutError:
                return
            with conn:
                conn.settimeout(agent_client.WAIT_SECONDS)
                if not _answer(agent, conn):
                    return
    except _Stopping:
        return
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _remove_socket(agent)


class _Stopping(Exception):
    pass


def _answer(agent: Agent, conn: socket.socket) -> bool:
    """Answer one connection; False when the agent must stop."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    if struct.unpack("3i", creds)[1] != os.getuid():
        return True  # another user's process: no answer at all
    fds: list[int] = []
    try:
        request, fds = _receive(conn)
        if request.get("protocol") != agent_client.PROTOCOL:
            _reply(conn, {"refused": "another version of the agent protocol"})
            return True
        kind = request.get("control")
        if kind == "status":
            _reply(conn, _status(agent))
            return True
        if kind == "stop":
            _reply(conn, {"stopped": os.getpid()})
            return False
        changed = _changed_source(agent)
        if changed is not None:
            _reply(conn, {"refused": f"the agent's code changed on disk ({changed}); it stops"})
            return False
        refusal = _refusal(agent, request, fds)
        if refusal is not None:
            _reply(conn, {"refused": refusal})
            return True
        _reply(conn, {"ready": True})
        if _read_exactly(conn, len(agent_client.GO)) != agent_client.GO:
            return True  # the client gave up waiting and runs the command itself
        conn.settimeout(None)
        status = _run_forked(agent, conn, request, fds)
        agent.served += 1
        with contextlib.suppress(OSError):
            _reply(conn, {"exit": status})
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return True  # a client that went away or sent nonsense: it runs the command itself
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    import json

    head, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    size = int.from_bytes(head, "big") if len(head) == 4 else -1
    if not 0 <= size <= agent_client.MAX_REQUEST:
        raise ValueError("bad request length")
    request = json.loads(_read_exactly(conn, size))
    if not isinstance(request, dict):
        raise ValueError("bad request")
    return request, list(fds)


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


def _refusal(agent: Agent, request: dict[str, Any], fds: list[int]) -> str | None:
    argv = request.get("argv")
    if not isinstance(argv, list) or len(argv) < 2 or not all(isinstance(a, str) for a in argv):
        return "no command"
    if argv[1] not in agent_client.SERVED:
        return f"the agent does not run `{argv[1]}`"
    if len(fds) != 3:
        return "the client's standard streams did not arrive"
    for key in ("executable", "flags", "path"):
        if request.get(key) != agent.identity[key]:
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
    pid = os.fork()
    if pid == 0:
        agent.listener.close()
        conn.close()
        _child(request, fds)  # never returns
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says


def _child(request: dict[str, Any], fds: list[int]) -> None:
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
    except BaseException:  # never a traceback: it could show a value
        with contextlib.suppress(BaseException):
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
        "pid": os.getpid(),
        "socket": agent.path,
        "started": agent.started,
        "served": agent.served,
        "idle_seconds": agent.idle_seconds,
    }


def _remove_socket(agent: Agent) -> None:
    """Remove the socket file, unless another agent listens there since."""
    agent.listener.close()
    try:
        agent_client.connect(agent.path).close()
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(agent.path)


READY = "agent ready"


def command_line(idle_seconds: float, *, foreground: bool) -> list[str]:
    """How `secrets agent start` starts the agent: a new process of this interpreter, with
    its flags and import path, running only this module (so no command ever ran in it)."""
    import json
    import subprocess

    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [
        sys.executable,
        *flags,
        "-m",
        "commands.agent_server",
        json.dumps({"idle_seconds": idle_seconds, "path": sys.path, "foreground": foreground}),
    ]


def main(argv: list[str]) -> int:
    import json

    options = json.loads(argv[0])
    # The import path of the `secrets` that started it, so the agent loads what it would.
    sys.path[:] = options["path"]
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
