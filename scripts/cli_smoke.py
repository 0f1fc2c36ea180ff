"""A CLI smoke test through the installed `secrets` console script, no service needed.

    python scripts/cli_smoke.py      (the python of the venv to check)

Used by scripts/test-lower-bounds: with every dependency at the lowest version pyproject.toml
allows, the entry point starts, parses (typer's internals are used in commands/main.py and
commands/fastparams.py), and a ledger works end to end on the encrypted file vault: init,
login, set, get, list, and a usage error as one line with exit 2. Runs outside the repository,
so the installed package is what runs. Prints one line per check; exits 1 on the first failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PASSPHRASE = "correct horse battery staple for the smoke test"  # noqa: S105 - a throwaway vault
VALUE = "sk-smoke-" + "Zq3" * 12


def main() -> int:
    secrets = Path(sys.executable).with_name("secrets")
    with tempfile.TemporaryDirectory(prefix="sl-smoke-") as tmp:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SECRETS_LEDGER_", "PYTHON_KEYRING", "DBUS_"))
        }
        env.update(
            {
                "HOME": tmp,
                "SECRETS_LEDGER_HOME": str(Path(tmp) / "ledger"),
                "SECRETS_LEDGER_VAULT": "file",
                "SECRETS_LEDGER_PASSPHRASE": PASSPHRASE,
            }
        )

        def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(secrets), *args],
                input=stdin,
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        helped = run("--help")
        if helped.returncode != 0 or "Usage" not in helped.stdout:
            return _fail("secrets --help", helped)
        print("ok: secrets --help")

        created = run("init", "--operator", "alice")
        token = created.stdout.strip()
        if created.returncode != 0 or not token:
            return _fail("secrets init", created)
        print("ok: secrets init")
        login = run("auth", "login", "--operator", "alice", "--token-stdin", stdin=token + "\n")
        if login.returncode != 0:
            return _fail("secrets auth login", login)
        print("ok: secrets auth login")
        stored = run("set", "--service", "smoke", "--name", "api.key", "--value-stdin", stdin=VALUE)
        if stored.returncode != 0:
            return _fail("secrets set", stored)
        print("ok: secrets set")
        got = run("get", "--service", "smoke", "--name", "api.key")
        if got.returncode != 0 or got.stdout.strip() != VALUE:
            return _fail("secrets get (the value set)", got)
        print("ok: secrets get")
        listed = run("list")
        if listed.returncode != 0 or "api.key" not in listed.stdout:
            return _fail("secrets list", listed)
        print("ok: secrets list")
        bad = run("get", "--no-such-option")
        if bad.returncode != 2 or not bad.stderr.startswith("usage:") or "Traceback" in bad.stderr:
            return _fail("a usage error (exit 2, one line)", bad)
        print("ok: a usage error")
    return 0


def _fail(what: str, result: subprocess.CompletedProcess[str]) -> int:
    # The smoke value is not a secret, but stdout is not echoed anyway: stderr says what broke.
    print(f"FAILED: {what}: exit {result.returncode}\n{result.stderr[-3000:]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
