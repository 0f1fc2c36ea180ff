"""The client side of `secrets agent`: hand a read command to a running agent, or say why not.

Imported by the `secrets` entry point before anything else, so it uses only what the
interpreter has loaded at start-up; `socket` and `json` are imported only once an agent's
socket exists. Whatever goes wrong before this process tells the agent to go ahead, the caller
runs the command itself: the agent only ever makes a command faster, never different.
"""

from __future__ import annotations

import os
import sys

# Not `typing.TYPE_CHECKING`: importing typing costs this module's whole budget again.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AGENT_VARIABLE = "SECRETS_LEDGER_AGENT"  # "off": never hand a command to an agent
SOCKET_VARIABLE = "SECRETS_LEDGER_AGENT_SOCKET"
PROTOCOL = 2
# Read commands that never prompt: the agent's children have no terminal of their own.
SERVED = frozenset({"get", "versions", "list"})
# Variables that may differ between the client and the agent: the shell's and the terminal's
# bookkeeping, which nothing here reads, and two of ours that are read only while a command
# runs (the agent's child runs with the client's whole environment). Every other variable must
# be the same in both: a module may read one when it is imported, and the agent imported it.
SHELL_VARIABLES = frozenset(
    {
        "SECRETS_LEDGER_DEBUG",
        "SECRETS_LEDGER_TOKEN",
        "_",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "COLUMNS",
        "LINES",
        "WINDOWID",
        "TMUX_PANE",
        "TERM_SESSION_ID",
        "GNOME_TERMINAL_SCREEN",
        "ITERM_SESSION_ID",
        "KONSOLE_DBUS_WINDOW",
        "KONSOLE_DBUS_SESSION",
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
    }
)
MAX_REQUEST = 1 << 20
# How long a client waits for the agent to take its command (the agent runs one at a time),
# and the agent for the rest of a request: past it, each goes on without the other.
WAIT_SECONDS = 5.0
GO = b"go\n"


class AgentLost(Exception):
    """The agent accepted a command and went away before saying how it ended."""


class AgentTrouble(Exception):
    """`status` or `stop` found an agent's socket it cannot use: one that does not answer,
    or one in a place it does not trust."""


def socket_path(env: Any = os.environ) -> str:
    """Where a user's agent listens: $SECRETS_LEDGER_AGENT_SOCKET, else a directory of the
    user's own under $XDG_RUNTIME_DIR, else under /tmp."""
    explicit = str(env.get(SOCKET_VARIABLE, "")).strip()
    if explicit:
        return explicit
    runtime = str(env.get("XDG_RUNTIME_DIR", "")).strip()
    if runtime:
        return os.path.join(runtime, "secrets-ledger", "agent.sock")
    # Used only once private_directory_problem finds it this user's own and closed to others.
    return os.path.join("/tmp", f"secrets-ledger-{os.getuid()}", "agent.sock")  # noqa: S108


def private_directory_problem(directory: str) -> str | None:
    """Why the socket's directory cannot be trusted (another user's, or open to others)."""
    import stat

    try:
        found = os.lstat(directory)  # a link planted by someone else is not the directory
    except OSError as exc:
        return f"{directory}: {exc.strerror}"
    if not stat.S_ISDIR(found.st_mode):
        return f"{directory} is not a directory"
    if found.st_uid != os.getuid():
        return f"{directory} belongs to another user"
    if found.st_mode & 0o077:
        return f"{directory} is open to other users (mode {found.st_mode & 0o777:o})"
    return None


def shared_environment(env: Any) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in SHELL_VARIABLES}


IDENTITY_KEYS = ("executable", "flags", "options", "path", "groups", "env")


def identity() -> dict[str, Any]:
    """What must match between a client and the agent for the agent to run its command as
    the client would: the interpreter, its flags and options, its import path, the groups
    the process runs with, and the environment (`shared_environment` of it)."""
    return {
        "executable": sys.executable,
        "flags": list(sys.flags),
        "options": [list(sys.warnoptions), sorted(map(str, sys._xoptions.items()))],
        "path": list(sys.path),
        "groups": [os.getgid(), os.getegid(), sorted(os.getgroups())],
        "env": dict(os.environ),
    }


