"""Check-and-set (issue 22): `set`, `rotate` and `rollback --if-version N` write nothing and exit
7 unless the secret's current version is N, through the real CLI on each real store and vault."""

from __future__ import annotations

import subprocess

from tests.clikit import Ledger

KEY = "sk-" + "Q7x" * 16
SVC = ("--service", "nexus", "--name", "mcp.bun.apiKey")
DB = ("--service", "database", "--name", "database.password")


def _versions(ledger: Ledger, *address: str) -> list[int]:
    return sorted(v["version"] for v in ledger.json("versions", *address)["versions"])


def test_a_stale_if_version_writes_nothing_and_exits_7(ledger: Ledger) -> None:
    fresh = ledger.run("set", *SVC, "--if-version", "1", "--value-stdin", input=KEY)
    assert fresh.returncode == 7 and "at v0, not v1" in fresh.stderr, fresh.stderr
    assert ledger.run("set", *SVC, "--if-version", "0", "--value-stdin", input=KEY).returncode == 0
    ledger.set("nexus", "mcp.bun.apiKey", KEY[:-1] + "b")
    events = len(ledger.events())

    stale = ledger.run("set", *SVC, "--if-version", "1", "--value-stdin", input=KEY[:-1] + "c")
    assert stale.returncode == 7 and "at v2, not v1" in stale.stderr, stale.stderr
    rolled = ledger.run("rollback", *SVC, "--version", "1", "--if-version", "1")
    assert rolled.returncode == 7 and "at v2, not v1" in rolled.stderr, rolled.stderr
    rotated = ledger.run("rotate", *SVC, "--if-version", "1", "--value-stdin", input=KEY[:-1] + "d")
    assert rotated.returncode == 7 and "at v2, not v1" in rotated.stderr, rotated.stderr
    assert len(ledger.events()) == events
    assert _versions(ledger, *SVC) == [1, 2]
    assert ledger.run("doctor").returncode == 0  # no value was left in the keychain

    ok = ledger.run("set", *SVC, "--if-version", "2", "--value-stdin", input=KEY[:-1] + "c")
    assert ok.returncode == 0 and " v3 " in ok.stdout, ok.stderr
    assert ledger.run("rollback", *SVC, "--version", "1", "--if-version", "3").returncode == 0
    ledger.set("database", "database.password", "p" * 40)
    assert ledger.run("rotate", *DB, "--if-version", "2").returncode == 7
    assert ledger.run("rotate", *DB, "--if-version", "1").returncode == 0
    assert _versions(ledger, *DB) == [1, 2]
    batch = ledger.run("rotate", "--if-version", "1")
    assert batch.returncode == 2 and "--if-version needs --service and --name" in batch.stderr


def test_two_processes_from_one_starting_version_never_both_write(ledger: Ledger) -> None:
    """Each round, two processes start together from the same version: exactly one writes,
    the other exits 7, and the history grows by exactly one version."""
    ledger.set("nexus", "mcp.bun.apiKey", KEY)
    rounds = 4
    for current in range(1, rounds + 1):
        procs = [
            subprocess.Popen(
                [
                    ledger.python,
                    "-m",
                    "commands",
                    "set",
                    *SVC,
                    "--value-stdin",
                    *["--if-version", str(current)],
                ],
                env=ledger.env,
                cwd=ledger.cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [
            p.communicate(input=f"{KEY[:-3]}{current}{tag}x", timeout=120)
            for tag, p in zip("ab", procs, strict=True)
        ]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 7], outs
        assert _versions(ledger, *SVC) == list(range(1, current + 2))
    assert ledger.run("doctor").returncode == 0
