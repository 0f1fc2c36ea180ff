"""Benchmark: rebuild, replay --at T and verify on a large generated ledger, against baselines.

    PYTHONPATH=. python tests/benchmarks/bench_ledger_scale.py [--events 1000000] [--runs 3]
        [--secrets 5000] [--operators 40] [--seed 1] [--out /tmp/secrets-ledger-bench]
        [--only verify|replay|rebuild]

`--only verify` runs just the verify pair (and `secrets audit verify` as a whole process);
`--only rebuild` just the rebuild pair; `--only replay` just the replay rows.

The ledger comes from tests/benchmarks/generate_ledger.py (generated once, cached in `--out`).
Every measurement runs in a fresh child process; its peak memory is that child's maximum
resident set size (`ru_maxrss`, so it includes the interpreter and imports, about 50-60 MiB,
plus the peak of any process it forked: the rebuild's reader), its time is measured inside it
around the work only, except the rows marked "whole process" (the CLI run as a subprocess,
interpreter start-up included).

Pairs (project side, then its baseline in the same run, interleaved):

- `Views.rebuild()`, what `secrets projections rebuild` runs; against the library's
  `select_notifications` pages + `mapper.to_domain_event` of the same events.
- `secrets audit replay --at T` (T near the middle and near the end): `Views.position_at`,
  `Replayer.at_position` from the nearest saved fold state, `snapshot`; against `Replayer`
  with no saved states, the full re-fold of the log up to its end.
- `SecretsLedger.verify_history()`, what `secrets audit verify` runs; against a `sqlite3` read
  of the same rows and one `hashlib.sha256` per event over the same bytes.

Replay is measured cold (the first replay after `Views.rebuild()`, with only the fold states
the rebuild's catch-up saved every 10,000 positions) and warm (after other replays). `--only
replay` measures only the replay rows (re-fold, rebuild + cold, warm, whole process).
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MiB = 1024 * 1024


# -- children: one measurement each, result as JSON on stdout -----------------------------


def _open(home: Path) -> Any:
    from ledger.store.opening import open_ledger

    ledger = open_ledger(home)
    ledger.checkpoint_every = 0  # nothing here writes; never sign
    return ledger


def child_rebuild(home: Path, _arg: str) -> dict[str, Any]:
    from projections.views import Views

    ledger = _open(home)
    views = Views(ledger)
    started, cpu = time.perf_counter(), time.process_time()
    applied = views.rebuild()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    views.close()
    return {"seconds": seconds, "cpu": cpu, "events": applied}


def child_raw_read(home: Path, _arg: str) -> dict[str, Any]:
    """The library's own read + decode of every notification, nothing else."""
    ledger = _open(home)
    recorder, mapper = ledger.recorder, ledger.mapper
    started, cpu = time.perf_counter(), time.process_time()
    count, start = 0, 0
    while True:
        page = recorder.select_notifications(start=start, limit=2000, inclusive_of_start=False)
        if not page:
            break
        for n in page:
            mapper.to_domain_event(n)
        count += len(page)
        start = page[-1].id
    cpu = time.process_time() - cpu
    return {"seconds": time.perf_counter() - started, "cpu": cpu, "events": count}


def child_replay(home: Path, at: str) -> dict[str, Any]:
    """What `secrets audit replay --at T` runs after opening the ledger and authorising."""
    from projections.replay import Replayer, snapshot
    from projections.timefmt import iso, parse_iso
    from projections.views import Views

    ledger = _open(home)
    when = parse_iso(at)
    # Where the replay will start, found before the clock starts: asking `_nearest` inside
    # the timed part would load (parse and check) the saved state twice, which no command
    # does.
    probe = Views(ledger)
    probe.catch_up()
    nearest = probe.db.execute(
        "SELECT max(position) FROM replay_checkpoints WHERE position <= ?",
        (probe.position_at(iso(when)),),
    ).fetchone()
    start_from = nearest[0] or 0
    probe.close()
    started = time.perf_counter()
    views = Views(ledger)
    views.catch_up()
    position = views.position_at(iso(when))
    replayer = Replayer(ledger, views.db)
    doc = snapshot(replayer.at_position(position), when)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "events": position - start_from,
        "position": doc["position"],
        "secrets": len(doc["secrets"]),
    }


def child_refold(home: Path, _arg: str) -> dict[str, Any]:
    """The full re-fold: the same fold from the first event, no saved states."""
    from projections.replay import Replayer

    ledger = _open(home)
    last = ledger.recorder.max_notification_id() or 0
    started = time.perf_counter()
    state = Replayer(ledger, None).at_position(last)
    return {"seconds": time.perf_counter() - started, "events": state["position"]}


