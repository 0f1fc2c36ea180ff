"""Benchmark: `rotate --all` over N generated secrets vs N raw keyring sets, in one run.

    PYTHONPATH=. python tests/benchmarks/bench_rotate_all.py [--secrets 200] [--runs 5]
        [--backend secret-service|file|memory] [--baseline new|overwrite]

The ratio is the ledger's overhead per rotation (generate, fingerprint, intent journal, event
append with its chain link, run bookkeeping) over the bare keychain write, on the same keyring
backend. gnome-keyring and the encrypted file vault both get slower with every item they hold
(each retained version is one item), so each side starts from the same keychain state:

- Setup is done once per side and never timed: the project side is a ledger holding N
  generated secrets (one version each, written through the ledger); the baseline is N raw
  items. Both are saved (the ledger's home, the vault file or gnome-keyring's keyring files).
- Every measured run of either side is a fresh process on a fresh copy of its saved state:
  with `secret-service`, its own D-Bus session and throwaway gnome-keyring daemon started on
  a copy of the saved keyring (the user's real keychain is never touched). So neither side
  ever runs against the other side's items, nor against items left by an earlier run.
- The sides alternate which goes first from run to run, so a change of load on the shared
  host does not always fall on the same side.
- Timed: the project's `Rotator.rotate_batch(cred, "all")` (what `rotate --all` runs after
  opening the ledger); the baseline's N `set_password` calls (values generated beforehand).
  Each side touches the keychain once before its timer starts (the project reads its
  fingerprint key, the baseline one of its items), so neither side's time holds the one-off
  cost of a process's first keychain access (the file vault's scrypt key derivation). The
  baseline writes N new entries by default (`--baseline new`: the same keychain work as the
  project, which keeps each old version as an item), or overwrites its N items
  (`--baseline overwrite`). Its items are shaped like the ledger's (a namespace, entries named
  by address, version and fingerprint prefix, 40-character values).

Prints a markdown table of medians, the item count each side starts and ends from, and the
host's load average (`os.getloadavg`) around every measured run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from private_keyring import INNER, KEYRINGS_DIR, reexec_in_private_keyring

SIDES = ("rotate", "raw")
LABELS = {
    "rotate": "`rotate --all` (Rotator.rotate_batch)",
    "raw": "raw `keyring.set_password`",
}


def _backend(kind: str, work: Path) -> Any:
    if kind == "secret-service":
        from keyring.backends.SecretService import Keyring

        return Keyring()
    if kind == "file":
        from ledger.vault.encrypted_file import EncryptedFileKeyring

        return EncryptedFileKeyring(path=str(work / "vault.enc"), passphrase="bench passphrase")
    from ledger.vault.memory import MemoryKeyring

    return MemoryKeyring()


def _items(kind: str, backend: Any) -> int:
    """How many items the keychain holds (every service, not only ours)."""
    if kind == "secret-service":
        return sum(1 for _ in backend.get_preferred_collection().get_all_items())
    if kind == "file":
        doc = backend._read()
        return 0 if doc is None else sum(len(users) for users in doc.entries.values())
    return len(backend.entries)


# -- inside one child process ----------------------------------------------------------------


def _raw_entry(i: int, version: int) -> str:
    return f"bench/bench/k{i:04d}.password#v{version}.{i:012x}"


def _provision(side: str, kind: str, n: int, work: Path, backend: Any) -> None:
    """The state a side starts from: N secrets in a ledger, or N raw items (never timed)."""
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    if side == "raw":
        # Shaped like the ledger's: its namespace, entries named by address, version and a
        # fingerprint prefix, 40-character values; so both keychains hold as many bytes.
        service = f"secrets-ledger:{uuid.uuid4().hex}"
        (work / "raw-service").write_text(service)
        for i in range(n):
            backend.set_password(service, _raw_entry(i, 1), "x" * 40)
        return
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.store.opening import open_ledger

    ledger = open_ledger(work / "home", create=True, backend=backend)
    issued = ledger.initialize("bench")
    assert issued is not None
    # A throwaway ledger's operator token, kept beside it for the measuring processes.
    (work / "token").write_text(issued.token)
    (work / "catalogue.toml").write_text(
        "".join(
            f'[[key]]\nservice = "bench"\nname = "k{i:04d}.password"\n'
            'format = "generated_password"\nrotation = "generated"\n'
            for i in range(n)
        )
    )
    cred = Credential(token=issued.token)
    for i in range(n):
        ledger.write(cred, SecretAddress("bench", "bench", f"k{i:04d}.password"), "x" * 40)
    ledger.close()


def _measure(side: str, kind: str, n: int, work: Path, backend: Any, baseline: str) -> dict:
    """Time one side once, on `work` (a fresh copy of its provisioned state)."""
    before = _items(kind, backend)
    if side == "raw":
        service = (work / "raw-service").read_text()
        version = 1 if baseline == "overwrite" else 2
        values = [secrets.token_urlsafe(30) for _ in range(n)]
        # Untimed first touch of the keychain, as on the project's side: D-Bus, or the file
        # vault's scrypt key derivation (0.1 s or more), paid once per process.
        assert backend.get_password(service, _raw_entry(0, 1)) is not None
        started = time.perf_counter()
        for i, value in enumerate(values):
            backend.set_password(service, _raw_entry(i, version), value)
        elapsed = time.perf_counter() - started
        return {"seconds": elapsed, "items_before": before, "items_after": _items(kind, backend)}

    from ledger.access.credentials import Credential
    from ledger.rotation.catalogue import load_catalogue
    from ledger.rotation.runs import Rotator
    from ledger.store.opening import open_ledger

    ledger = open_ledger(work / "home", backend=backend)
    cred = Credential(token=(work / "token").read_text())
    rotator = Rotator(ledger, load_catalogue(work / "catalogue.toml"))
    # Untimed first touch of the keychain, as on the raw side: the fingerprint key, which
    # the first rotation would otherwise read (and the file vault derive its key for).
    ledger.fingerprint_key()
    started = time.perf_counter()
    report = rotator.rotate_batch(cred, "all")
    elapsed = time.perf_counter() - started
    assert len(report.rotated) == n and report.complete, report
    events = ledger.recorder.max_notification_id()
    ledger.close()
    return {
        "seconds": elapsed,
        "items_before": before,
        "items_after": _items(kind, backend),
        "events": events,
    }


def _child(args: argparse.Namespace) -> int:
    state = Path(args.state)
    scratch = Path(tempfile.mkdtemp(prefix="bench-rotate-work-"))
    try:
        work = scratch / "work"
        if args.phase == "measure" and args.backend != "memory":
            shutil.copytree(state / "work", work)
        backend = _backend(args.backend, work)
        if args.phase == "provision" or args.backend == "memory":
            # An in-memory keychain cannot be saved: the measuring process provisions its own.
            _provision(args.side, args.backend, args.secrets, work, backend)
        if args.phase == "provision":
            if args.backend != "memory":
                shutil.copytree(work, state / "work")
            if args.backend == "secret-service":
                # gnome-keyring writes its keyring file on every change: this is all of it.
                shutil.copytree(Path(os.environ[INNER]) / KEYRINGS_DIR, state / "keyrings")
            return 0
        result = _measure(args.side, args.backend, args.secrets, work, backend, args.baseline)
        Path(args.result).write_text(json.dumps(result))
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- the orchestrating process ---------------------------------------------------------------


def _run_child(args: argparse.Namespace, extra: list[str], state: Path, password: str) -> None:
    argv = [
        os.path.abspath(__file__),
        "--secrets",
        str(args.secrets),
        "--backend",
        args.backend,
        "--baseline",
        args.baseline,
        "--state",
        str(state),
        *extra,
    ]
    if args.backend == "secret-service":
        seed = state / "keyrings"
        status = reexec_in_private_keyring(
            argv,
            "bench-rotate-all",
            seed=seed if seed.is_dir() else None,
            password=password,
        )
    else:
        status = subprocess.call([sys.executable, *argv])
    if status != 0:
        sys.exit(f"bench_rotate_all: child {extra} failed with status {status}")


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _orchestrate(args: argparse.Namespace) -> int:
    n = args.secrets
    root = Path(tempfile.mkdtemp(prefix="bench-rotate-state-"))
    # One keyring password per benchmark: the saved keyrings are unlocked with it.
    password = secrets.token_hex(16)
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    loads: list[str] = []
    started = time.monotonic()
    try:
        for side in SIDES:
            t = time.monotonic()
            _run_child(args, ["--phase", "provision", "--side", side], root / side, password)
            print(
                f"setup {side}: {time.monotonic() - t:.1f} s (not timed), load {_load()}",
                file=sys.stderr,
                flush=True,
            )
        for run in range(args.runs):
            order = SIDES if run % 2 == 0 else SIDES[::-1]
            for side in order:
                before = _load()
                out = root / f"result-{side}-{run}.json"
                _run_child(
                    args,
                    ["--phase", "measure", "--side", side, "--result", str(out)],
                    root / side,
                    password,
                )
                result = json.loads(out.read_text())
                result["load"] = f"{before} -> {_load()}"
                results[side].append(result)
                loads.append(f"run {run + 1} {side}: load {result['load']}")
                print(
                    f"run {run + 1} {side}: {result['seconds']:.2f} s, "
                    f"items {result['items_before']} -> {result['items_after']}, "
                    f"load {result['load']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    times = {side: [r["seconds"] for r in results[side]] for side in SIDES}
    print(
        f"backend: {args.backend}; {n} secrets; {args.runs} runs per side, each a fresh process "
        f"on a fresh copy of its side's state, alternating which side goes first; baseline "
        f"writes {'new entries' if args.baseline == 'new' else 'over its entries'}; "
        f"{results['rotate'][0].get('events')} events after a rotate run; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"wall time {time.monotonic() - started:.0f} s\n"
    )
    print(
        "| operation | secrets | keychain items at start -> end | median total (s) "
        "| median per secret (ms) | min / max (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for side in SIDES:
        median = statistics.median(times[side])
        first = results[side][0]
        print(
            f"| {LABELS[side]} | {n} | {first['items_before']} -> {first['items_after']} | "
            f"{median:.3f} | {median / n * 1000:.2f} | "
            f"{min(times[side]):.3f} / {max(times[side]):.3f} |"
        )
    ratio = statistics.median(times["rotate"]) / statistics.median(times["raw"])
    print(f"\nratio rotate --all / raw set: **{ratio:.2f}x**")
    print("\nper run (s), rotate: " + ", ".join(f"{t:.2f}" for t in times["rotate"]))
    print("per run (s), raw set: " + ", ".join(f"{t:.2f}" for t in times["raw"]))
    print("load average (1/5/15 min) before -> after each measured run:")
    for line in loads:
        print(f"- {line}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--backend", choices=["secret-service", "file", "memory"], default="secret-service"
    )
    parser.add_argument(
        "--baseline",
        choices=["new", "overwrite"],
        default="new",
        help="raw sets write N new entries (default) or overwrite the N provisioned ones",
    )
    # Internal: how the orchestrating process starts its children.
    parser.add_argument("--phase", choices=["provision", "measure"], help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase is None:
        return _orchestrate(args)
    if args.backend == "secret-service" and not os.environ.get(INNER):
        sys.exit("bench_rotate_all: --phase runs only inside a private keyring")
    return _child(args)


if __name__ == "__main__":
    sys.exit(main())
