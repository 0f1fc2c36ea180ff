"""Benchmark: `rotate --all` over N generated secrets vs N raw keyring sets, in one run.

    PYTHONPATH=. python tests/benchmarks/bench_rotate_all.py [--secrets 200] [--runs 5]
        [--backend secret-service|file|memory]

Both sides use the same keyring backend in the same process, so the ratio is the ledger's
overhead per rotation (generate, fingerprint, intent journal, event append with its chain link,
run bookkeeping) over the bare keychain write. With `secret-service` (the default) the script
re-runs itself inside a private D-Bus session with a throwaway, unlocked gnome-keyring, so the
user's real keychain is never touched. Prints a markdown table of medians.
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

from private_keyring import INNER, reexec_in_private_keyring


def _reexec_in_dbus(argv: list[str]) -> int:
    return reexec_in_private_keyring(argv, "bench-rotate-all")


def _backend(kind: str, home: Path) -> Any:
    if kind == "secret-service":
        from keyring.backends.SecretService import Keyring

        return Keyring()
    if kind == "file":
        from ledger.vault.encrypted_file import EncryptedFileKeyring

        return EncryptedFileKeyring(path=str(home / "vault.enc"), passphrase="bench passphrase")
    from ledger.vault.memory import MemoryKeyring

    return MemoryKeyring()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--backend", choices=["secret-service", "file", "memory"], default="secret-service"
    )
    args = parser.parse_args()
    if args.backend == "secret-service" and not os.environ.get(INNER):
        return _reexec_in_dbus(sys.argv)

    from ledger.catalogue import load_catalogue
    from ledger.config import open_ledger
    from ledger.credentials import Credential
    from ledger.rotation import Rotator
    from ledger.secret import Secret

    n = args.secrets
    work = Path(tempfile.mkdtemp(prefix="bench-rotate-"))
    try:
        backend = _backend(args.backend, work)
        ledger = open_ledger(work / "home", create=True, backend=backend)
        issued = ledger.initialize("bench")
        assert issued is not None
        cred = Credential(token=issued.token)
        team = work / "catalogue.toml"
        team.write_text(
            "".join(
                f'[[key]]\nservice = "bench"\nname = "k{i:03d}.password"\n'
                'format = "generated_password"\nrotation = "generated"\n'
                for i in range(n)
            )
        )
        rotator = Rotator(ledger, load_catalogue(team))
        from ledger.address import SecretAddress

        for i in range(n):
            ledger.write(cred, SecretAddress("bench", "bench", f"k{i:03d}.password"), "x" * 40)

        rotate_times: list[float] = []
        raw_times: list[float] = []
        service = f"bench-raw-{secrets.token_hex(4)}"
        for _ in range(args.runs):
            # Interleaved so that both sides see the same keychain state and load.
            started = time.perf_counter()
            report = rotator.rotate_batch(cred, "all")
            rotate_times.append(time.perf_counter() - started)
            assert len(report.rotated) == n and report.complete

            values = [secrets.token_urlsafe(30) for _ in range(n)]
            started = time.perf_counter()
            for i, value in enumerate(values):
                backend.set_password(service, f"raw-{i:03d}", value)
            raw_times.append(time.perf_counter() - started)
        for i in range(n):
            backend.delete_password(service, f"raw-{i:03d}")
        events = ledger.recorder.max_notification_id()
        versions = sum(
            len(s.versions)
            for s in (ledger.repository.get(sid) for sid in ledger.secret_ids())
            if isinstance(s, Secret)
        )
        ledger.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rotate_median = statistics.median(rotate_times)
    raw_median = statistics.median(raw_times)
    print(
        f"backend: {args.backend}; {n} secrets; {args.runs} runs each, interleaved; "
        f"{events} events, {versions} versions at the end; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| operation | secrets | median total (s) | median per secret (ms) | min / max (s) |")
    print("|---|---:|---:|---:|---:|")
    for label, times in (
        ("`rotate --all` (Rotator.rotate_batch)", rotate_times),
        ("raw `keyring.set_password`", raw_times),
    ):
        median = statistics.median(times)
        print(
            f"| {label} | {n} | {median:.3f} | {median / n * 1000:.2f} | "
            f"{min(times):.3f} / {max(times):.3f} |"
        )
    print(f"\nratio rotate --all / raw set: **{rotate_median / raw_median:.2f}x**")
    # Per run, in order: a keychain whose cost grows with the items it holds shows a trend.
    print("\nper run (s), rotate: " + ", ".join(f"{t:.2f}" for t in rotate_times))
    print("per run (s), raw set: " + ", ".join(f"{t:.2f}" for t in raw_times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
