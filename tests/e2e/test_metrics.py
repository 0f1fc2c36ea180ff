"""`secrets metrics` through the real CLI: a live exporter scraped over HTTP, the textfile
writer, and the structured log, against a real SQLite ledger on each real vault.

promtool comes from Debian's `prometheus` package; without it these tests fail, never skip.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from ledger import context
from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from tests.clikit import Ledger

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

METRICS = {
    "hyperbun_secret_access_total": "counter",
    "hyperbun_secret_access_denied_total": "counter",
    "hyperbun_secret_rotation_timestamp": "gauge",
    "hyperbun_secret_validation_errors_total": "counter",
    "hyperbun_emergency_rotation_total": "counter",
    "hyperbun_secret_age_seconds": "gauge",
    "hyperbun_secret_rotation_overdue": "gauge",
    "hyperbun_secrets": "gauge",
    "hyperbun_ledger_events_total": "counter",
    "hyperbun_ledger_integrity_ok": "gauge",
    "hyperbun_projection_lag_events": "gauge",
}
LOG_KEYS = {
    "timestamp",
    "level",
    "event",
    "operation",
    "operator",
    "address",
    "outcome",
    "code",
    "correlation_id",
    "duration_ms",
    "exit_code",
    "error",
}
LOOPBACK = ["--bind", "127.0.0.1", "--port", "0"]  # port 0: the exporter picks a free one
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
NEXUS = ["--service", "nexus", "--name", "mcp.bun.apiKey"]


def promtool() -> str:
    """Called inside each test (not a fixture), so a missing promtool is a FAILED test."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus), which provides /usr/bin/promtool"
        )
    return path


def check_metrics(text: str) -> None:
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def parse(text: str, openmetrics: bool = False) -> tuple[Samples, dict[str, str]]:
    """Samples by (name, labels), and the type of every family."""
    samples: Samples = {}
    types: dict[str, str] = {}
    parser = openmetrics_families if openmetrics else text_string_to_metric_families
    for family in parser(text):
        types[family.name] = family.type
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {lbl: v for (n, lbl), v in samples.items() if n == name}


class Exporter:
    """`secrets metrics serve` on a free loopback port, in its own process."""

    def __init__(self, ledger: Ledger, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [ledger.python, "-m", "commands", "metrics", "serve", *LOOPBACK],
            env={**ledger.env, **(env or {})},
            cwd=ledger.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        # Drain stderr all along: a full pipe would block the exporter.
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_for_url()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.stderr)
                continue
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/metrics)", line)
            if found:
                return found.group(1)
        self.proc.kill()
        pytest.fail("the exporter did not start: " + "".join(self.stderr))

    def scrape(self, accept: str | None = None) -> tuple[str, str]:
        headers = {"Accept": accept} if accept else {}
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310 (our http URL)
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.headers["Content-Type"], response.read().decode()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@contextmanager
def exporter(
    ledger: Ledger, signum: int = signal.SIGTERM, env: dict[str, str] | None = None
) -> Iterator[Exporter]:
    running = Exporter(ledger, env)
    try:
        yield running
    finally:
        code = running.stop(signum)
    assert code == 0, "".join(running.stderr)
    assert "Traceback" not in "".join(running.stderr)


def in_process(ledger: Ledger) -> Any:
    """The ledger opened in this process, for events the CLI on main cannot make yet."""
    return ledger._app()


def api_key() -> str:
    return "sk-" + secrets.token_hex(20)


def github_token() -> str:
    return "ghp_" + secrets.token_hex(18)


