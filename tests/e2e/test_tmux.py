"""`secrets tmux`: the configuration block, installed idempotently and removed exactly, and the
binding proven with a real tmux server and a real client on a pseudo-terminal (send-keys
bypasses key tables, so it cannot prove a binding)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.clikit import REPO, Ledger

SECTIONS = ("Access Status", "Rotation Status", "Recent Access Logs", "Available Commands")
COLUMNS, ROWS = 160, 90  # the whole dashboard: Live cuts what does not fit


def test_snippet_binds_ctrl_space_s_without_touching_the_prefix(ledger: Ledger) -> None:
    out = ledger.run("tmux", "snippet").stdout
    assert "bind-key -n C-Space switch-client -T secrets\n" in out
    # The running `secrets` by its full path (here `python -m commands`): issue 22.
    this = f'"{sys.executable} -m commands dashboard --watch 5"'
    failed_stays = " \\; set-option -w remain-on-exit failed\n"
    assert f"bind-key -T secrets S new-window -S -n secrets {this}{failed_stays}" in out
    assert "prefix" not in out.replace("the prefix is", "")
    with_prefix = ledger.run("tmux", "snippet", "--prefix").stdout
    assert "set-option -g prefix C-Space\n" in with_prefix
    assert f"bind-key S new-window -S -n secrets {this}{failed_stays}" in with_prefix
    odd = ledger.run("tmux", "snippet", "--command", 'echo "$HOME" \\x').stdout
    assert r'new-window -S -n secrets "echo \"\$HOME\" \\x"' in odd


def test_install_is_idempotent_and_uninstall_removes_exactly_the_block(
    ledger: Ledger, tmp_path: Path
) -> None:
    conf = tmp_path / "tmux.conf"
    original = "set -g mouse on\nbind r source-file ~/.tmux.conf\n"
    conf.write_text(original)
    conf.chmod(0o600)
    first = ledger.run("tmux", "install", "--file", str(conf))
    assert first.returncode == 0 and "installed" in first.stderr
    installed = conf.read_text()
    assert installed.startswith(original)
    assert installed.count("# >>> secrets-ledger tmux >>>") == 1
    again = ledger.run("tmux", "install", "--file", str(conf))
    assert again.returncode == 0 and "nothing changed" in again.stderr
    assert conf.read_text() == installed
    # Different options replace the block in place rather than adding a second one.
    ledger.run("tmux", "install", "--file", str(conf), "--prefix")
    assert conf.read_text().count("# >>> secrets-ledger tmux >>>") == 1
    assert "set-option -g prefix C-Space" in conf.read_text()
    conf.write_text(conf.read_text() + "set -g history-limit 5000\n")
    removed = ledger.run("tmux", "uninstall", "--file", str(conf))
    assert removed.returncode == 0 and "removed" in removed.stderr
    assert conf.read_text() == original + "set -g history-limit 5000\n"
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "nothing changed" in ledger.run("tmux", "uninstall", "--file", str(conf)).stderr


def test_install_creates_the_file_and_refuses_broken_markers(
    ledger: Ledger, tmp_path: Path
) -> None:
    conf = tmp_path / "sub" / "tmux.conf"
    assert ledger.run("tmux", "install", "--file", str(conf)).returncode == 0
    assert conf.read_text().startswith("# >>> secrets-ledger tmux >>>\n")
    assert ledger.run("tmux", "uninstall", "--file", str(conf)).returncode == 0
    assert conf.read_text() == ""
    conf.write_text("# >>> secrets-ledger tmux >>>\nbind x kill-server\n")
    broken = ledger.run("tmux", "uninstall", "--file", str(conf))
    assert broken.returncode == 5 and "markers" in broken.stderr
    assert conf.read_text() == "# >>> secrets-ledger tmux >>>\nbind x kill-server\n"


# -- a real tmux ---------------------------------------------------------------------------------


class Tmux:
    def __init__(self, socket: Path, conf: Path, env: dict[str, str]) -> None:
        self.base = ["tmux", "-S", str(socket), "-f", str(conf)]
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [*self.base, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def windows(self) -> list[str]:
        return self("list-windows", "-t", "main", "-F", "#{window_name}").split()

    def active(self) -> str:
        return self("display-message", "-p", "-t", "main", "#{window_name}").strip()


@contextmanager
def tmux_with_client(socket: Path, conf: Path, env: dict[str, str]) -> Iterator[tuple[Tmux, int]]:
    """A private tmux server on `socket` using `conf`, with a real client attached on a pty."""
    tmux = Tmux(socket, conf, {**env, "TERM": "xterm-256color"})
    tmux("new-session", "-d", "-s", "main", "-x", str(COLUMNS), "-y", str(ROWS))
    pid, fd = pty.fork()
    if pid == 0:  # the client: a terminal of a known size, then tmux attach
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        os.execvpe(tmux.base[0], [*tmux.base, "attach-session", "-t", "main"], tmux.env)  # noqa: S606
    stop = threading.Event()

    def drain() -> None:  # a terminal that nobody reads would stall the client
        while not stop.is_set():
            try:
                if not os.read(fd, 65536):
                    return
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_for(lambda: tmux("list-clients", "-t", "main").strip() != "", "client attach")
        yield tmux, fd
    finally:
        stop.set()
        subprocess.run([*tmux.base, "kill-server"], env=tmux.env, capture_output=True, check=False)
        try:
            os.waitpid(pid, 0)
        finally:
            os.close(fd)


def wait_for(check: object, what: str, timeout: float = 60) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def zombie_exit(pid: int) -> tuple[str, str] | None:
    """(exit status, signal) of `pid` if it has exited but is not reaped yet, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # field 3 (state) first; the name may hold spaces
    if fields[0] != "Z" or len(fields) < 50:
        return None
    code = int(fields[49])  # field 52, exit_code: the status as waitpid(2) reports it
    if os.WIFSIGNALED(code):
        return "", str(os.WTERMSIG(code))
    return str(os.WEXITSTATUS(code)), ""


