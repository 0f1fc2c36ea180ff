"""Run every fuzz target for a fixed time and summarise executions and findings.

    pip install atheris          # 2.3+ builds wheels for CPython 3.11 on x86-64 Linux
    python tests/fuzz/run_all.py --seconds 60

`--seconds` is per target. Not part of the pytest run. Each target starts from a small seed
corpus (written to a temporary directory, so the repository stays clean); an input that breaks
a target's contract is saved as `tests/fuzz/findings/<target>-crash-*` and the run exits 1.
Results are recorded in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TARGETS = ["validation", "catalogue", "session", "vault", "values_file", "as_of", "bundle"]

SEEDS: dict[str, list[bytes]] = {
    "validation": [b"\x00" * 16, b"\x05nexus\x0emcp.bun.apiKey" + b"sk-" + b"a1B2" * 12],
    "catalogue": [
        b'[[key]]\nservice = "team"\nname = "team.apiKey"\nformat = "api_key"\n'
        b'rotation = "manual"\nrotation_days = 90\n',
        b"key = 1\n",
        b"[[key]]\n",
    ],
    "session": [
        json.dumps(
            {
                "operator": "alice",
                "session_id": "0" * 32,
                "session_secret": "s" * 43,
                "expires_at": "2026-01-01T00:00:00+00:00",
            }
        ).encode(),
        b"[]",
        b"slt.alice.abc",
    ],
    "vault": [],
    "values_file": [
        b'\x00[production.nexus]\n"mcp.bun.apiKey" = "sk-abc"\n',
        b'\x01{"production/nexus/mcp.bun.apiKey": "sk-abc"}',
        b'\x02export production/nexus/a.b=\'x\' # c\nstaging/github/t="q\\""\n',
    ],
    "as_of": [b"2026-03-01", b"2026-03-01T12:00:00.123Z", b"7d", b"2026-03-01T12:00+05:30"],
    "bundle": [b"\x00" + b'{"position": 12, "signature": "ab"}', b"\x01-----BEGIN", b"\x02" * 8],
}


def _vault_seed() -> bytes:
    sys.path.insert(0, str(REPO))
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    with tempfile.TemporaryDirectory() as tmp:
        backend = EncryptedFileKeyring(path=os.path.join(tmp, "vault.enc"), passphrase="seed")
        backend.set_password("secrets-ledger:fuzz", "default/s/n#v1.000000000000", "value")
        return Path(tmp, "vault.enc").read_bytes()


def run(target: str, seconds: int, workdir: Path) -> dict[str, object]:
    corpus = workdir / target
    corpus.mkdir()
    seeds = SEEDS[target] or [_vault_seed(), b"{}", b'{"format": 1}']
    for n, seed in enumerate(seeds):
        (corpus / f"seed-{n}").write_bytes(seed)
    findings = HERE / "findings"
    findings.mkdir(exist_ok=True)
    command = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        f"-max_total_time={seconds}",
        "-rss_limit_mb=2048",
        "-timeout=20",
        f"-artifact_prefix={findings}/{target}-",
        "-print_final_stats=1",
        str(corpus),
    ]
    extra = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *([extra] if extra else [])])}
    done = subprocess.run(command, cwd=HERE, env=env, capture_output=True, text=True, check=False)
    log = done.stdout + done.stderr
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log) or re.findall(
        r"Done (\d+) runs", log
    )
    return {
        "target": target,
        "seconds": seconds,
        "executions": int(runs[-1]) if runs else 0,
        "crashed": done.returncode != 0,
        "exit": done.returncode,
        "tail": "\n".join(log.strip().splitlines()[-25:]) if done.returncode else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    parser.add_argument("--only", choices=TARGETS, action="append", help="run only these")
    args = parser.parse_args()
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="fuzz-corpus-") as tmp:
        for target in args.only or TARGETS:
            result = run(target, args.seconds, Path(tmp))
            results.append(result)
            state = "FINDING" if result["crashed"] else "ok"
            print(f"{target:<11} {result['executions']:>10} executions  {state}", flush=True)
            if result["crashed"]:
                print(result["tail"], file=sys.stderr)
    total = sum(int(str(r["executions"])) for r in results)
    print(
        f"{'total':<11} {total:>10} executions  {sum(bool(r['crashed']) for r in results)} "
        "target(s) with findings"
    )
    return 1 if any(r["crashed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