def test_exporter_reports_a_scripted_history_and_survives_restarts(
    ledger: Ledger, tmp_path: Path
) -> None:
    with exporter(ledger, signal.SIGINT) as first:
        before, _ = parse(first.scrape()[1])
        assert series(before, "hyperbun_secret_access_total") == {}
        assert before[("hyperbun_emergency_rotation_total", labels())] == 0

        started = time.time()
        ledger.set("nexus", "mcp.bun.apiKey", api_key(), "-e", "production")
        set_at = time.time()
        assert ledger.run("get", *NEXUS, "-e", "production").returncode == 0
        ledger.set("github", "github.token", github_token(), "-e", "staging")
        deleted = ledger.run("delete", "--service", "github", "--name", "github.token", "-e")
        assert deleted.returncode == 2  # -e needs its value: a usage error records nothing
        deleted = ledger.run(
            "delete", "--service", "github", "--name", "github.token", "-e", "staging"
        )
        assert deleted.returncode == 0, deleted.stderr

        granted = ledger.run("auth", "grant", "--operator", "carol", "--role", "analyst")
        assert granted.returncode == 0, granted.stderr
        carol = {"SECRETS_LEDGER_SESSION_FILE": str(tmp_path / "carol-session.json")}
        login = ledger.run(
            "auth",
            "login",
            "--operator",
            "carol",
            "--token-stdin",
            input=granted.stdout.strip() + "\n",
            env=carol,
        )
        assert login.returncode == 0, login.stderr
        denied = ledger.run(
            "set", *NEXUS, "-e", "production", "--value-stdin", input=api_key(), env=carol
        )
        assert denied.returncode == 4, denied.stderr
        assert ledger.run("list", env=carol).returncode == 4
        nobody = {"SECRETS_LEDGER_SESSION_FILE": str(tmp_path / "nobody-session.json")}
        assert ledger.run("list", env=nobody).returncode == 4  # recorded as anonymous
        assert ledger.run("get", *NEXUS, "-e", "production", env=carol).returncode == 0
        rejected = ledger.run("set", *NEXUS, "-e", "production", "--value-stdin", input="nope")
        assert rejected.returncode == 5, rejected.stderr

        # Back-dated writes (the CLI cannot control the clock): one overdue under the default
        # 90-day policy, one identifier whose rotation policy is "none".
        app = in_process(ledger)
        alice = Credential(token=ledger.token)
        old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=100)
        older = old - timedelta(days=300)
        with context.frozen_clock(lambda: old):
            app.write(alice, SecretAddress("production", "github", "github.token"), github_token())
        with context.frozen_clock(lambda: older):
            app.write(alice, SecretAddress("production", "telegram", "telegram.chat.id"), "-1042")
        # Every live key here is external or an identifier: the incident is opened (HBSE-008)
        # and waits for provider-issued values (exit 1); nothing is rotated yet.
        emergency = ledger.run("emergency-rotate", "--yes", "--reason", "metrics test")
        assert emergency.returncode == 1, emergency.stderr

        content_type, text = first.scrape()
        assert content_type.startswith("text/plain; version=0.0.4")
        check_metrics(text)
        samples, types = parse(text)
        assert types == {name.removesuffix("_total"): kind for name, kind in METRICS.items()}

        assert series(samples, "hyperbun_secret_access_total") == {
            labels(result="success", operation="set", environment="production"): 3,
            labels(result="success", operation="get", environment="production"): 2,
            labels(result="success", operation="set", environment="staging"): 1,
            labels(result="success", operation="delete", environment="staging"): 1,
            labels(result="denied", operation="set", environment="production"): 1,
            labels(result="denied", operation="list", environment="*"): 2,
            labels(result="error", operation="validate", environment="production"): 1,
        }
        # The same denials by operator, for the UnauthorizedSecretAccess annotations.
        assert series(samples, "hyperbun_secret_access_denied_total") == {
            labels(operator="carol", operation="set", environment="production"): 1,
            labels(operator="carol", operation="list", environment="*"): 1,
            labels(operator="anonymous", operation="list", environment="*"): 1,
        }
        assert series(samples, "hyperbun_secret_validation_errors_total") == {
            labels(environment="production", service="nexus", name="mcp.bun.apiKey"): 1
        }
        assert samples[("hyperbun_emergency_rotation_total", labels())] == 1

        nexus = labels(environment="production", service="nexus", name="mcp.bun.apiKey")
        github = labels(environment="production", service="github", name="github.token")
        telegram = labels(environment="production", service="telegram", name="telegram.chat.id")
        rotated = series(samples, "hyperbun_secret_rotation_timestamp")
        assert set(rotated) == {nexus, github, telegram}  # the deleted staging one is not
        assert started - 1 <= rotated[nexus] <= set_at + 1
        assert rotated[github] == old.timestamp()
        assert rotated[telegram] == older.timestamp()
        age = series(samples, "hyperbun_secret_age_seconds")
        assert set(age) == {nexus, github, telegram}
        assert 0 <= age[nexus] < 600
        assert 100 * 86400 <= age[github] < 100 * 86400 + 600
        assert 400 * 86400 <= age[telegram] < 400 * 86400 + 600
        assert series(samples, "hyperbun_secret_rotation_overdue") == {
            nexus: 0,
            github: 1,
            telegram: 0,
        }
        assert series(samples, "hyperbun_secrets") == {
            labels(environment="production", status="active"): 3,
            labels(environment="production", status="deleted"): 0,
            labels(environment="production", status="destroyed"): 0,
            labels(environment="staging", status="active"): 0,
            labels(environment="staging", status="deleted"): 1,
            labels(environment="staging", status="destroyed"): 0,
        }
        events = len(ledger.events())
        assert samples[("hyperbun_ledger_events_total", labels())] == events
        assert samples[("hyperbun_ledger_integrity_ok", labels())] == 1
        assert samples[("hyperbun_projection_lag_events", labels())] == 0

        content_type, om_text = first.scrape(OPENMETRICS)
        assert content_type.startswith("application/openmetrics-text; version=1.0.0")
        assert om_text.endswith("# EOF\n")
        om_samples, om_types = parse(om_text, openmetrics=True)
        assert om_types == {name.removesuffix("_total"): kind for name, kind in METRICS.items()}
        stable = {k: v for k, v in samples.items() if k[0] != "hyperbun_secret_age_seconds"}
        assert {k: v for k, v in om_samples.items() if k in stable} == stable
        assert {k for k in om_samples} == set(samples)

    # A new process, then one that must rebuild the read model from the log: same numbers.
    with exporter(ledger) as second:
        again, _ = parse(second.scrape()[1])
    assert {k: v for k, v in again.items() if k[0] != "hyperbun_secret_age_seconds"} == stable
    for path in ledger.home.glob("views.sqlite*"):
        path.unlink()
    with exporter(ledger) as third:
        rebuilt, _ = parse(third.scrape()[1])
        assert {k: v for k, v in rebuilt.items() if k in stable} == stable

        # Break one link of the hash chain: `audit verify` finds it and records HBSE-013.
        ledger.break_link(ledger.events()[2].position)
        verify = ledger.run("audit", "verify")
        assert verify.returncode == 6, verify.stderr
        alarmed, _ = parse(third.scrape()[1])
    assert alarmed[("hyperbun_ledger_integrity_ok", labels())] == 0
    assert alarmed[("hyperbun_ledger_events_total", labels())] == events + 1