def press_ctrl_space_s(fd: int) -> None:
    os.write(fd, b"\x00")  # what a terminal sends for C-Space
    time.sleep(0.2)
    os.write(fd, b"S")


@pytest.mark.parametrize("prefix", [False, True], ids=["chord", "prefix"])
def test_ctrl_space_s_opens_or_switches_to_the_dashboard(
    ledger: Ledger, tmux_server: Path, tmp_path: Path, prefix: bool
) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Tq8" * 16)
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g base-index 0\nset -g remain-on-exit off\n")
    command = f"{sys.executable} -m commands dashboard --watch 1"
    flags = ["--prefix"] if prefix else []
    installed = ledger.run("tmux", "install", "--file", str(conf), "--command", command, *flags)
    assert installed.returncode == 0, installed.stderr
    # The window's command finds the test's ledger through the server's environment.
    env = {**ledger.env, "PYTHONPATH": str(REPO)}
    with tmux_with_client(tmux_server, conf, env) as (tmux, fd):
        assert len(tmux.windows()) == 1 and "secrets" not in tmux.windows()
        press_ctrl_space_s(fd)
        wait_for(lambda: "secrets" in tmux.windows(), "the secrets window")

        # One capture must show everything asserted: the window starts (and the dashboard
        # redraws every second) while we look, so a capture can catch a frame half drawn.
        expected = [
            *SECTIONS,
            "mcp.bun.apiKey",
            "Access granted - alice (senior-engineer)",
            "Compliance Status: Compliant",
        ]
        screens: list[str] = [""]

        def shows_dashboard() -> bool:
            screens.append(tmux("capture-pane", "-p", "-t", "main:secrets"))
            return all(text in screens[-1] for text in expected)

        try:
            wait_for(shows_dashboard, "the dashboard's sections")
        except AssertionError:
            missing = [text for text in expected if text not in screens[-1]]
            raise AssertionError(f"missing {missing} in:\n{screens[-1]}") from None

        # From another window, the chord switches back to the open dashboard.
        tmux("select-window", "-t", "main:0")
        assert tmux.active() != "secrets"
        press_ctrl_space_s(fd)
        wait_for(lambda: tmux.active() == "secrets", "switch to the dashboard")
        assert tmux.windows().count("secrets") == 1

        # Ctrl-C leaves the dashboard with exit status 0.
        tmux("set-option", "-w", "-t", "main:secrets", "remain-on-exit", "on")
        tmux("send-keys", "-t", "main:secrets", "C-c")
        # The dashboard's exit as (exit status, signal), from tmux once it has reaped the
        # process, else from the kernel while the process is a zombie: under load tmux 3.3a was
        # seen leaving the exited dashboard unreaped (`Z` in ps, parent the tmux server) with
        # pane_dead 1 and no status for over a minute, so waiting on tmux alone fails at random.
        pid = tmux("display-message", "-p", "-t", "main:secrets", "#{pane_pid}").strip()
        ends: list[tuple[str, str]] = []

        def exit_reported() -> bool:
            found = tmux(
                "display-message",
                "-p",
                "-t",
                "main:secrets",
                "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}",
            )
            dead, status, signal = found.strip().split("|")
            if dead == "1" and (status or signal):
                ends.append((status, signal))
            else:
                zombie = zombie_exit(int(pid))
                if zombie is not None:
                    ends.append(zombie)
            return bool(ends)

        wait_for(exit_reported, "the dashboard to exit")
        assert ends[-1] == ("0", ""), f"exit status {ends[-1][0]!r}, signal {ends[-1][1]!r}"


