"""Benchmark: `secrets run` of 20 secrets as a whole process, beside one `secrets get` and
beside 20 separate `get`s (what a program does without `run`).

    python tests/benchmarks/bench_run.py [--runs 11]

Re-runs itself inside a private D-Bus session with a throwaway, unlocked gnome-keyring
(private_keyring.py); the user's keychain is never touched. Creates a ledger on that Secret
Service with 20 secrets of one service, then times, round-robin (so drift hits all rows
alike): `secrets get` of one secret (the baseline), `secrets run --service S -- true` (20
secrets, 20 recorded reads) and a shell loop of 20 `secrets get`s. Prints a markdown table of
medians and the ratio of each row to the baseline. Target (docs/performance.md): run of 20 at
most 1.5x one get.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from private_keyring import INNER, reexec_in_private_keyring  # noqa: E402

COUNT = 20


def _run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        cmd, env=env, input=stdin, capture_output=True, text=True, cwd=REPO, check=False
    )
    if done.returncode != 0:
        sys.exit(f"bench_run: {' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


def _inside(runs: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-run-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
        "SECRETS_LEDGER_HOME": str(home / "ledger"),
    }
    env.pop("SECRETS_LEDGER_VAULT", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    secrets = [sys.executable, "-m", "commands"]
    try:
        token = _run([*secrets, "init", "--operator", "bench"], env).strip()
        _run([*secrets, "auth", "login", "--operator", "bench", "--token-stdin"], env, token + "\n")
        for i in range(COUNT):
            name = f"key{i:02d}.apiKey"
            _run(
                [*secrets, "set", "--service", "app", "--name", name, "--value-stdin"], env, f"v{i}"
            )
        one_get = [*secrets, "get", "--service", "app", "--name", "key00.apiKey"]
        loop = " ".join(
            f"{sys.executable} -m commands get --service app --name key{i:02d}.apiKey >/dev/null;"
            for i in range(COUNT)
        )
        rows = {
            "secrets get (1 secret): baseline": one_get,
            f"secrets run --service app -- true ({COUNT} secrets)": [
                *secrets,
                "run",
                "--service",
                "app",
                "--",
                "true",
            ],
            f"{COUNT} x secrets get": ["sh", "-c", loop],
        }
        times: dict[str, list[float]] = {label: [] for label in rows}
        for cmd in rows.values():  # warm-up: bytecode caches, views caught up
            _run(cmd, env)
        for _ in range(runs):
            for label, cmd in rows.items():
                started = time.perf_counter()
                _run(cmd, env)
                times[label].append(time.perf_counter() - started)
        base = statistics.median(times["secrets get (1 secret): baseline"])
        print(f"| command ({runs} runs, medians) | time | vs one get |")
        print("|---|---:|---:|")
        for label, spent in times.items():
            median = statistics.median(spent)
            print(f"| {label} | {median * 1000:.0f} ms | {median / base:.2f}x |")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    if not os.environ.get(INNER):
        return reexec_in_private_keyring([__file__, "--runs", str(args.runs)], "bench-run")
    _inside(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
