"""Driving the real `secrets` CLI in a subprocess against a throwaway ledger."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FILE_VAULT_PASSPHRASE = "correct horse battery staple for tests"


@dataclass
class Ledger:
    home: Path
    env: dict[str, str]
    backend_factory: Any  # () -> keyring backend, to look inside the keychain in-process
    python: str = sys.executable
    cwd: str = str(REPO)
    token: str = ""
    _ledger: Any = field(default=None, repr=False)

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        merged = {**self.env, **(env or {})}
        return subprocess.run(
            [self.python, "-m", "commands", *args],
            input=input,
            env=merged,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def set(
        self, service: str, name: str, value: str, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        result = self.run(
            "set", "--service", service, "--name", name, "--value-stdin", *extra, input=value
        )
        assert result.returncode == 0, result.stderr
        return result

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--output", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def secret_events(self) -> list[tuple[int, str]]:
        with sqlite3.connect(self.home / "ledger.sqlite") as db:
            return list(
                db.execute(
                    "SELECT rowid, topic FROM stored_events WHERE topic LIKE 'ledger.secret:%' "
                    "ORDER BY rowid"
                )
            )

    def _app(self) -> Any:
        from ledger.config import open_ledger

        if self._ledger is None:
            self._ledger = open_ledger(self.home, backend=self.backend_factory())
        return self._ledger

    def _entry(self, versioned: str) -> str | None:
        address, _, version = versioned.partition("#v")
        environment, service, name = address.split("/", 2)
        doc = self.json("versions", "-e", environment, "--service", service, "--name", name)
        for v in doc["versions"]:
            if v["version"] == int(version):
                return f"{versioned}.{v['fingerprint']}"
        return None

    def keychain_get(self, versioned: str) -> str | None:
        entry = self._entry(versioned)
        return None if entry is None else self._app().vault.get(entry)

    def keychain_delete_matching(self, versioned: str) -> None:
        entry = self._entry(versioned)
        assert entry is not None
        assert self._app().vault.delete(entry)


def start_ledger(
    home: Path, env: dict[str, str], backend_factory: Any, operator: str = "alice"
) -> Ledger:
    ledger = Ledger(
        home=home, env={**env, "SECRETS_LEDGER_HOME": str(home)}, backend_factory=backend_factory
    )
    created = ledger.run("init", "--operator", operator)
    assert created.returncode == 0, created.stderr
    ledger.token = created.stdout.strip()
    login = ledger.run(
        "auth", "login", "--operator", operator, "--token-stdin", input=ledger.token + "\n"
    )
    assert login.returncode == 0, login.stderr
    return ledger
