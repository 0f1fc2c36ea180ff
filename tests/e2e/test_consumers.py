"""`secrets run`, `export` and `inject` through the real CLI: the selection and its variable
names, exec semantics (exit status, signals), quoting that round-trips through bash and
python-dotenv, the private atomic output of inject, and every read recorded naming the run."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.clikit import Ledger, start_ledger

# A program that prints the given variables of its environment as JSON.
SHOW = [
    sys.executable,
    "-c",
    "import json,os,sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))",
]

NASTY = {
    "quote": 'it\'s "quoted"',
    "newline": "line one\nline two\n\nend",
    "dollar": "pa$$word ${HOME} $(echo no) `echo no`",
    "backslash": "back\\slash \\\\ \\n \\' end\\",
    "unicode": "snowman \u2603 caf\u00e9 \U0001f511",
    "tab": "\tlead and trail \t",
}
# Values no one quoting gives both python-dotenv and a shell: a quote or backslash and a `$`
# or backtick (the dotenv form uses python-dotenv's escapes for them).
BOTH = {
    "everything": "a'b\"c$d`e\\f\ng \u00e9 ${X:-y} \\'",
    "dollar_quote": "it's $HOME",
}


def _value(tag: str) -> str:
    return f"sk-{tag}-" + secrets.token_urlsafe(24)


@pytest.fixture
def ss_ledger(secret_service, tmp_path: Path) -> Ledger:  # type: ignore[no-untyped-def]
    """A ledger on the real Secret Service and SQLite: for what the store does not change."""
    return start_ledger(tmp_path / "home", dict(secret_service.env), secret_service.backend)


def _reads(ledger: Ledger) -> list[dict[str, object]]:
    return [e.state for e in ledger.events("ledger.records:ReadReceipt")]


def _audit_details(ledger: Ledger) -> list[str]:
    shown = ledger.run("audit", "log", "--output", "json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    rows = rows.get("events", rows) if isinstance(rows, dict) else rows
    return [str(r.get("detail")) for r in rows if r.get("code") == "HBSE-001"]


def test_run_hands_the_selection_to_the_program_and_records_every_read(ledger: Ledger) -> None:
    values = {"mcp.bun.apiKey": _value("a"), "db-url": _value("b"), "x": _value("c")}
    for name, value in values.items():
        ledger.set("nexus", name, value)
    other = _value("other")
    ledger.set("db", "password", other)
    ledger.set("unrelated", "token", _value("unrelated"))
    log = ledger.home.parent / "commands.log"
    result = ledger.run(
        "--log-file",
        str(log),
        "run",
        "--service",
        "nexus",
        "--map",
        "DB_PASS=db/password",
        "--",
        *SHOW,
        "MCP_BUN_APIKEY",
        "DB_URL",
        "X",
        "DB_PASS",
        "UNRELATED_TOKEN",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "MCP_BUN_APIKEY": values["mcp.bun.apiKey"],
        "DB_URL": values["db-url"],
        "X": values["x"],
        "DB_PASS": other,
        "UNRELATED_TOKEN": None,
    }
    reads = _reads(ledger)
    assert len(reads) == 4
    purposes = {r["purpose"] for r in reads}
    assert len(purposes) == 1
    (purpose,) = purposes
    assert str(purpose).startswith("run ")
    assert sorted((r["service"], r["name"]) for r in reads) == sorted(
        [("nexus", n) for n in values] + [("db", "password")]
    )
    details = _audit_details(ledger)
    assert details.count(f"v1 ({purpose})") == 4, details
    (line,) = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    assert line["operation"] == "run" and line["exit_code"] == 0
    assert str(purpose).endswith(line["correlation_id"][:12])
    for value in [*values.values(), other]:
        assert value not in result.stderr
        assert value not in log.read_text(encoding="utf-8")
        assert all(value not in json.dumps(e.state) for e in ledger.events())


def test_get_reads_name_no_run_and_old_reads_without_the_field_still_show(
    ss_ledger: Ledger,
) -> None:
    ss_ledger.set("nexus", "k", _value("k"))
    assert ss_ledger.run("get", "--service", "nexus", "--name", "k").returncode == 0
    (read,) = _reads(ss_ledger)
    assert read["purpose"] is None
    assert _audit_details(ss_ledger) == ["v1"]


def test_names_that_clash_or_are_invalid_are_usage_errors_before_anything_runs(
    ss_ledger: Ledger, tmp_path: Path
) -> None:
    ss_ledger.set("nexus", "a.b", _value("1"))
    ss_ledger.set("nexus", "a_b", _value("2"))
    ss_ledger.set("other", "9lives", _value("3"))
    ss_ledger.set("third", "token", _value("4"))
    marker = tmp_path / "ran"
    touch = ["sh", "-c", f"touch {marker}"]
    cases = [
        (["--service", "nexus"], "A_B"),
        (["--service", "other"], "9LIVES"),
        (["--map", "9BAD=third/token"], "9BAD"),
        (["--map", "A-B=third/token"], "A-B"),
        (["--service", "third", "--map", "TOKEN=nexus/a.b"], "TOKEN"),
        (["--map", "nothing-here"], "VAR=SERVICE/NAME"),
        ([], "--service"),
    ]
    for selection, named in cases:
        result = ss_ledger.run("run", *selection, "--", *touch)
        assert result.returncode == 2, (selection, result.stderr)
        assert named in result.stderr
        assert "Traceback" not in result.stderr
        assert not marker.exists()
    exported = ss_ledger.run("export", "--service", "nexus", "--format", "json")
    assert exported.returncode == 2 and exported.stdout == ""
    assert _reads(ss_ledger) == []
    # Renamed by --map, the clash is gone.
    renamed = ss_ledger.run(
        "run", "--service", "nexus", "--map", "OTHER=nexus/a_b", "--", *SHOW, "A_B", "OTHER"
    )
    assert renamed.returncode == 0, renamed.stderr
    assert set(json.loads(renamed.stdout)) == {"A_B", "OTHER"}


def test_denied_missing_or_unknown_reads_run_nothing_and_record_no_read(
    ss_ledger: Ledger, tmp_path: Path
) -> None:
    ss_ledger.set("nexus", "one", _value("1"))
    ss_ledger.set("nexus", "two", _value("2"))
    marker = tmp_path / "ran"
    touch = ["sh", "-c", f"touch {marker}"]
    unknown = ss_ledger.run("run", "--map", "X=nexus/nope", "--", *touch)
    assert unknown.returncode == 3, unknown.stderr
    empty = ss_ledger.run("run", "--service", "nobody", "--", *touch)
    assert empty.returncode == 3, empty.stderr
    no_program = ss_ledger.run("run", "--service", "nexus", "--", "no-such-program-xyz")
    assert no_program.returncode == 2 and "no-such-program-xyz" in no_program.stderr
    # One value gone from the keychain: nothing is served, not even the other one.
    ss_ledger.keychain_delete_matching("default/nexus/two#v1")
    missing = ss_ledger.run("run", "--service", "nexus", "--", *touch)
    assert missing.returncode == 8, missing.stderr
    assert "default/nexus/two" in missing.stderr
    # No session: denied (recorded), nothing runs.
    ss_ledger.run("auth", "logout")
    denied = ss_ledger.run("run", "--map", "ONE=nexus/one", "--", *touch)
    assert denied.returncode == 4, denied.stderr
    (denial,) = [e.state for e in ss_ledger.events("ledger.records:Denial")]
    assert denial["action"] == "run"
    assert not marker.exists()
    assert _reads(ss_ledger) == []


def test_run_returns_the_program_exit_status(ss_ledger: Ledger) -> None:
    ss_ledger.set("nexus", "k", _value("k"))
    for status in (0, 1, 7, 255):
        result = ss_ledger.run("run", "--service", "nexus", "--", "sh", "-c", f"exit {status}")
        assert result.returncode == status, result.stderr
    # Killed by a signal: the shell sees 128 + the signal, as for the program itself.
    shell = subprocess.run(
        [
            "sh",
            "-c",
            '"$@"; echo "status $?"',
            "sh",
            ss_ledger.python,
            "-m",
            "commands",
            "run",
            "--service",
            "nexus",
            "--",
            sys.executable,
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        ],
        env=ss_ledger.env,
        cwd=ss_ledger.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shell.stdout.strip() == f"status {128 + signal.SIGKILL}", shell.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_reach_the_program(ss_ledger: Ledger, tmp_path: Path, signum: int) -> None:
    ss_ledger.set("nexus", "k", _value("k"))
    ready = tmp_path / "ready"
    program = (
        "import os, signal, sys, time\n"
        "def got(n, f): sys.exit(40 + n)\n"
        f"signal.signal({int(signum)}, got)\n"
        f"open({str(ready)!r}, 'w').write(os.environ['K'] and 'ok')\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [
            ss_ledger.python,
            "-m",
            "commands",
            "run",
            "--service",
            "nexus",
            "--",
            sys.executable,
            "-c",
            program,
        ],
        env=ss_ledger.env,
        cwd=ss_ledger.cwd,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.05)
        process.send_signal(signum)
        assert process.wait(timeout=30) == 40 + signum
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _source(text: str, path: Path) -> dict[str, str]:
    """The environment bash has after `set -a; . FILE` of `text`."""
    path.write_text(text, encoding="utf-8")
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    sourced = subprocess.run(
        ["bash", "-c", f"set -a; . {path}; {dump}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"},
    )
    seen: dict[str, str] = json.loads(sourced.stdout)
    return seen


def test_export_round_trips_nasty_values_through_bash_and_python_dotenv(
    ledger: Ledger, tmp_path: Path
) -> None:
    for name, value in NASTY.items():
        ledger.set("nasty", name, value)
    for name, value in BOTH.items():
        ledger.set("nastier", name, value)
    expected = {k.upper(): v for k, v in {**NASTY, **BOTH}.items()}
    both = ["--service", "nasty", "--service", "nastier"]
    outputs = {}
    for form in ("dotenv", "shell", "json"):
        result = ledger.run("export", *both, "--format", form)
        assert result.returncode == 0, result.stderr
        assert all(v not in result.stderr for v in expected.values())
        outputs[form] = result.stdout
    assert json.loads(outputs["json"]) == expected
    assert _source(outputs["shell"], tmp_path / "out.sh").items() >= expected.items()
    # python-dotenv expands ${...} in every value, quoted or not, and has no escape for it:
    # such a value reads back exactly only with interpolate=False (docs/consumers.md).
    assert dotenv_values(stream=io.StringIO(outputs["dotenv"]), interpolate=False) == expected
    interpolated = dotenv_values(stream=io.StringIO(outputs["dotenv"]))
    for variable, value in expected.items():
        if "${" not in value:
            assert interpolated[variable] == value, variable
    # The dotenv form is a shell file too, but for values with both kinds of character.
    plain = ledger.run("export", "--service", "nasty", "--format", "dotenv")
    assert plain.returncode == 0, plain.stderr
    sourced = _source(plain.stdout, tmp_path / "out.env")
    assert sourced.items() >= {k.upper(): v for k, v in NASTY.items()}.items()
    reads = _reads(ledger)
    assert len(reads) == 3 * len(expected) + len(NASTY)
    assert len({r["purpose"] for r in reads}) == 4
    assert all(str(r["purpose"]).startswith("export ") for r in reads)


def test_inject_fills_references_into_a_private_file_atomically(
    ss_ledger: Ledger, tmp_path: Path
) -> None:
    key, prod = _value("key"), "prod'\"$x\n\u00e9"
    ss_ledger.set("nexus", "mcp.bun.apiKey", key)
    ss_ledger.set("db", "password", prod, "--environment", "production")
    template = tmp_path / "config.tmpl"
    template.write_text(
        "key: {{ secrets://nexus/mcp.bun.apiKey }}\n"
        "again: {{secrets://default/nexus/mcp.bun.apiKey}}\n"
        "db: {{ secrets://production/db/password }}\n"
        "left alone: {{ other }} and $HOME\n",
        encoding="utf-8",
    )
    out = tmp_path / "config.yml"
    os.umask(0o022)
    result = ss_ledger.run("inject", "--in", str(template), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == (
        f"key: {key}\nagain: {key}\ndb: {prod}\nleft alone: {{{{ other }}}} and $HOME\n"
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.tmpl", "config.yml", "home"]
    assert key not in result.stderr
    reads = _reads(ss_ledger)
    assert len(reads) == 2  # one read per secret, however often the template names it
    assert all(str(r["purpose"]).startswith("inject ") for r in reads)
    stdout = ss_ledger.run("inject", "--in", str(template))
    assert stdout.returncode == 0 and stdout.stdout == out.read_text(encoding="utf-8")
    plain = tmp_path / "plain.tmpl"
    plain.write_text("no references {{ here }}\n", encoding="utf-8")
    copied = ss_ledger.run("inject", "--in", str(plain))
    assert copied.returncode == 0 and copied.stdout == "no references {{ here }}\n"
    assert len(_reads(ss_ledger)) == 4


def test_inject_with_an_unknown_or_malformed_reference_writes_nothing(
    ss_ledger: Ledger, tmp_path: Path
) -> None:
    ss_ledger.set("nexus", "k", _value("k"))
    out = tmp_path / "out.env"
    for text, code in [
        ("a={{ secrets://nexus/k }}\nb={{ secrets://nexus/unknown }}\n", 3),
        ("a={{ secrets://nexus/k }}\nb={{ secrets://a/b/c/d }}\n", 5),
        ("a={{ secrets://nexus/k }}\nb={{ secrets://nexus }}\n", 5),
    ]:
        template = tmp_path / "t.tmpl"
        template.write_text(text, encoding="utf-8")
        result = ss_ledger.run("inject", "--in", str(template), "--out", str(out))
        assert result.returncode == code, result.stderr
        assert not out.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "t.tmpl"]
    out.write_text("old\n", encoding="utf-8")
    template.write_text("b={{ secrets://nexus/unknown }}\n", encoding="utf-8")
    assert ss_ledger.run("inject", "--in", str(template), "--out", str(out)).returncode == 3
    assert out.read_text(encoding="utf-8") == "old\n"
    assert _reads(ss_ledger) == []
