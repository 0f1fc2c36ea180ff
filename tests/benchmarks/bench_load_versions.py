"""Benchmark: loading a secret with thousands of versions (issue 2: "loads in milliseconds").

    PYTHONPATH=. python tests/benchmarks/bench_load_versions.py [--versions 100 1000 3000]
        [--runs 15]

For each size, one secret gets that many versions through `SecretsLedger.write` (a real SQLite
file; the in-memory keychain, since loading never reads a value), with the default retention
of 10, so every write past the tenth also records a `VersionPruned`: about two events per
version. Then, in the same process, interleaved run by run:

- project: `SecretsLedger.history(credential, address)`, what `secrets versions` runs after
  its arguments are parsed: authorise the session from the log, then load the `Secret`, which
  starts from its newest snapshot (one every 50 events) and folds the events after it;
- baseline: the library reading and decoding *every* stored event of that secret
  (`recorder.select_events` + `mapper.to_domain_event`), i.e. what loading would cost with no
  snapshot at all, before any folding.

Prints a markdown table of medians and the ratio (project / baseline; below 1 is faster).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _build(home: Path, versions: int) -> tuple[Any, Any, Any]:
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.store.opening import open_ledger
    from ledger.vault.memory import MemoryKeyring

    backend = MemoryKeyring()
    app = open_ledger(home, create=True, backend=backend)
    app.checkpoint_every = 0
    issued = app.initialize("alice")
    assert issued is not None
    cred = Credential(token=issued.token)
    address = SecretAddress("production", "nexus", "bench.many")
    for n in range(versions):
        app.write(cred, address, f"value-{n:06d}-" + "x" * 24)
    app.close()
    return backend, cred, address


def _ms(work: Any) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def measure(versions: int, runs: int) -> dict[str, Any]:
    from ledger.address import secret_id
    from ledger.store.opening import open_ledger

    home = Path(tempfile.mkdtemp(prefix="bench-load-versions-"))
    try:
        backend, cred, address = _build(home / "ledger", versions)
        app = open_ledger(home / "ledger", backend=backend)
        oid = secret_id(address.environment, address.service, address.name)
        events = len(app.recorder.select_events(oid))

        def project() -> None:
            secret = app.history(cred, address)
            assert secret.current_version == versions

        def baseline() -> None:
            decoded = [app.mapper.to_domain_event(s) for s in app.recorder.select_events(oid)]
            assert len(decoded) == events

        project()  # warm imports and caches on both sides before timing
        baseline()
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(runs):
            ours.append(_ms(project))
            theirs.append(_ms(baseline))
        app.close()
        return {
            "versions": versions,
            "events": events,
            "project_ms": statistics.median(ours),
            "baseline_ms": statistics.median(theirs),
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rows = [measure(n, args.runs) for n in args.versions]
    print(
        "| versions | events of the secret | `history()` median ms "
        "| read + decode all its events, median ms | ratio |"
    )
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["project_ms"] / r["baseline_ms"]
        print(
            f"| {r['versions']:,} | {r['events']:,} | {r['project_ms']:.1f} | "
            f"{r['baseline_ms']:.1f} | {ratio:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