def test_metrics_need_a_credential_and_record_the_refusal(ledger: Ledger, tmp_path: Path) -> None:
    nobody = {"SECRETS_LEDGER_SESSION_FILE": str(tmp_path / "none.json")}
    for argv in (
        ["metrics", "serve", "--port", "0"],
        ["metrics", "write", "--textfile", str(tmp_path / "m.prom")],
    ):
        refused = ledger.run(*argv, env=nobody)
        assert refused.returncode == 4 and "PERMISSION_DENIED" in refused.stderr
    assert not (tmp_path / "m.prom").exists()
    rules = ledger.run("metrics", "rules", env=nobody)
    assert rules.returncode == 0 and "- alert: UnauthorizedSecretAccess" in rules.stdout
    text = ledger.home / "after.prom"
    assert ledger.run("metrics", "write", "--textfile", str(text)).returncode == 0
    samples, _ = parse(text.read_text())
    assert series(samples, "hyperbun_secret_access_total") == {
        labels(result="denied", operation="metrics serve", environment="*"): 1,
        labels(result="denied", operation="metrics write", environment="*"): 1,
    }


def test_textfile_is_replaced_atomically_and_promtool_clean(ledger: Ledger, tmp_path: Path) -> None:
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    target = out_dir / "secrets-ledger.prom"
    ledger.set("nexus", "mcp.bun.apiKey", api_key())
    first = ledger.run("metrics", "write", "--textfile", str(target))
    assert first.returncode == 0, first.stderr
    assert os.stat(target).st_mode & 0o777 == 0o644  # node_exporter reads it as another user
    # ...but the views it caught up on the way stay private to the ledger's owner.
    assert "accessible by group or others" not in first.stderr
    private = [p for p in ledger.home.iterdir() if p.is_file() and p.stat().st_mode & 0o077]
    assert private == [], private
    assert list(out_dir.iterdir()) == [target]  # no temporary file left behind
    old_text = target.read_text()
    check_metrics(old_text)
    samples, _ = parse(old_text)
    success = labels(result="success", operation="set", environment="default")
    assert series(samples, "hyperbun_secret_access_total") == {success: 1}

    # Readers polling throughout see a whole file every time, never a torn one.
    torn: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            text = target.read_text()
            if not text.endswith("hyperbun_projection_lag_events 0.0\n"):
                torn.append(text[-80:])

    with target.open() as held:
        inode = os.fstat(held.fileno()).st_ino
        polling = threading.Thread(target=reader)
        polling.start()
        try:
            for _ in range(3):
                ledger.set("nexus", "mcp.bun.apiKey", api_key())
                again = ledger.run("metrics", "write", "--textfile", str(target))
                assert again.returncode == 0, again.stderr
        finally:
            stop.set()
            polling.join()
        # Replaced by rename: the old inode still holds the complete old text.
        assert held.read() == old_text
    assert torn == []
    assert os.stat(target).st_ino != inode
    assert [p.name for p in out_dir.iterdir()] == [target.name]  # no temporary file left
    new_text = target.read_text()
    check_metrics(new_text)
    samples, _ = parse(new_text)
    assert series(samples, "hyperbun_secret_access_total") == {success: 4}

    missing_dir = ledger.run("metrics", "write", "--textfile", str(tmp_path / "no" / "x.prom"))
    assert missing_dir.returncode == 1 and "cannot write" in missing_dir.stderr
    assert "Traceback" not in missing_dir.stderr