def child_verify(home: Path, _arg: str) -> dict[str, Any]:
    from projections.event_reader import undecodable_check

    ledger = _open(home)
    started = time.perf_counter()
    # As `secrets audit verify` runs it: every event's link, and that it decodes.
    report = ledger.verify_history(decodes=undecodable_check(ledger.mapper))
    seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"verify found a fault: {report.fault}")
    return {
        "seconds": seconds,
        "events": report.events_checked,
        "checkpoints": report.checkpoints_valid,
    }


def child_sha256(home: Path, _arg: str) -> dict[str, Any]:
    """hashlib SHA-256 over the same stored bytes (id, originator, version, topic, state),
    read from the same SQLite file in pages of the same size, one digest per event."""
    import hashlib

    con = sqlite3.connect(f"file:{home / 'ledger.sqlite'}?mode=ro", uri=True)
    started = time.perf_counter()
    count, last, total_bytes = 0, 0, 0
    previous = b"\x00" * 32
    while True:
        rows = con.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "WHERE rowid > ? ORDER BY rowid LIMIT 5000",
            (last,),
        ).fetchall()
        if not rows:
            break
        for rowid, oid, version, topic, state in rows:
            digest = hashlib.sha256(previous)
            digest.update(rowid.to_bytes(8, "big"))
            digest.update(oid.encode())
            digest.update(version.to_bytes(8, "big"))
            digest.update(topic.encode())
            digest.update(state)
            previous = digest.digest()
            total_bytes += len(state)
        count += len(rows)
        last = rows[-1][0]
    con.close()
    return {"seconds": time.perf_counter() - started, "events": count, "bytes": total_bytes}


CHILDREN = {
    "rebuild": child_rebuild,
    "raw-read": child_raw_read,
    "replay": child_replay,
    "refold": child_refold,
    "verify": child_verify,
    "sha256": child_sha256,
}


# -- the parent ---------------------------------------------------------------------------


def measure(
    mode: str, home: Path, arg: str, env: dict[str, str], script: str = __file__
) -> dict[str, Any]:
    """One child measurement: its own timing and peak RSS (`ru_maxrss` of RUSAGE_SELF).
    `script` runs the child: another benchmark that adds children of its own."""
    cmd = [sys.executable, str(Path(script).resolve()), "--child", mode, str(home), arg]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench_ledger_scale: child {mode} failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started
    result["maxrss"] = result["peak"]
    return result


