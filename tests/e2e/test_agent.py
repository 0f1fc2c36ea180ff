"""`secrets agent`: read commands handed to a running agent behave exactly as when the CLI runs
them itself (output, exit status, recorded events), on every vault and store; the agent is
not used, and the command still runs, whenever it cannot be trusted to run it the same way."""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clikit import REPO, Ledger

SERVICE, NAME = "nexus", "mcp.bun.apiKey"
VALUE = "sk-agent0test0value0" + "Q" * 24


@pytest.fixture
def agent(ledger: Ledger) -> Iterator[Ledger]:
    """`ledger` with an agent of its own (a private socket), stopped afterwards."""
    # Short: a Unix socket's path has at most 107 bytes; pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix="sla-")
    ledger.env["SECRETS_LEDGER_AGENT_SOCKET"] = os.path.join(directory, "agent.sock")
    ledger.set(SERVICE, NAME, VALUE)
    started = ledger.run("agent", "start")
    assert started.returncode == 0, started.stderr
    try:
        yield ledger
    finally:
        pid = _agent_pid(ledger)
        ledger.run("agent", "stop")
        if pid is not None:
            _wait_gone(pid)
        shutil.rmtree(directory, ignore_errors=True)


def _agent_pid(ledger: Ledger) -> int | None:
    found = ledger.run("agent", "status")
    if found.returncode != 0:
        return None
    return int(found.stdout.split()[2])


def _served(ledger: Ledger) -> int:
    found = ledger.run("agent", "status")
    assert found.returncode == 0, found.stderr
    return int(found.stdout.split("started ")[1].split(", ")[1].split()[0])


def _wait_gone(pid: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"agent {pid} still running")


def _children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def _reads(ledger: Ledger) -> int:
    return len(ledger.events("ledger.records:ReadReceipt"))


COMMANDS = [
    ("get", "--service", SERVICE, "--name", NAME),
    ("get", "--service", SERVICE, "--name", NAME, "--output", "json"),
    ("get", "--service", SERVICE, "--name", "missing.apiKey"),
    ("get", "--service", SERVICE, "--name", "bad name!"),
    ("get", "--service", SERVICE),
    ("get", "--service", SERVICE, "--name", NAME, "--version", "9"),
    ("versions", "--service", SERVICE, "--name", NAME),
    ("list",),
    ("list", "--output", "json"),
]


def test_read_commands_run_by_the_agent_answer_as_the_cli_does(agent: Ledger) -> None:
    for args in COMMANDS:
        served = _served(agent)
        by_agent = agent.run(*args)
        assert _served(agent) == served + 1, args  # the agent did run it
        direct = agent.run(*args, env={"SECRETS_LEDGER_AGENT": "off"})
        assert (by_agent.returncode, by_agent.stdout, by_agent.stderr) == (
            direct.returncode,
            direct.stdout,
            direct.stderr,
        ), args
    assert agent.run(*COMMANDS[0]).stdout == VALUE


def test_a_read_by_the_agent_is_recorded_and_a_refusal_too(agent: Ledger) -> None:
    before = _reads(agent)
    assert agent.run("get", "--service", SERVICE, "--name", NAME).stdout == VALUE
    assert _reads(agent) == before + 1
    denials = len(agent.events("ledger.records:Denial"))
    assert agent.run("auth", "logout").returncode == 0
    refused = agent.run("get", "--service", SERVICE, "--name", NAME)
    assert refused.returncode == 4, refused.stderr
    assert refused.stdout == ""
    assert len(agent.events("ledger.records:Denial")) == denials + 1
    assert _reads(agent) == before + 1
    # The token variable is the caller's own, read when the command runs.
    with_token = agent.run(
        "get", "--service", SERVICE, "--name", NAME, env={"SECRETS_LEDGER_TOKEN": agent.token}
    )
    assert (with_token.returncode, with_token.stdout) == (0, VALUE), with_token.stderr
    assert _served(agent) == 3


