"""How long the whole-ledger searches take on a generated ledger of about 1,000 secrets:
`secrets audit hash` without an address (every secret loaded, chain-checked, and one keyed
fingerprint per address) and `secrets report unused` (a fold of the Secret events and every
value read).

    PYTHONPATH=. python tests/benchmarks/bench_audit_search.py [--secrets 1000] [--events 20000]

In one process (the generator's in-memory keychain holds the fingerprint key); prints the
event count, each time and the answers, twice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def main() -> int:
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.services.hash_search import search_ledger
    from projections.unused import unused
    from tests.benchmarks.generate_ledger import _Generator

    parser = argparse.ArgumentParser()
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gen = _Generator(Path(tmp) / "home", args.secrets, 20, 1, 1000)
        gen.setup()
        while gen.events + gen.pending < args.events:
            gen.session()
        gen.flush()
        cred = Credential(token=gen.token)
        leaked = "sk-" + "L3k" * 16
        for address in (
            SecretAddress("production", "bench", "leaked.one"),
            SecretAddress("staging", "bench", "leaked.two"),
        ):
            gen.ledger.write(cred, address, leaked)
        events = gen.ledger.recorder.max_notification_id()
        for run in ("first", "second"):
            started = time.perf_counter()
            searched, matches = search_ledger(gen.ledger, cred, leaked)
            took = time.perf_counter() - started
            print(
                f"{run}: {searched} secrets, {events} events: {took:.2f} s "
                f"({took / searched * 1000:.2f} ms per secret); "
                f"matches {[(str(m.address), m.versions) for m in matches]}"
            )
            started = time.perf_counter()
            report = unused(gen.ledger, gen.clock, gen.clock - timedelta(days=1))
            took = time.perf_counter() - started
            print(
                f"{run}: report unused over {events} events: {took:.2f} s; "
                f"{len(report.secrets)} of {report.live} live secrets unread in the last day"
            )
        gen.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