def test_no_value_reaches_logs_metrics_or_stderr(ledger: Ledger, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "secrets.jsonl"
    log.parent.mkdir()
    logged = {"SECRETS_LEDGER_LOG_FILE": str(log), "SECRETS_LEDGER_LOG_LEVEL": "debug"}
    values = {
        "stdin": api_key(),
        "flag": api_key(),
        "bad-flag": "zz-" + secrets.token_hex(24),
        "bad-stdin": "qq-" + secrets.token_hex(24),
        "denied": api_key(),
        "unlogged": api_key(),
    }
    runs: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def run(expected: int, *argv: str, stdin: str | None = None, **env: str) -> None:
        result = ledger.run(*argv, input=stdin, env={**logged, **env})
        assert result.returncode == expected, result.stderr
        runs.append((" ".join(a for a in argv if not a.startswith("-"))[:20], result))

    run(0, "set", *NEXUS, "--value-stdin", stdin=values["stdin"])
    run(0, "set", *NEXUS, "--value", values["flag"])
    run(0, "get", *NEXUS)
    run(0, "get", *NEXUS, "--version", "1", "--output", "json")
    run(5, "set", *NEXUS, "--value", values["bad-flag"])
    run(5, "set", *NEXUS, "--value-stdin", stdin=values["bad-stdin"])
    nobody = str(tmp_path / "nobody.json")
    run(4, "set", *NEXUS, "--value", values["denied"], SECRETS_LEDGER_SESSION_FILE=nobody)
    run(0, "--log-file", str(log), "metrics", "write", "--textfile", str(tmp_path / "m.prom"))
    assert runs[2][1].stdout == values["flag"] and values["stdin"] in runs[3][1].stdout

    # Without a log file or level, stderr holds only the one-line error for a person.
    quiet = ledger.run("set", *NEXUS, "--value-stdin", input="vv-" + values["unlogged"])
    assert quiet.returncode == 5 and len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    # With a level and no file, the JSON line follows the human message on stderr.
    plain = ledger.run(
        "set",
        *NEXUS,
        "--value",
        "uu-" + values["unlogged"],
        env={"SECRETS_LEDGER_LOG_LEVEL": "warning"},
    )
    assert plain.returncode == 5
    stderr_lines = plain.stderr.strip().splitlines()
    assert stderr_lines[-2].startswith("error: ")
    on_stderr = json.loads(stderr_lines[-1])
    assert (on_stderr["outcome"], on_stderr["code"]) == ("rejected", "HBSE-007")

    with exporter(ledger) as running:
        exposition = running.scrape()[1] + running.scrape(OPENMETRICS)[1]
    exposition += (tmp_path / "m.prom").read_text()
    log_text = log.read_text()
    assert os.stat(log).st_mode & 0o777 == 0o600
    everything_but_stdout = [
        log_text,
        exposition,
        plain.stderr,
        quiet.stderr,
        *(r.stderr for _, r in runs),
    ]
    for value in values.values():
        for text in everything_but_stdout:
            assert value not in text
            assert value[3:] not in text  # not even without its prefix

    lines = [json.loads(line) for line in log_text.splitlines()]
    assert all(set(line) == LOG_KEYS for line in lines)
    assert [
        (line["operation"], line["outcome"], line["code"], line["exit_code"]) for line in lines
    ] == [
        ("set", "success", "HBSE-002", 0),
        ("set", "success", "HBSE-002", 0),
        ("get", "success", "HBSE-001", 0),
        ("get", "success", "HBSE-001", 0),
        ("set", "rejected", "HBSE-007", 5),
        ("set", "rejected", "HBSE-007", 5),
        ("set", "denied", "HBSE-006", 4),
        ("metrics write", "success", None, 0),
    ]
    assert [line["operator"] for line in lines] == ["alice"] * 6 + ["anonymous", "alice"]
    assert {line["address"] for line in lines[:7]} == {"default/nexus/mcp.bun.apiKey"}
    assert lines[7]["address"] is None
    assert [line["level"] for line in lines] == ["info"] * 4 + ["warning"] * 3 + ["info"]
    assert [line["error"] for line in lines[4:7]] == ["ValidationFailed"] * 2 + ["PermissionDenied"]
    for line in lines:
        assert line["event"] == "command"
        assert re.fullmatch(r"[0-9a-f]{32}", line["correlation_id"])
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", line["timestamp"])

    # The log's correlation id is the one the command's events carry in the ledger.
    reads = [e.state["correlation_id"] for e in ledger.events() if e.topic.endswith("SecretRead")]
    assert reads == [lines[2]["correlation_id"], lines[3]["correlation_id"]]


def test_an_unknown_log_level_is_warned_about_once_and_means_info(
    ledger: Ledger, tmp_path: Path
) -> None:
    """SECRETS_LEDGER_LOG_LEVEL=bogus is not silently info: one warning line names the levels."""
    on_stderr = ledger.run("rotate-status", env={"SECRETS_LEDGER_LOG_LEVEL": "bogus"})
    warnings = [
        line for line in on_stderr.stderr.splitlines() if "SECRETS_LEDGER_LOG_LEVEL" in line
    ]
    assert warnings == [
        "warning: SECRETS_LEDGER_LOG_LEVEL='bogus' is not a log level "
        "(debug, info, warning, error, critical); using info"
    ], on_stderr.stderr
    # The default level: the info line of a successful command is written.
    logged = json.loads(on_stderr.stderr.strip().splitlines()[-1])
    assert (logged["level"], logged["operation"]) == ("info", "rotate-status")

    log = tmp_path / "ops.log"
    to_file = ledger.run(
        "rotate-status",
        env={"SECRETS_LEDGER_LOG_LEVEL": "LOUD", "SECRETS_LEDGER_LOG_FILE": str(log)},
    )
    assert to_file.stderr.count("is not a log level") == 1
    assert json.loads(log.read_text().splitlines()[-1])["level"] == "info"
    # A valid level gives no warning.
    fine = ledger.run("rotate-status", env={"SECRETS_LEDGER_LOG_LEVEL": "warning"})
    assert "is not a log level" not in fine.stderr


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (our http URL)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_exporter_serves_metrics_only_on_slash_metrics(ledger: Ledger) -> None:
    """/metrics has the exposition, / a pointer to it, anything else 404 (issue 6)."""
    with exporter(ledger) as running:
        base = running.url.removesuffix("/metrics")
        status, text = fetch(running.url)
        assert status == 200 and "hyperbun_ledger_events_total" in text
        status, text = fetch(running.url + "?x=1")
        assert status == 200 and "hyperbun_ledger_events_total" in text
        status, text = fetch(base + "/")
        assert status == 200 and "/metrics" in text and "hyperbun_" not in text
        for other in ("/other", "/metrics/extra", "/favicon.ico", "/metricsx"):
            status, text = fetch(base + other)
            assert status == 404, other
            assert "hyperbun_" not in text


def test_metrics_apply_the_team_catalogue(ledger: Ledger, tmp_path: Path) -> None:
    """`metrics serve`/`write` take --catalogue / SECRETS_LEDGER_CATALOGUE like rotate-status,
    so a team key's short policy makes it overdue (issue 6)."""
    team = tmp_path / "team.toml"
    team.write_text(
        '[[key]]\nservice = "payments"\nname = "stripe.apiKey"\nformat = "text"\n'
        'rotation = "external"\nrotation_days = 30\nwarning_days = 7\n'
    )
    app = in_process(ledger)
    written = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    with context.frozen_clock(lambda: written):
        app.write(
            Credential(token=ledger.token),
            SecretAddress("production", "payments", "stripe.apiKey"),
            "rk_live_" + secrets.token_hex(12),
        )
    stripe = labels(environment="production", service="payments", name="stripe.apiKey")

    def overdue(*extra: str, env: dict[str, str] | None = None) -> float:
        target = tmp_path / "m.prom"
        wrote = ledger.run("metrics", "write", "--textfile", str(target), *extra, env=env)
        assert wrote.returncode == 0, wrote.stderr
        samples, _ = parse(target.read_text())
        age = series(samples, "hyperbun_secret_age_seconds")[stripe]
        assert 40 * 86400 <= age < 40 * 86400 + 600
        return series(samples, "hyperbun_secret_rotation_overdue")[stripe]

    assert overdue() == 0  # built-in catalogue: an unknown key gets 90 days
    assert overdue("--catalogue", str(team)) == 1
    assert overdue(env={"SECRETS_LEDGER_CATALOGUE": str(team)}) == 1
    status = ledger.run("rotate-status", "--catalogue", str(team), "--output", "json")
    assert json.loads(status.stdout)["counts"]["overdue"] == 1  # the same verdict

    with exporter(ledger, env={"SECRETS_LEDGER_CATALOGUE": str(team)}) as running:
        samples, _ = parse(running.scrape()[1])
    assert series(samples, "hyperbun_secret_rotation_overdue")[stripe] == 1

    broken = tmp_path / "broken.toml"
    broken.write_text("[[key]]\nservice = 1\n")
    refused = ledger.run(
        "metrics", "write", "--textfile", str(tmp_path / "x.prom"), "--catalogue", str(broken)
    )
    assert refused.returncode == 5 and "broken.toml" in refused.stderr
    assert not (tmp_path / "x.prom").exists()
