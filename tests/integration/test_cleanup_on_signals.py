"""Services started by the tests stop on every way out of a run, and leave no temp dir.

Each case runs pytest in a subprocess on a tiny test file that starts every service the
fixtures offer (gnome-keyring on its own dbus-daemon, both PostgreSQL clusters, a tmux server),
waits for them to be up, then ends the run: a Ctrl-C to the run's process group (as a terminal
sends it), SIGTERM to pytest alone (as CI's timeout or `kill` does), SIGKILL (no finalizer can
run: the Reaper watchers clean up), with and without xdist workers, a failing test and a passing
one. Afterwards no process of that run may be left (each carries a marker in its environment)
and the run's temp folder must be empty.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARKER = "SL_SIGNAL_RUN"

HOLD = """
import json, os, subprocess, time
from pathlib import Path


def test_hold(secret_service, postgres_cluster, pg, tmux_server):
    subprocess.run(
        ["tmux", "-S", str(tmux_server), "new-session", "-d", "sleep 600"], check=True
    )
    Path(os.environ["SL_SIGNAL_READY"]).write_text(json.dumps({"pid": os.getpid()}))
    if os.environ["SL_SIGNAL_END"] == "fail":
        raise AssertionError("a failing test ends the run")
    if os.environ["SL_SIGNAL_END"] == "pass":
        return
    time.sleep(600)
"""


def _default_sigint() -> None:
    # A terminal's Ctrl-C reaches a foreground run with SIGINT at its default, even when this
    # suite itself runs in the background with SIGINT ignored (as CI starts it).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _processes_of(run: str) -> list[str]:
    """`pid cmdline` of every process whose environment carries this run's marker."""
    found = []
    needle = f"{MARKER}={run}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":  # a zombie is dead, awaiting its parent
            found.append(f"{entry.name} {cmdline}")
    return found


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Short, under /tmp: the run's unix sockets live below it (path max 107).
    base = Path(tempfile.mkdtemp(prefix="sl-sig-"))
    base.chmod(0o755)  # the PostgreSQL server runs as `postgres` when the tests run as root
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


CASES = [
    # (how the run ends, whom the signal goes to, xdist workers)
    ("SIGINT", "group", 0),
    ("SIGTERM", "pytest", 0),
    ("SIGKILL", "pytest", 0),
    ("SIGINT", "group", 2),
    ("SIGTERM", "pytest", 2),
    ("fail", None, 0),
    ("pass", None, 2),
]


@pytest.mark.parametrize(("end", "target", "workers"), CASES)
def test_no_service_or_temp_dir_outlives_the_run(
    run_dir: Path, end: str, target: str | None, workers: int
) -> None:
    run = uuid.uuid4().hex
    tmp, work = run_dir / "tmp", run_dir / "work"
    tmp.mkdir()
    tmp.chmod(0o1777)  # like /tmp: the `postgres` user's files go here too
    work.mkdir()
    (work / "test_hold.py").write_text(HOLD)
    ready = work / "ready.json"
    env = {
        **os.environ,
        MARKER: run,
        "TMPDIR": str(tmp),  # every service dir of the run goes here
        "SL_SIGNAL_READY": str(ready),
        "SL_SIGNAL_END": end,
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_TESTRUNUID", None)
    args = [
        sys.executable,
        "-m",
        "pytest",
        str(work / "test_hold.py"),
        "-p",
        "tests.conftest",
        f"--rootdir={REPO}",
        f"--basetemp={work / 'basetemp'}",  # pytest keeps it on purpose: not in TMPDIR
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    if workers:
        args += ["-n", str(workers)]
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if target is not None:
            if not ready.exists():
                proc.kill()
                pytest.fail(f"the services did not come up:\n{proc.communicate()[0].decode()}")
            # The check below sees every daemon of the run: each carries the marker.
            running = "\n".join(_processes_of(run))
            for daemon in ("dbus-daemon", "gnome-keyring-daemon", "tmux", "sleep 600"):
                assert daemon in running, running
            assert running.count("bin/postgres -D") == 2, running
            sig = getattr(signal, end)
            if target == "group":
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
        output = proc.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if end == "pass":
        assert proc.returncode == 0, output
    elif end == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode not in (0, None), output
    assert ready.exists(), output

    # The watchers may still be at work a moment after pytest has gone (SIGKILL): wait for them.
    deadline = time.monotonic() + 60
    while (_processes_of(run) or any(tmp.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_of(run) == [], output
    assert sorted(p.name for p in tmp.iterdir()) == [], output