def test_the_default_binding_runs_this_secrets_when_the_servers_path_lacks_it(
    ledger: Ledger, tmux_server: Path, tmp_path: Path
) -> None:
    """Issue 22: the binding ran a bare `secrets`; a tmux server whose PATH lacks it opened a
    window that closed at once, saying nothing. `install` writes the running executable."""
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Tq8" * 16)
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g base-index 0\n")
    installed = ledger.run("tmux", "install", "--file", str(conf))
    assert installed.returncode == 0, installed.stderr
    env = {**ledger.env, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    with tmux_with_client(tmux_server, conf, env) as (tmux, fd):
        press_ctrl_space_s(fd)
        wait_for(lambda: "secrets" in tmux.windows(), "the secrets window")
        screen: list[str] = [""]

        def shows_dashboard() -> bool:
            if "secrets" in tmux.windows():
                screen[0] = tmux("capture-pane", "-p", "-t", "main:secrets")
            return all(text in screen[0] for text in SECTIONS)

        try:
            wait_for(shows_dashboard, "the dashboard's sections")
        except AssertionError:
            raise AssertionError(f"windows {tmux.windows()}, screen:\n{screen[0]}") from None


def test_a_failing_window_command_stays_on_screen_and_install_warns(
    ledger: Ledger, tmux_server: Path, tmp_path: Path
) -> None:
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g base-index 0\n")
    missing = tmp_path / "no-such-dir" / "secrets"
    installed = ledger.run(
        "tmux", "install", "--file", str(conf), "--command", f"{missing} dashboard"
    )
    assert installed.returncode == 0, installed.stderr
    assert "not found on this PATH" in installed.stderr and "full path" in installed.stderr
    env = {**ledger.env, "PATH": "/usr/bin:/bin"}
    with tmux_with_client(tmux_server, conf, env) as (tmux, fd):
        press_ctrl_space_s(fd)
        screen: list[str] = [""]

        def failure_shown() -> bool:
            if "secrets" not in tmux.windows():
                return False
            # With history: tmux's own "Pane is dead" line can scroll the message up.
            screen[0] = tmux("capture-pane", "-p", "-S", "-100", "-t", "main:secrets")
            dead = tmux("display-message", "-p", "-t", "main:secrets", "#{pane_dead}")
            said = "No such file or directory" in screen[0] or "not found" in screen[0]
            return dead.strip() == "1" and said and str(missing) in screen[0]

        try:
            wait_for(failure_shown, "the failure on screen", timeout=20)
        except AssertionError:
            raise AssertionError(f"windows {tmux.windows()}, screen:\n{screen[0]}") from None
        time.sleep(1)
        assert "secrets" in tmux.windows()
