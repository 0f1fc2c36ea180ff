"""Start-up cost of `secrets` commands as whole processes, side by side with the baselines.

Not a pytest module (pytest collects test_*.py only). Run from the repository root:

    python tests/benchmarks/bench_startup.py [--runs 21] [--no-pyc]

It re-runs itself inside a private D-Bus session with its own unlocked gnome-keyring (a
throwaway HOME, as docs in /work/shared/field-notes.md describe), creates a ledger on that
Secret Service, a keyring entry for `keyring get` and a throwaway GnuPG key and password store
for `pass show`, starts a `secrets agent` for the rows marked "agent", then times every
command round-robin (so drift hits all of them alike) and
prints a markdown table of medians and ratios to the baselines. It times this checkout's code
(it checks that the `secrets` console script imports it through PYTHONPATH) with its bytecode
cache written by the warm-up runs, as a user's installed or once-run copy has it; `--no-pyc`
times it compiled from source on every run instead.

Needs: dbus-run-session, gnome-keyring-daemon, gpg, pass.
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
BIN = Path(sys.executable).parent  # real scripts, not pyenv shims (a shim adds a bash start-up)
INSIDE = "SECRETS_LEDGER_BENCH_INSIDE"
KEYRING_PASSWORD = "bench-keyring-password"
SECRET = "sk-" + "Bn7" * 16
GPG_ID = "bench@secrets-ledger.invalid"


def _relaunch_in_private_session(argv: list[str]) -> int:
    for tool in ("dbus-run-session", "gnome-keyring-daemon", "gpg", "pass"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_startup: {tool} is not installed")
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    run_dir = home / "run"
    run_dir.mkdir(mode=0o700)
    env = {
        **os.environ,
        INSIDE: str(home),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(run_dir),
        "XDG_DATA_HOME": str(home / "data"),
        "KEYRING_PASSWORD": KEYRING_PASSWORD,
    }
    script = (
        'printf %s "$KEYRING_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets '
        '>/dev/null; exec "$@"'
    )
    try:
        return subprocess.run(
            ["dbus-run-session", "--", "sh", "-c", script, "sh", sys.executable, *argv],
            env=env,
            check=False,
        ).returncode
    finally:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env={**env, "GNUPGHOME": str(home / "gnupg")},
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


# What `secrets` (the console script: `commands.launch`, then `commands.main`) imports.
_WHERE = "import commands.main; print(commands.main.__file__)"


def _run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        cmd, env=env, input=stdin, capture_output=True, text=True, cwd=REPO, check=False
    )
    if done.returncode != 0:
        sys.exit(f"bench_startup: {' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


def _prepare(home: Path, no_pyc: bool) -> tuple[dict[str, str], dict[str, list[str]]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
        "SECRETS_LEDGER_HOME": str(home / "ledger"),
        "GNUPGHOME": str(home / "gnupg"),
        "PASSWORD_STORE_DIR": str(home / "password-store"),
    }
    env.pop("SECRETS_LEDGER_VAULT", None)
    # Python writes the bytecode cache (.pyc) of the code it imports, as it does for a user;
    # with PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) every `secrets`
    # command would compile this repository's modules from source on every run while the
    # baselines (typer, keyring: installed, compiled by pip) would not.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if no_pyc:  # --no-pyc: as such a shell does, for comparison
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for cache in _checkout_caches():
            shutil.rmtree(cache)
    Path(env["GNUPGHOME"]).mkdir(mode=0o700)
    secrets = [str(BIN / "secrets")]
    # The console script is an editable install of some checkout: PYTHONPATH must win, so that
    # what is timed is this checkout's code.
    where = _run([sys.executable, "-c", _WHERE], env).strip()
    if Path(where).resolve() != (REPO / "commands" / "main.py").resolve():
        sys.exit(f"bench_startup: `secrets` would run {where}, not this checkout's code")
    token = _run([*secrets, "init", "--operator", "bench"], env).strip()
    _run([*secrets, "auth", "login", "--operator", "bench", "--token-stdin"], env, token + "\n")
    address = ["--service", "nexus", "--name", "mcp.bun.apiKey"]
    _run([*secrets, "set", *address, "--value-stdin"], env, SECRET)
    _run(
        [
            sys.executable,
            "-c",
            f"import keyring; keyring.set_password('bench', 'user', {SECRET!r})",
        ],
        env,
    )
    _run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", GPG_ID, "default", "default"],
        env,
    )
    _run(["pass", "init", GPG_ID], env)
    _run(["pass", "insert", "--multiline", "bench/key"], env, SECRET + "\n")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import typer"': [sys.executable, "-c", "import typer"],
        "keyring get (Secret Service)": [str(BIN / "keyring"), "get", "bench", "user"],
        "pass show": ["pass", "show", "bench/key"],
        "secrets --help": [*secrets, "--help"],
        "secrets versions": [*secrets, "versions", *address],
        "secrets list": [*secrets, "list"],
        "secrets dashboard": [*secrets, "dashboard"],
        "secrets get (Secret Service)": [*secrets, "get", *address],
    }
    # The same reads handed to a running `secrets agent` (its own socket, so the rows above
    # run the CLI in their own process: no agent answers at the default path).
    agent_env = {**env, "SECRETS_LEDGER_AGENT_SOCKET": str(home / "agent" / "agent.sock")}
    Path(agent_env["SECRETS_LEDGER_AGENT_SOCKET"]).parent.mkdir(mode=0o700)
    _run([*secrets, "agent", "start", "--idle-minutes", "60"], agent_env)
    agent_rows = {
        "secrets versions (agent)": [*secrets, "versions", *address],
        "secrets list (agent)": [*secrets, "list"],
        "secrets get (Secret Service, agent)": [*secrets, "get", *address],
    }
    commands.update(agent_rows)
    envs = {name: agent_env for name in agent_rows}
    # Every command must work (and the reads must return the value) before it is timed.
    served = _agent_served(secrets, agent_env)
    for name, cmd in commands.items():
        out = _run(cmd, envs.get(name, env))
        if ("get" in name or name == "pass show") and out.strip() != SECRET:
            sys.exit(f"bench_startup: {name} did not return the stored value")
    if _agent_served(secrets, agent_env) != served + len(agent_rows):
        sys.exit("bench_startup: the agent did not run the agent rows")
    return env, commands, envs


def _agent_served(secrets: list[str], env: dict[str, str]) -> int:
    status = _run([*secrets, "agent", "status"], env)
    return int(status.split(", ")[1].split()[0])


def _measure(
    commands: dict[str, list[str]],
    env: dict[str, str],
    envs: dict[str, dict[str, str]],
    runs: int,
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=envs.get(name, env), cwd=REPO, capture_output=True, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def _table(times: dict[str, list[float]], runs: int) -> str:
    median = {name: statistics.median(values) for name, values in times.items()}
    baselines = ("keyring get (Secret Service)", "pass show", 'python -c "import typer"')
    lines = [
        "| command | median ms | p90 ms | vs `keyring get` | vs `pass show` | vs `import typer` |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
        ratios = [f"{median[name] / median[b]:.2f}x" for b in baselines]
        lines.append(f"| `{name}` | {median[name]:.0f} | {p90:.0f} | " + " | ".join(ratios) + " |")
    cpu = os.cpu_count()
    lines.append("")
    lines.append(
        f"{runs} runs each, round-robin, on {cpu} CPUs; Python {sys.version.split()[0]}; "
        "whole processes including interpreter start-up; "
        f"code from {REPO} ({_cached_modules()} of its modules compiled in __pycache__)."
    )
    return "\n".join(lines)


def _sources() -> list[Path]:
    return [p for d in ("commands", "ledger", "projections") for p in (REPO / d).rglob("*.py")]


def _checkout_caches() -> set[Path]:
    return {p.parent / "__pycache__" for p in _sources() if (p.parent / "__pycache__").is_dir()}


def _cached_modules() -> str:
    sources = _sources()
    tag = sys.implementation.cache_tag
    cached = [p for p in sources if (p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").exists()]
    return f"{len(cached)}/{len(sources)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument(
        "--no-pyc",
        action="store_true",
        help="time this checkout's modules compiled from source on every run "
        "(PYTHONDONTWRITEBYTECODE=1, its __pycache__ removed); installed packages keep theirs",
    )
    args = parser.parse_args()
    home = os.environ.get(INSIDE)
    if not home:
        return _relaunch_in_private_session([str(Path(__file__).resolve()), *sys.argv[1:]])
    env, commands, envs = _prepare(Path(home), args.no_pyc)
    try:
        _measure(commands, env, envs, 2)  # warm the page cache and write the .pyc files
        print(_table(_measure(commands, env, envs, args.runs), args.runs))
    finally:
        # It runs in a session of its own: the private D-Bus session ending does not stop it.
        agent_env = next(iter(envs.values()))
        _run([str(BIN / "secrets"), "agent", "stop"], agent_env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
