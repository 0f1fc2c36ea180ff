"""The service fixtures in tests/conftest.py start real, working services."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests import infra


def _run(
    *args: str | Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        input="" if input is None else input,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# --------------------------------------------------------------------------- Secret Service


def test_secret_service_round_trip_in_process(secret_service: infra.SecretService) -> None:
    backend = secret_service.backend()
    service, user = f"infra-{uuid.uuid4().hex}", "alice"
    assert backend.get_password(service, user) is None
    backend.set_password(service, user, "s3cr3t value")
    assert backend.get_password(service, user) == "s3cr3t value"
    backend.delete_password(service, user)
    assert backend.get_password(service, user) is None


def test_secret_service_env_names_the_private_bus(secret_service: infra.SecretService) -> None:
    env = secret_service.env
    assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == env["DBUS_SESSION_BUS_ADDRESS"]
    assert env["PYTHON_KEYRING_BACKEND"] == "keyring.backends.SecretService.Keyring"
    runtime = Path(env["XDG_RUNTIME_DIR"])
    assert runtime.stat().st_mode & 0o777 == 0o700
    assert Path(env["HOME"]).is_dir() and env["HOME"] != os.environ.get("HOME")
    assert env["PATH"] == os.environ["PATH"]  # a copy of this process's environment


def test_secret_tool_reads_and_writes_with_the_fixture_env(
    secret_service: infra.SecretService,
) -> None:
    env = secret_service.env
    service = f"infra-{uuid.uuid4().hex}"
    stored = _run(
        "secret-tool", "store", "--label=infra", "service", service, "username", "bob",
        env=env, input="from secret-tool",
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    backend = secret_service.backend()
    assert backend.get_password(service, "bob") == "from secret-tool"

    backend.set_password(service, "carol", "from keyring")
    looked_up = _run("secret-tool", "lookup", "service", service, "username", "carol", env=env)
    assert looked_up.returncode == 0, looked_up.stderr
    assert looked_up.stdout == "from keyring"

    # The keyring is kept under the throwaway HOME, not the user's.
    assert list((Path(env["HOME"]) / ".local/share/keyrings").glob("*.keyring"))


def test_keyring_in_a_subprocess_uses_the_fixture_env(secret_service: infra.SecretService) -> None:
    service = f"infra-{uuid.uuid4().hex}"
    secret_service.backend().set_password(service, "dave", "seen across processes")
    code = f"import keyring; print(keyring.get_password({service!r}, 'dave'))"
    result = _run(sys.executable, "-c", code, env=secret_service.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "seen across processes"


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_url_is_a_postgresql_15_server(postgres_url: str) -> None:
    import psycopg

    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    assert postgres_url.endswith("/postgres")
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("select version()").fetchone()
        assert row is not None
        assert row[0].startswith("PostgreSQL 15."), row[0]
        num = conn.execute("show server_version_num").fetchone()
        assert num is not None and num[0].startswith("15")


def _tables(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_fresh_pg_databases_are_isolated(
    postgres_cluster: infra.PostgresCluster, fresh_pg_database: str
) -> None:
    import psycopg

    assert fresh_pg_database != postgres_cluster.url
    assert _tables(fresh_pg_database) == set()
    with psycopg.connect(fresh_pg_database) as conn:
        conn.execute("create table marker (id int)")
    assert _tables(fresh_pg_database) == {"marker"}

    other = infra.create_database(postgres_cluster)
    try:
        assert other != fresh_pg_database
        assert _tables(other) == set()
    finally:
        infra.drop_database(postgres_cluster, other)

    with psycopg.connect(postgres_cluster.url) as conn:
        names = {r[0] for r in conn.execute("select datname from pg_database").fetchall()}
    assert fresh_pg_database.rsplit("/", 1)[1] in names
    assert other.rsplit("/", 1)[1] not in names


@pytest.mark.parametrize("round_", [1, 2])
def test_fresh_pg_database_starts_empty_each_test(fresh_pg_database: str, round_: int) -> None:
    import psycopg

    assert _tables(fresh_pg_database) == set()
    with psycopg.connect(fresh_pg_database) as conn:
        conn.execute(f"create table leftover_{round_} (id int)")


# --------------------------------------------------------------------------- tmux, promtool


def test_tmux_server_runs_a_private_session(tmux_server: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    new = _run("tmux", "-S", tmux_server, "new-session", "-d", "-s", "infra", "sleep 60", env=env)
    assert new.returncode == 0, new.stderr
    listed = _run("tmux", "-S", tmux_server, "list-sessions", "-F", "#{session_name}", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["infra"]
    assert tmux_server.is_socket()


def test_promtool_runs(promtool: str) -> None:
    result = _run(promtool, "--version")
    assert result.returncode == 0, result.stderr
    assert "promtool" in (result.stdout + result.stderr)


# --------------------------------------------------------------------------- the CLI runner


def test_cli_env_gives_each_test_its_own_ledger_home(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert cli_env["SECRETS_LEDGER_HOME"] == str(tmp_path / "home")
    assert cli_env["PATH"] == os.environ["PATH"]


# --------------------------------------------------------------------------- failure messages