def connect(path: str) -> Any:
    """A connection to the agent at `path`, after checking that it runs as this user."""
    import socket

    problem = private_directory_problem(os.path.dirname(path) or ".")
    if problem is not None:
        raise OSError(problem)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        if peer(conn)[1] != os.getuid():
            raise OSError(f"the agent at {path} runs as another user")
    except BaseException:
        conn.close()
        raise
    return conn


def peer(conn: Any) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    import socket
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def send(conn: Any, message: dict[str, Any]) -> None:
    import json

    body = json.dumps(message).encode()
    conn.sendall(len(body).to_bytes(4, "big") + body)


def replies(conn: Any) -> Any:
    """The agent's answers, one JSON document a line, until it closes the connection."""
    import json

    with conn.makefile("rb") as stream:
        for line in stream:
            yield json.loads(line)


def control(kind: str) -> dict[str, Any] | None:
    """Ask the agent for `status` or to `stop`; None when no agent is there. Raises
    AgentTrouble for a socket in an untrusted place or an agent silent for WAIT_SECONDS (it
    runs one command at a time: a long one holds the answer back)."""
    path = socket_path()
    directory = os.path.dirname(path) or "."
    # Before looking for the socket: a directory this user cannot search hides it.
    if os.path.lexists(directory):
        problem = private_directory_problem(directory)
        if problem is not None:
            raise AgentTrouble(f"cannot use the agent socket {path}: {problem}")
    if not os.path.exists(path):
        return None
    try:
        conn = connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # an agent that died and left its socket behind
    except OSError as exc:
        raise AgentTrouble(f"cannot use the agent socket {path}: {exc}") from None
    with conn:
        pid = peer(conn)[0]
        conn.settimeout(WAIT_SECONDS)
        try:
            send(conn, {"protocol": PROTOCOL, "control": kind})
            for reply in replies(conn):
                return dict(reply)
        except TimeoutError:
            raise AgentTrouble(
                f"the agent at {path} (pid {pid}) did not answer within {WAIT_SECONDS:g} s "
                f"(it may be running a long command); try again, or stop it with `kill {pid}`"
            ) from None
        except (OSError, ValueError):
            return None  # it went away meanwhile
    return None


def run_by_agent(argv: list[str]) -> int | None:
    """The exit status of `argv` run by the agent, or None when the caller must run it
    itself (no agent, another environment, a command it does not serve, ...). Raises
    AgentLost when the agent was told to go ahead and vanished: the command may have run."""
    if not argv or argv[0] not in SERVED or os.environ.get(AGENT_VARIABLE, "") == "off":
        return None
    path = socket_path()
    if not os.path.exists(path):
        return None
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        # A closed standard stream: the socket would take its number and be handed over
        # as, say, stdout. Runs as `secrets` itself would, closed stream and all.
        _explain("a standard stream is closed")
        return None
    try:
        conn = connect(path)
    except OSError as exc:
        _explain(str(exc))
        return None
    with conn:
        try:
            request = {
                "protocol": PROTOCOL,
                "argv": [sys.argv[0], *argv],
                "cwd": os.getcwd(),
                "umask": _umask(),
                **identity(),
            }
            conn.settimeout(WAIT_SECONDS)
            send(conn, request)
            answers = replies(conn)
            first = next(answers, None)
            if first is None or first.get("ready") is not True:
                _explain(first.get("refused", "no answer") if first else "no answer")
                return None
            # The point of no return: the agent runs the command only once it reads this,
            # and from here this process never runs it itself. The standard streams go with
            # it: a request waiting in the agent's queue holds none of them open.
            import socket

            socket.send_fds(conn, [GO], [0, 1, 2])
        except (OSError, ValueError) as exc:
            _explain(f"no answer ({exc})")
            return None
        try:
            conn.settimeout(None)
            last = next(answers, None)
        except (OSError, ValueError):
            last = None
        if last is None or not isinstance(last.get("exit"), int):
            raise AgentLost(path)
        status: int = last["exit"]
        return status


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _explain(reason: str) -> None:
    if os.environ.get("SECRETS_LEDGER_DEBUG") == "1":
        print(f"agent not used: {reason}", file=sys.stderr)
