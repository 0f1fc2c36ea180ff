"""Benchmark: what this host's seen heads (ledger/integrity/seen_heads.py) cost a `get`.

    PYTHONPATH=. python tests/benchmarks/bench_seen_heads.py [--rounds 200] [--runs 15]
        [--base DIR]

For a small ledger (1 secret) and one of 1,000 secrets (each read once, so the witness holds
a row per aggregate), on SQLite and the Secret Service, in a private D-Bus session:

- in process: the decisions a `get` makes (authorise the token: settings and operator loads;
  load the secret), with the witness and with it switched off on the same ledger, interleaved,
  medians; and the whole `SecretsLedger.read` (the keychain round trip included);
- the first open of the witness file in a process;
- as a whole process: `python -m commands get` from this checkout and, with `--base DIR`, from
  a checkout without the witness (`git archive <commit> | tar -x -C DIR`), interleaved, medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from private_keyring import INNER, reexec_in_private_keyring  # noqa: E402


def _no_spec(value: str) -> None:
    return None


def _build(home: Path, count: int) -> tuple[Any, Any, Any]:
    from keyring.backends.SecretService import Keyring

    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.store.opening import open_ledger

    ledger = open_ledger(home, create=True, backend=Keyring())
    ledger.checkpoint_every = 0
    issued = ledger.initialize("alice")
    assert issued is not None
    cred = Credential(token=issued.token)
    addresses = [SecretAddress("default", "svc", f"key{n}") for n in range(count)]
    for n, address in enumerate(addresses):
        ledger.write(cred, address, f"value-{n}-" + "z" * 24, spec_check=_no_spec)
    for address in addresses:
        ledger.read(cred, address)
    return ledger, cred, addresses[0]


def _in_process(ledger: Any, cred: Any, address: Any, rounds: int) -> dict[str, float]:
    from ledger.access.policy import Permission

    def decide() -> None:
        ledger.authorize(cred, Permission.READ, "get", address)
        ledger.load_secret(address.id, str(address))

    times: dict[str, list[float]] = {"on": [], "off": [], "read": []}
    for n in range(rounds):
        # The first decision after `read` (which appends a receipt) pays the store's cache
        # refill: alternate which mode goes first, and warm up once.
        decide()
        for mode in ("on", "off") if n % 2 else ("off", "on"):
            type(ledger)._bench_off = mode == "off"
            start = time.perf_counter()
            decide()
            times[mode].append(time.perf_counter() - start)
        type(ledger)._bench_off = False
        start = time.perf_counter()
        ledger.read(cred, address)
        times["read"].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def _first_open(home: Path, rounds: int) -> float:
    from ledger.integrity.seen_heads import SeenHeads

    found = []
    for _ in range(rounds):
        start = time.perf_counter()
        seen = SeenHeads(home / "seen-heads.sqlite", None, lambda _: None)  # type: ignore[arg-type]
        seen._connection()
        found.append(time.perf_counter() - start)
        seen.close()
    return statistics.median(found) * 1000


def _whole(home: Path, token: str, base: Path | None, runs: int) -> dict[str, float]:
    env = {
        **os.environ,
        "SECRETS_LEDGER_HOME": str(home),
        "SECRETS_LEDGER_TOKEN": token,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
    }
    cmd = [sys.executable, "-m", "commands", "get", "--service", "svc", "--name", "key0"]
    where = {"with witness": REPO, **({"without": base} if base else {})}
    times: dict[str, list[float]] = {k: [] for k in where}
    for _ in range(runs):
        for name, cwd in where.items():
            start = time.perf_counter()
            done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sizes", default="1,1000")
    parser.add_argument("--base", type=Path, default=None)
    args = parser.parse_args()
    if not os.environ.get(INNER):
        return reexec_in_private_keyring([__file__, *sys.argv[1:]], "bench-seen-heads")

    from ledger.application import SecretsLedger

    # Switched off per call through the instance: the property answers None when asked to.
    original = SecretsLedger.seen_heads
    SecretsLedger._bench_off = False  # type: ignore[attr-defined]
    SecretsLedger.seen_heads = property(  # type: ignore[assignment,method-assign]
        lambda self: None if type(self)._bench_off else original.fget(self)  # type: ignore[attr-defined]
    )
    print(
        "| secrets | decisions of a get, witness on (ms) | off (ms) | difference (ms) "
        "| whole read in process (ms) | first open of the file (ms) | whole process |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        home = Path(tempfile.mkdtemp(prefix=f"bench-seen-{size}-"))
        ledger, cred, address = _build(home, size)
        inproc = _in_process(ledger, cred, address, args.rounds)
        opened = _first_open(home, 50)
        whole = _whole(home, cred.token, args.base, args.runs)
        shown = ", ".join(f"{k} {v:.0f} ms" for k, v in whole.items())
        print(
            f"| {size} | {inproc['on']:.3f} | {inproc['off']:.3f} | "
            f"{inproc['on'] - inproc['off']:.3f} | {inproc['read']:.2f} | {opened:.3f} | {shown} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
