"""The unit tier's guard: a test here starts no service, no process and opens no network
connection, so `scripts/test-all --unit` needs nothing beyond the venv and stays fast.

A test that asks for a service fixture fails before it runs; one that starts a process (the
CLI, a daemon, a helper) or connects over TCP/IP fails at that call. Such a test belongs in
tests/integration (one real service) or tests/e2e (the CLI as a subprocess).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# The fixtures of tests/conftest.py, tests/pg_fixtures.py and tests/ledger_fixtures.py that
# start or need a real service or the CLI.
SERVICE_FIXTURES = frozenset(
    {
        "secret_service",
        "postgres_cluster",
        "postgres_url",
        "fresh_pg_database",
        "pg",
        "pg_url",
        "ledger",
        "tmux_server",
        "promtool",
        "cli",
        "store_for",
        "store_url",
    }
)
_MOVE = "it belongs in tests/integration or tests/e2e"


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError(f"a unit test may not {what}: {_MOVE}")

    return refuse


@pytest.fixture(autouse=True)
def _unit_tier_guard(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    used = sorted(SERVICE_FIXTURES.intersection(request.fixturenames))
    if used:
        pytest.fail(f"a unit test may not use the fixtures {used}: {_MOVE}", pytrace=False)
    # subprocess.run/Popen/check_output all end in _execute_child.
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse("start a process"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        monkeypatch.setattr(os, name, _refuse("start a process"))
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"a unit test may not use the network ({address!r}): {_MOVE}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