def measure_cli(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """A `secrets` command as a whole process: wall time and peak RSS (via wait4)."""
    cmd = [sys.executable, "-m", "commands", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench_ledger_scale: secrets {' '.join(args)} failed: {err.decode()[-2000:]}")
    return {"wall": wall, "maxrss": usage.ru_maxrss * 1024}


def _timestamp_at(home: Path, position: int) -> str:
    con = sqlite3.connect(f"file:{home / 'views.sqlite'}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT timestamp FROM audit_view WHERE position <= ? AND timestamp != '' "
            "ORDER BY position DESC LIMIT 1",
            (position,),
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def _med(results: list[dict[str, Any]], key: str = "seconds") -> float:
    return statistics.median(float(r[key]) for r in results)


def _rss(results: list[dict[str, Any]]) -> str:
    return f"{max(int(r['maxrss']) for r in results) / MiB:.0f}"


def _print_rebuild_pair(runs: dict[str, list[dict[str, Any]]], events: int, n: int) -> None:
    """Each interleaved pair on its own line (the same-run ratio), then the medians."""
    print(
        "| run | read + decode s (CPU s) | `Views.rebuild()` s (CPU s) | ratio (rate / baseline "
        "rate) | CPU ratio |"
    )
    print("|---:|---:|---:|---:|---:|")
    for i, (base, mine) in enumerate(zip(runs["raw-read"], runs["rebuild"], strict=True), 1):
        print(
            f"| {i} | {base['seconds']:.1f} ({base['cpu']:.1f}) | {mine['seconds']:.1f} "
            f"({mine['cpu']:.1f}) | {base['seconds'] / mine['seconds']:.2f}x | "
            f"{base['cpu'] / mine['cpu']:.2f}x |"
        )
    base_s, mine_s = _med(runs["raw-read"]), _med(runs["rebuild"])
    print(
        f"\nmedians of {n}: read + decode {base_s:.1f} s ({events / base_s:,.0f} events/s, peak "
        f"RSS {_rss(runs['raw-read'])} MiB); `Views.rebuild()` {mine_s:.1f} s "
        f"({events / mine_s:,.0f} events/s, peak RSS {_rss(runs['rebuild'])} MiB); ratio "
        f"{base_s / mine_s:.2f}x (target >= 0.5x)"
    )


def main() -> int:
    from generate_ledger import add_ledger_arguments, generate  # type: ignore[import-not-found]

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_ledger_arguments(parser, 1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["verify", "replay", "rebuild"],
        help="verify: the verify pair and its whole-process row; replay: the replay rows; "
        "rebuild: the rebuild pair (raw-read, rebuild interleaved)",
    )
    args = parser.parse_args()
    only_replay = args.only == "replay"

    directory, meta = generate(args.out, args.events, args.secrets, args.operators, args.seed)
    # The copy in `directory`, not the path recorded when it was generated: a ledger copied
    # elsewhere (to keep the cached one clean) still names its original home.
    home = directory / "home"
    events = int(meta["events"])
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SECRETS_LEDGER_HOME": str(home),
        "SECRETS_LEDGER_TOKEN": str(meta["token"]),
        "SECRETS_LEDGER_CHECKPOINT_EVERY": "0",
    }
    env.pop("SECRETS_LEDGER_DATABASE_URL", None)
    load_before = os.getloadavg()
    size = (home / "ledger.sqlite").stat().st_size
    print(
        f"ledger: {directory.name}: {events} events, {meta['secrets']} secrets, "
        f"{meta['operators']} operators, {size / MiB:.0f} MiB; generated in {meta['seconds']} s "
        f"({meta['events_per_second']} events/s; cached after the first run)\n"
    )

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in CHILDREN}
    if args.only == "verify":
        return _only_verify(args.runs, home, events, env, load_before)
    # Interleaved per run so both sides of each pair see the same load and page cache.
    only_rebuild = args.only == "rebuild"
    modes = ("raw-read", "rebuild") if only_rebuild else ("raw-read", "rebuild", "sha256", "verify")
    for _ in range(0 if only_replay else args.runs):
        for mode in modes:
            runs[mode].append(measure(mode, home, "", env))
    if only_rebuild:
        _print_rebuild_pair(runs, events, args.runs)
        load_after = os.getloadavg()
        print(
            f"\nload average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
            f"after: {', '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs"
        )
        return 0
    if not (home / "views.sqlite").exists():
        measure("rebuild", home, "", env)  # T is read from the audit view
    t_mid = _timestamp_at(home, events // 2)
    t_end = _timestamp_at(home, events - 100)

    replay: dict[str, list[dict[str, Any]]] = {"cold-end": [], "warm-mid": [], "warm-end": []}
    cli: dict[str, list[dict[str, Any]]] = {"replay-mid": [], "replay-end": [], "verify": []}
    rebuilt: list[dict[str, Any]] = []
    for _ in range(args.runs):
        runs["refold"].append(measure("refold", home, "", env))
        # Cold: the first replay after a rebuild (which drops the saved states and saves them
        # again as its catch-up folds the log).
        rebuilt.append(measure("rebuild", home, "", env))
        replay["cold-end"].append(measure("replay", home, t_end, env))
        for key, at in (("warm-mid", t_mid), ("warm-end", t_end)):
            replay[key].append(measure("replay", home, at, env))
        for key, at in (("replay-mid", t_mid), ("replay-end", t_end)):
            cli[key].append(measure_cli(["audit", "replay", "--at", at, "--output", "json"], env))
        if not only_replay:
            cli["verify"].append(measure_cli(["audit", "verify"], env))
    # The CLI's rebuild also compares the rebuilt views with the old ones: once, for memory.
    cli_rebuild = None if only_replay else measure_cli(["projections", "rebuild"], env)
    load_after = os.getloadavg()
    if only_replay:
        runs["rebuild"] = rebuilt

    if not only_replay:
        _print_throughput(args.runs, events, runs)
    _print_replay(args.runs, events, runs, replay, cli, t_mid, t_end)
    if cli_rebuild is not None:
        print(
            f"\n`secrets audit verify` whole process: median {_med(cli['verify'], 'wall'):.1f} s, "
            f"peak RSS {_rss(cli['verify'])} MiB"
        )
        print(
            "`secrets projections rebuild` whole process (catch up, rebuild, compare; one run): "
            f"{cli_rebuild['wall']:.1f} s, peak RSS {_rss([cli_rebuild])} MiB"
        )
    print(
        f"\nload average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs; "
        f"Python {sys.version.split()[0]}"
    )
    return 0


def _print_throughput(n: int, events: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    print("### Throughput (medians of", n, "runs, interleaved)\n")
    print(
        "| operation | events | median s | events/s | peak RSS MiB | baseline | baseline "
        "events/s | ratio (rate / baseline rate) | target |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---|")
    for mode, base, label, base_label in (
        ("rebuild", "raw-read", "`Views.rebuild()`", "read + decode"),
        ("verify", "sha256", "`verify_history()`", "sqlite3 read + SHA-256"),
    ):
        rate = events / _med(runs[mode])
        base_rate = events / _med(runs[base])
        print(
            f"| {label} | {runs[mode][0]['events']} | {_med(runs[mode]):.1f} | {rate:,.0f} | "
            f"{_rss(runs[mode])} | {base_label} | {base_rate:,.0f} | {rate / base_rate:.2f}x | "
            ">= 0.5x |"
        )
    print(
        f"\nbaseline peak RSS MiB: read + decode {_rss(runs['raw-read'])}, "
        f"sqlite3 + SHA-256 {_rss(runs['sha256'])}; state bytes hashed "
        f"{runs['sha256'][0]['bytes'] / MiB:.0f} MiB"
    )


def _print_replay(
    n: int,
    events: int,
    runs: dict[str, list[dict[str, Any]]],
    replay: dict[str, list[dict[str, Any]]],
    cli: dict[str, list[dict[str, Any]]],
    t_mid: str,
    t_end: str,
) -> None:
    refold = _med(runs["refold"])
    print(f"\n### Replay --at T (medians of {n} runs)\n")
    print(
        f"Full re-fold of all {events} events (baseline): **{refold:.2f} s** "
        f"(peak RSS {_rss(runs['refold'])} MiB). T mid = {t_mid}, T end = {t_end}.\n"
    )
    print(
        "| replay | events folded | median s (in process) | speed-up vs re-fold | "
        "peak RSS MiB | whole process `secrets audit replay` median s | peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, label, cli_key in (
        ("cold-end", "cold (first after a rebuild), T near the end", None),
        ("warm-mid", "warm, T near the middle", "replay-mid"),
        ("warm-end", "warm, T near the end", "replay-end"),
    ):
        seconds = _med(replay[key])
        whole = f"{_med(cli[cli_key], 'wall'):.2f} | {_rss(cli[cli_key])}" if cli_key else "- | -"
        print(
            f"| {label} | {replay[key][0]['events']} | {seconds:.3f} | {refold / seconds:.1f}x | "
            f"{_rss(replay[key])} | {whole} |"
        )
    print(
        f"\n`Views.rebuild()` before each cold replay (saves the fold states): median "
        f"{_med(runs['rebuild']):.1f} s, peak RSS {_rss(runs['rebuild'])} MiB"
    )


def _only_verify(
    repeat: int, home: Path, events: int, env: dict[str, str], load_before: tuple[float, ...]
) -> int:
    runs: dict[str, list[dict[str, Any]]] = {"sha256": [], "verify": [], "cli": []}
    for _ in range(repeat):  # interleaved, so both sides see the same load and page cache
        runs["sha256"].append(measure("sha256", home, "", env))
        runs["verify"].append(measure("verify", home, "", env))
        runs["cli"].append(measure_cli(["audit", "verify"], env))
    load_after = os.getloadavg()
    rate = events / _med(runs["verify"])
    base_rate = events / _med(runs["sha256"])
    print(f"### Verify (medians of {repeat} runs, interleaved)\n")
    print(
        "| operation | events | median s | events/s | peak RSS MiB | baseline | baseline "
        "median s | baseline events/s | ratio | target |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    print(
        f"| `verify_history()` | {runs['verify'][0]['events']} | {_med(runs['verify']):.1f} | "
        f"{rate:,.0f} | {_rss(runs['verify'])} | sqlite3 read + SHA-256 | "
        f"{_med(runs['sha256']):.1f} | {base_rate:,.0f} | {rate / base_rate:.2f}x | >= 0.5x |"
    )
    print(
        "\nper run (verify s / baseline s): "
        + ", ".join(
            f"{v['seconds']:.1f} / {b['seconds']:.1f}"
            for v, b in zip(runs["verify"], runs["sha256"], strict=True)
        )
    )
    print(
        f"`secrets audit verify` whole process: median {_med(runs['cli'], 'wall'):.1f} s, "
        f"peak RSS {_rss(runs['cli'])} MiB; baseline peak RSS {_rss(runs['sha256'])} MiB"
    )
    print(
        f"\nload average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs; "
        f"Python {sys.version.split()[0]}"
    )
    return 0


def child_main(mode: str, home: str, arg: str) -> int:
    import resource

    result = CHILDREN[mode](Path(home), arg)
    # A rebuild forks a reader that runs beside it (projections/rebuild_feed.py): its peak is
    # added, as if both peaked at once (an upper bound of what the two hold together).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak"] = peak * 1024
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
