"""Values go to the keychain and to `get`'s stdout, nowhere else; the ledger's files are
private from their first byte, and a ledger made readable by others is taken back."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from tests.clikit import Ledger

NEXUS = ["--service", "nexus"]


def _value(tag: str) -> str:
    # Random and long: finding it anywhere cannot be chance, and no test constant can mask it.
    return f"sk-{tag}-" + secrets.token_urlsafe(32)


def _files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file()]


def test_values_written_through_every_path_leak_nowhere(ledger: Ledger, tmp_path: Path) -> None:
    by_stdin, by_file, by_stdin_again = _value("stdin"), _value("file"), _value("again")
    invalid = "not-a-bun-key-" + secrets.token_urlsafe(32)
    values = [by_stdin, by_file, by_stdin_again, invalid]
    outputs: list[str] = []  # stdout and stderr of every command except get's stdout
    argvs: list[list[str]] = []

    def run(*args: str, stdin: str | None = None, is_get: bool = False) -> None:
        argvs.append(list(args))
        result = ledger.run(*args, input=stdin)
        assert "Traceback" not in result.stderr
        outputs.append(result.stderr)
        if not is_get:
            outputs.append(result.stdout)
        return None

    name = ["--name", "mcp.openai.apiKey"]
    run("set", *NEXUS, *name, "--value-stdin", stdin=by_stdin)
    value_file = tmp_path / "value.txt"
    value_file.write_text(by_file + "\n")
    os.chmod(value_file, 0o600)
    run("set", *NEXUS, *name, "--value-file", str(value_file))
    value_file.unlink()
    run("set", *NEXUS, *name, "--value-stdin", "--output", "json", stdin=by_stdin_again)
    run("set", *NEXUS, "--name", "mcp.bun.apiKey", "--value-stdin", stdin=invalid)  # rejected
    run("get", *NEXUS, *name, is_get=True)
    run("get", *NEXUS, *name, "--version", "1", "--output", "json", is_get=True)
    run("rollback", *NEXUS, *name, "--version", "1")
    run("rollback", *NEXUS, *name, "--version", "2", "--output", "json")
    run("versions", *NEXUS, *name)
    run("versions", *NEXUS, *name, "--output", "json")
    run("list")
    run("list", "--output", "json")
    run("doctor", "--output", "json")
    run("delete", *NEXUS, *name)
    run("restore", *NEXUS, *name)
    run("auth", "whoami")
    rejected = ledger.run("set", *NEXUS, "--name", "mcp.bun.apiKey", "--value-stdin", input=invalid)
    assert rejected.returncode == 5

    stored = {p.relative_to(ledger.home).as_posix(): p.read_bytes() for p in _files(ledger.home)}
    assert {ledger.views_file.name, "session.json"} <= set(stored)
    if ledger.store == "sqlite":
        assert "ledger.sqlite" in stored
    else:  # the log is on the server: every table of the database, read back
        tables = ledger.store_contents()
        assert "postgres:public.secretsledger_events" in tables, sorted(tables)
        stored.update(tables)
    for value in values:
        for label, raw in stored.items():
            # vault.enc holds values sealed with AES-GCM: never their plaintext either.
            assert value.encode() not in raw, f"value found in {label}"
        for text in outputs:
            assert value not in text
        for argv in argvs:
            assert all(value not in arg for arg in argv)
    got = ledger.run("get", *NEXUS, *name)
    assert got.stdout in {by_stdin, by_file, by_stdin_again}  # and get does print it


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ledger_files_are_private_from_creation(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Q7x" * 16)
    assert ledger.run("list").returncode == 0  # creates views.sqlite
    home = ledger.home
    assert _mode(home) == 0o700
    expected = [ledger.views_file.name, "session.json"]
    if ledger.store == "sqlite":
        expected.append("ledger.sqlite")
    if (home / "vault.enc").exists():
        expected.append("vault.enc")
    for name in expected:
        assert _mode(home / name) == 0o600, name
    for path in _files(home):  # -wal, -shm, intents and anything else that appears
        assert _mode(path) & 0o077 == 0, path.name
    pending = home / "pending"
    if pending.exists():
        assert _mode(pending) == 0o700


@pytest.mark.sqlite_file
def test_sqlite_side_files_are_private_under_a_loose_umask(ledger: Ledger) -> None:
    for name in ("ledger.sqlite-wal", "ledger.sqlite-shm"):
        (ledger.home / name).unlink(missing_ok=True)
    result = ledger.run("set", *NEXUS, "--name", "umask.key", "--value-stdin", input="v" * 30)
    assert result.returncode == 0, result.stderr
    for name in ("ledger.sqlite-wal", "ledger.sqlite-shm"):
        path = ledger.home / name
        if path.exists():
            assert _mode(path) & 0o077 == 0, name


def test_a_world_readable_ledger_is_repaired_with_a_warning(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-" + "Q7x" * 16)
    assert ledger.run("list").returncode == 0  # creates views.sqlite
    # On PostgreSQL the home holds no log: its views cache is the file to take back.
    db = ledger.home / "ledger.sqlite" if ledger.store == "sqlite" else ledger.views_file
    os.chmod(ledger.home, 0o755)  # noqa: S103  (the fault under test)
    os.chmod(db, 0o644)
    result = ledger.run("list")
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "accessible by group or others" in result.stderr
    assert "0755" in result.stderr and "0644" in result.stderr
    assert _mode(ledger.home) == 0o700
    assert _mode(db) == 0o600
    quiet = ledger.run("list")
    assert "warning" not in quiet.stderr  # repaired once, then silent


def test_a_session_file_readable_by_others_is_refused_not_repaired(ledger: Ledger) -> None:
    session = ledger.home / "session.json"
    os.chmod(session, 0o644)
    result = ledger.run("list")
    assert result.returncode == 4 and "readable by others" in result.stderr
    assert _mode(session) == 0o644


def test_values_in_batches_leak_into_no_report_export_metric_or_log(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Values given to rotate, provision and emergency-rotate by file, and to `audit hash` on
    stdin, appear in no log line, report (every format), evidence bundle or metrics file."""
    log = tmp_path / "ops.jsonl"
    logged = {"SECRETS_LEDGER_LOG_FILE": str(log), "SECRETS_LEDGER_LOG_LEVEL": "debug"}
    first, rotated, emergency = _value("first"), _value("rotated"), _value("emergency")
    provisioned = "sk-ant-api03-" + secrets.token_urlsafe(40)
    invalid = "not-a-key-" + secrets.token_urlsafe(32)
    values = [first, rotated, emergency, provisioned, invalid]
    outputs: list[str] = []

    def run(expected: set[int], *args: str, stdin: str | None = None) -> None:
        result = ledger.run(*args, input=stdin, env=logged)
        assert result.returncode in expected, result.stderr
        assert "Traceback" not in result.stderr
        outputs.extend([result.stdout, result.stderr])

    def values_file(name: str, mapping: dict[str, str]) -> str:
        path = tmp_path / name
        path.write_text("".join(f'"{k}" = "{v}"\n' for k, v in mapping.items()))
        os.chmod(path, 0o600)
        return str(path)

    bun = "default/nexus/mcp.bun.apiKey"
    run({0}, "set", *NEXUS, "--name", "mcp.bun.apiKey", "--value-stdin", stdin=first)
    bad = values_file("bad.toml", {bun: invalid})
    run({5}, "rotate", "--all", "--values-file", bad)
    run({0, 1}, "rotate", "--all", "--values-file", values_file("new.toml", {bun: rotated}))
    anthropic = "staging/nexus/mcp.anthropic.apiKey"
    run(
        {0, 1},
        "provision",
        "-e",
        "staging",
        "--from",
        values_file("p.toml", {anthropic: provisioned}),
    )
    urgent = values_file("urgent.toml", {bun: emergency})
    run({0, 1}, "emergency-rotate", "--yes", "--values-file", urgent)
    run({0}, "audit", "hash", *NEXUS, "--name", "mcp.bun.apiKey", stdin=emergency)
    for fmt in ("md", "json", "csv", "html"):
        run({0}, "report", "compliance", "--format", fmt, "--out", str(tmp_path / f"r.{fmt}"))
    run({0}, "audit", "export", "--out", str(tmp_path / "bundle"))
    run({0}, "metrics", "write", "--textfile", str(tmp_path / "m.prom"))
    run({0}, "audit", "log", "-o", "jsonl")

    assert ledger.run("get", *NEXUS, "--name", "mcp.bun.apiKey").stdout == emergency
    staged = ledger.run("get", "-e", "staging", *NEXUS, "--name", "mcp.anthropic.apiKey")
    assert staged.stdout == provisioned
    versions = ledger.json("versions", *NEXUS, "--name", "mcp.bun.apiKey")["versions"]
    assert sorted(v["reason"] for v in versions) == ["emergency", "manual", "rotation"]
    written = [tmp_path / f"r.{fmt}" for fmt in ("md", "json", "csv", "html")]
    written += [log, tmp_path / "m.prom", *(tmp_path / "bundle").iterdir()]
    written += _files(ledger.home)
    assert log.read_text().strip() and (tmp_path / "r.md").read_text().strip()
    for value in values:
        for path in written:
            assert value.encode() not in path.read_bytes(), f"value found in {path}"
        for text in outputs:
            assert value not in text
