"""Benchmark: `set` in process (SQLite + Secret Service) vs a raw keyring set + a raw append.

    PYTHONPATH=. python tests/benchmarks/bench_set.py [--ops 30] [--rounds 5]

Project side: `SecretsLedger.write(credential, address, value)`, what `secrets set` calls once
its arguments are parsed: authorise the session from the log, validate the value, fingerprint
it (the key is read from the keychain), journal an intent, put the value in the keychain,
append the version (and its chain link) to the SQLite store, prune beyond the retention.
Two cases: a secret below its retention (no prune) and one at its retention of 10 (every set
also prunes one version, whose value is deleted from the keychain).

Baseline: `keyring` Secret Service backend `set_password` + one event appended to a plain
`eventsourcing` SQLite application (the library's `Aggregate`, same `save`, no chain), on the
same keychain, in the same process, interleaved op by op in rounds.

The script re-runs itself inside a private D-Bus session with a throwaway, unlocked
gnome-keyring (as bench_startup.py and bench_rotate_all.py do); the user's keychain is never
touched. Prints a markdown table of medians per operation and the ratio; the keychain round
trips per operation are counted to show where the time goes.
"""

from __future__ import annotations

import argparse
import os
import secrets
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
from private_keyring import INNER, reexec_in_private_keyring  # noqa: E402


def _reexec_in_dbus(argv: list[str]) -> int:
    return reexec_in_private_keyring(argv, "bench-set")


def _counting_backend() -> Any:
    from keyring.backends.SecretService import Keyring

    class Counting(Keyring):  # type: ignore[misc]
        """The real Secret Service backend, counting its round trips."""

        calls: dict[str, int]

        def __init__(self) -> None:
            super().__init__()
            self.calls = {"get": 0, "set": 0, "delete": 0}

        def get_password(self, service: str, username: str) -> str | None:
            self.calls["get"] += 1
            found: str | None = super().get_password(service, username)
            return found

        def set_password(self, service: str, username: str, password: str) -> None:
            self.calls["set"] += 1
            super().set_password(service, username, password)

        def delete_password(self, service: str, username: str) -> None:
            self.calls["delete"] += 1
            super().delete_password(service, username)

    return Counting()


def _plain_app(path: Path) -> tuple[Any, Any]:
    """A plain eventsourcing SQLite application and one aggregate to append to."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Counter(Aggregate):
        @event("Created")
        def __init__(self) -> None:
            self.n = 0

        @event("Incremented")
        def increment(self, fingerprint: str) -> None:
            self.n += 1

    app: Any = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )
    counter = Counter()
    app.save(counter)
    return app, counter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=30, help="operations per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the `set` calls; top functions on stderr"
    )
    args = parser.parse_args()
    if not os.environ.get(INNER):
        return _reexec_in_dbus([str(Path(__file__).resolve()), *sys.argv[1:]])
    if args.rounds > 9:
        sys.exit("bench_set: at most 9 rounds (the no-prune case must stay under retention 10)")

    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.store.opening import open_ledger

    work = Path(tempfile.mkdtemp(prefix="bench-set-work-"))
    try:
        backend = _counting_backend()
        ledger = open_ledger(work / "home", create=True, backend=backend)
        issued = ledger.initialize("bench")
        assert issued is not None
        session = ledger.login("bench", issued.token)
        cred = Credential(
            operator="bench", session_id=session.session_id, session_secret=session.session_secret
        )
        fresh = [SecretAddress("prod", "bench", f"k{i:03d}.apiKey") for i in range(args.ops)]
        full = SecretAddress("prod", "bench", "at-retention.apiKey")
        for _ in range(ledger.settings.retention):
            ledger.write(cred, full, "sk-" + secrets.token_hex(20))
        app, counter = _plain_app(work / "plain.sqlite")
        raw_service = f"bench-raw-{secrets.token_hex(4)}"

        times: dict[str, list[float]] = {"below": [], "prune": [], "raw": []}
        calls: dict[str, dict[str, int]] = {k: {"get": 0, "set": 0, "delete": 0} for k in times}

        def timed(kind: str, action: Any) -> None:
            before = dict(backend.calls)
            started = time.perf_counter()
            action()
            times[kind].append(time.perf_counter() - started)
            for op, n in backend.calls.items():
                calls[kind][op] += n - before[op]

        def raw_set(i: int) -> None:
            backend.set_password(raw_service, f"raw-{i:03d}", "sk-" + secrets.token_hex(20))
            counter.increment("x" * 64)
            app.save(counter)

        import cProfile

        profiler = cProfile.Profile()
        for _ in range(args.rounds):
            for i in range(args.ops):
                # Interleaved op by op: drift and load hit all three alike.
                value = "sk-" + secrets.token_hex(20)
                if args.profile:
                    profiler.enable()
                timed("below", lambda: ledger.write(cred, fresh[i], value))  # noqa: B023
                timed("prune", lambda: ledger.write(cred, full, value))  # noqa: B023
                profiler.disable()
                timed("raw", lambda: raw_set(i))  # noqa: B023
        for i in range(args.ops):
            backend.delete_password(raw_service, f"raw-{i:03d}")
        ledger.close()
        if args.profile:
            import pstats

            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.ops * args.rounds
    raw_median = statistics.median(times["raw"])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Secret Service (gnome-keyring, private D-Bus session), SQLite; {n} operations per "
        f"row ({args.rounds} rounds of {args.ops}, interleaved); load average {load}; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}\n"
    )
    print(
        "| operation | median ms | p90 ms | keychain get / set / delete per op | "
        "ratio to baseline | target |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for kind, label in (
        ("below", "`set` (SecretsLedger.write), below retention"),
        ("prune", "`set` (SecretsLedger.write), at retention: prunes one version"),
        ("raw", "baseline: keyring `set_password` + plain eventsourcing append"),
    ):
        values = times[kind]
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        per_op = " / ".join(f"{calls[kind][op] / n:.1f}" for op in ("get", "set", "delete"))
        target = "-" if kind == "raw" else "<= 1.5x"
        print(
            f"| {label} | {median * 1000:.1f} | {p90 * 1000:.1f} | {per_op} | "
            f"{median / raw_median:.2f}x | {target} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