def test_the_value_reaches_the_callers_own_terminal(agent: Ledger) -> None:
    """The agent writes into the caller's standard output itself: on a terminal `get` adds
    the newline it adds for people, and nothing else is in between."""
    outputs = []
    for extra in ({}, {"SECRETS_LEDGER_AGENT": "off"}):
        leader, follower = pty.openpty()
        try:
            done = subprocess.run(
                [agent.python, "-m", "commands", "get", "--service", SERVICE, "--name", NAME],
                env={**agent.env, **extra},
                cwd=agent.cwd,
                stdout=follower,
                stderr=subprocess.PIPE,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            os.close(follower)
            follower = -1
            outputs.append(_read_all(leader))
        finally:
            os.close(leader)
            if follower != -1:
                os.close(follower)
    assert outputs[0] == outputs[1] == (VALUE + "\r\n").encode()
    assert _served(agent) == 1


def _read_all(fd: int) -> bytes:
    found = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side of the terminal is closed
            return found
        if not chunk:
            return found
        found += chunk


def test_another_environment_runs_the_command_itself(agent: Ledger) -> None:
    other = agent.run(
        "get",
        "--service",
        SERVICE,
        "--name",
        NAME,
        env={"SOME_OTHER_SETTING": "1", "SECRETS_LEDGER_DEBUG": "1"},
    )
    assert (other.returncode, other.stdout) == (0, VALUE)
    assert "agent not used: another environment than the agent's: SOME_OTHER_SETTING" in (
        other.stderr
    )
    assert "Q" * 24 not in other.stderr
    assert _served(agent) == 0
    # A command it does not serve is never sent.
    assert (
        agent.run(
            "set", "--service", SERVICE, "--name", NAME, "--value-stdin", input=VALUE + "2"
        ).returncode
        == 0
    )
    assert _served(agent) == 0


def test_the_agent_stops_when_its_code_changes_on_disk(agent: Ledger) -> None:
    pid = _agent_pid(agent)
    assert pid is not None
    source = REPO / "commands" / "agent" / "client.py"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        found = agent.run("get", "--service", SERVICE, "--name", NAME)
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (found.returncode, found.stdout) == (0, VALUE)
    _wait_gone(pid)
    assert not Path(agent.env["SECRETS_LEDGER_AGENT_SOCKET"]).exists()
    assert agent.run("agent", "status").returncode == 3


def test_a_dead_agents_socket_is_no_obstacle(agent: Ledger) -> None:
    pid = _agent_pid(agent)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert Path(agent.env["SECRETS_LEDGER_AGENT_SOCKET"]).exists()
    found = agent.run("get", "--service", SERVICE, "--name", NAME)
    assert (found.returncode, found.stdout) == (0, VALUE), found.stderr
    again = agent.run("agent", "start")
    assert again.returncode == 0, again.stderr
    assert agent.run("get", "--service", SERVICE, "--name", NAME).stdout == VALUE
    assert _served(agent) == 1


def test_one_agent_at_a_time_and_it_stops_when_idle(agent: Ledger) -> None:
    second = agent.run("agent", "start")
    assert second.returncode == 1
    assert "already listening" in second.stderr
    assert agent.run("agent", "stop").returncode == 0
    short = agent.run("agent", "start", "--idle-minutes", "0.05")
    assert short.returncode == 0, short.stderr
    pid = _agent_pid(agent)
    assert pid is not None
    _wait_gone(pid, seconds=20)
    assert not Path(agent.env["SECRETS_LEDGER_AGENT_SOCKET"]).exists()


def test_a_socket_directory_open_to_others_is_refused(ledger: Ledger) -> None:
    directory = tempfile.mkdtemp(prefix="sla-")
    try:
        os.chmod(directory, 0o755)  # noqa: S103 - the mistake under test
        ledger.env["SECRETS_LEDGER_AGENT_SOCKET"] = os.path.join(directory, "agent.sock")
        refused = ledger.run("agent", "start")
        assert refused.returncode == 1
        assert "open to other users" in refused.stderr
        assert not Path(ledger.env["SECRETS_LEDGER_AGENT_SOCKET"]).exists()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_status_and_stop_say_when_an_agent_does_not_answer(ledger: Ledger) -> None:
    """An agent that holds the connection without answering (busy with a long command, or
    wedged) makes `status` and `stop` fail after the wait, naming its pid; a socket in a
    directory open to others is reported, not taken for "no agent"."""
    import socket

    directory = tempfile.mkdtemp(prefix="sla-")
    path = os.path.join(directory, "agent.sock")
    ledger.env["SECRETS_LEDGER_AGENT_SOCKET"] = path
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.bind(path)
        silent.listen(4)  # connections queue; none is ever answered
        for kind in ("status", "stop"):
            started = time.monotonic()
            found = ledger.run("agent", kind)
            assert found.returncode == 1, (kind, found.stdout, found.stderr)
            assert "did not answer within 5 s" in found.stderr
            assert f"pid {os.getpid()}" in found.stderr
            assert 4.5 < time.monotonic() - started < 30
        os.chmod(directory, 0o755)  # noqa: S103 - the mistake under test
        for kind in ("status", "start"):  # the same words from each
            exposed = ledger.run("agent", kind)
            assert exposed.returncode == 1, (kind, exposed.stderr)
            assert f"cannot use the agent socket {path}:" in exposed.stderr, kind
            assert "open to other users" in exposed.stderr, kind
    finally:
        silent.close()
        shutil.rmtree(directory, ignore_errors=True)
    gone = ledger.run("agent", "status")
    assert gone.returncode != 0 and "no agent is running" in gone.stderr


def test_a_stalled_connection_does_not_stall_the_agent(agent: Ledger) -> None:
    """A client that connects and sends nothing holds the agent for at most its wait; a
    command meanwhile still gets its answer, run by whichever side, and never twice."""
    import socket

    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(agent.env["SECRETS_LEDGER_AGENT_SOCKET"])
    try:
        before = _reads(agent)
        meanwhile = agent.run("get", "--service", SERVICE, "--name", NAME)
        assert (meanwhile.returncode, meanwhile.stdout) == (0, VALUE), meanwhile.stderr
        assert _reads(agent) == before + 1
    finally:
        stalled.close()
    served = _served(agent)
    assert agent.run("get", "--service", SERVICE, "--name", NAME).stdout == VALUE
    assert _served(agent) == served + 1


@contextlib.contextmanager
def _get_waiting_for_the_lock(agent: Ledger, pid: int) -> Iterator[subprocess.Popen[bytes]]:
    """A `get` handed to the agent `pid` and held there: the ledger's write lock, which its
    read receipt needs, is taken until the block ends."""
    import sqlite3

    holder = sqlite3.connect(agent.home / "ledger.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        caller = subprocess.Popen(
            [agent.python, "-m", "commands", "get", "--service", SERVICE, "--name", NAME],
            env=agent.env,
            cwd=agent.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # As on a terminal: a background job of a script (CI's, say) inherits SIGINT
            # ignored, and Python then never turns it into KeyboardInterrupt.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 30
        while not _children(pid):  # handed over: the agent's fork runs it
            assert time.monotonic() < deadline and caller.poll() is None
            time.sleep(0.05)
        yield caller
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.sqlite_file
def test_an_abandoned_command_is_interrupted_as_in_the_callers_own_process(
    agent: Ledger,
) -> None:
    """Ctrl-C on a `get` waiting for the ledger's write lock: the caller leaves at once
    (130), the agent interrupts the command (nothing recorded, no value printed later) and
    goes on serving."""
    pid = _agent_pid(agent)
    assert pid is not None
    before = _reads(agent)
    served = _served(agent)
    with _get_waiting_for_the_lock(agent, pid) as caller:
        caller.send_signal(signal.SIGINT)
        assert caller.wait(timeout=10) == 130
        # The pipe ends when the interrupted command has ended: it holds the other copy.
        out, err = caller.communicate(timeout=10)
        assert VALUE.encode() not in out
        assert b"Traceback" not in err
        assert _served(agent) == served + 1
        assert _children(pid) == []  # nothing left running
    assert _reads(agent) == before
    assert agent.run("get", "--service", SERVICE, "--name", NAME).stdout == VALUE


def test_a_closed_standard_stream_is_dev_null(agent: Ledger) -> None:
    args = ["get", "--service", SERVICE, "--name", NAME]
    for env in ({}, {"SECRETS_LEDGER_AGENT": "off"}):
        done = subprocess.run(
            [agent.python, "-m", "commands", *args],
            env={**agent.env, **env},
            cwd=agent.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            close_fds=True,
            pass_fds=(),
            preexec_fn=lambda: os.close(1),  # the closed stdout under test
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, b"")  # as `>/dev/null`
    assert _served(agent) == 1  # with stdout on /dev/null, the agent may run it


def test_nonsense_on_the_socket_leaves_nothing_behind(agent: Ledger) -> None:
    import socket

    pid = _agent_pid(agent)
    assert pid is not None
    open_fds = len(os.listdir(f"/proc/{pid}/fd"))
    for junk in (b"", b"\x00\x00", b"\x00\x00\x00\x05{}", b"\x00\x00\x00\x02[]", b"\xff" * 8):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(agent.env["SECRETS_LEDGER_AGENT_SOCKET"])
            socket.send_fds(conn, [junk or b" "], [0, 1, 2])
    assert agent.run("get", "--service", SERVICE, "--name", NAME).stdout == VALUE
    assert len(os.listdir(f"/proc/{pid}/fd")) == open_fds
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)
    assert not Path(agent.env["SECRETS_LEDGER_AGENT_SOCKET"]).exists()


@pytest.mark.sqlite_file
def test_a_stop_signal_waits_for_the_command_in_hand(agent: Ledger) -> None:
    """SIGTERM to the agent while it runs a command: the command finishes and its caller
    gets its exit status, then the agent stops."""
    pid = _agent_pid(agent)
    assert pid is not None
    with _get_waiting_for_the_lock(agent, pid) as caller:
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        assert caller.poll() is None  # still waiting for the lock, agent still there
    out, err = caller.communicate(timeout=30)
    assert (caller.returncode, out) == (0, VALUE.encode()), err
    _wait_gone(pid)
    assert not Path(agent.env["SECRETS_LEDGER_AGENT_SOCKET"]).exists()


def test_the_agent_has_loaded_what_the_ledgers_store_needs(agent: Ledger) -> None:
    """On a shared ledger (SECRETS_LEDGER_DATABASE_URL), the PostgreSQL driver too: each
    command would otherwise import it again in its fork."""
    pid = _agent_pid(agent)
    assert pid is not None
    mapped = Path(f"/proc/{pid}/maps").read_text()
    assert ("psycopg" in mapped) == (agent.store == "postgres")
    assert "_sqlite3" in mapped
