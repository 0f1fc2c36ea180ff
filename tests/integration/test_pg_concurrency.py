"""Many processes writing to one PostgreSQL ledger at once: no lost update, consecutive
versions per secret, one unbroken hash chain in commit order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import FINGERPRINT_KEY_ENTRY
from ledger.secret import Secret
from ledger.store.chain import verify_store
from ledger.store.opening import open_ledger
from ledger.store.postgres import ChainedPostgresApplicationRecorder
from ledger.vault.memory import MemoryKeyring
from tests.clikit import REPO
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

WRITES = 100
SHARED_WRITERS = 4
OWN_WRITERS = 4


@pytest.mark.slow
@pytest.mark.serial  # eight writer processes: alone on the cores, or it measures the neighbours
def test_eight_processes_lose_no_write_and_keep_one_chain(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    keychain = MemoryKeyring()
    app = open_ledger(tmp_path / "setup", create=True, backend=keychain, database_url=pg_url)
    issued = app.initialize("alice")
    assert issued is not None
    key = app.vault.get(FINGERPRINT_KEY_ENTRY)
    assert key is not None
    start = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SECRETS_LEDGER_DATABASE_URL", None)
    jobs = [("shared", f"s{n}") for n in range(SHARED_WRITERS)]
    jobs += [(f"own{n}", f"o{n}") for n in range(OWN_WRITERS)]
    procs = []
    for name, tag in jobs:
        cfg = {
            "url": pg_url,
            "home": str(tmp_path / tag),
            "token": issued.token,
            "key": key,
            "name": name,
            "tag": tag,
            "count": WRITES,
            "start": str(start),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.pg_worker", json.dumps(cfg)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    time.sleep(1.0)  # let every writer import and connect, then start them together
    began = time.monotonic()
    start.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1])["versions"])
    elapsed = time.monotonic() - began

    shared = sorted(v for r in results[:SHARED_WRITERS] for v in r)
    assert shared == list(range(1, SHARED_WRITERS * WRITES + 1))  # none lost, none twice
    for r in results[SHARED_WRITERS:]:
        assert r == list(range(1, WRITES + 1))

    alice = Credential(token=issued.token)
    secret = app.history(alice, SecretAddress("production", "svc", "shared"))
    assert sorted(secret.versions) == list(range(1, SHARED_WRITERS * WRITES + 1))
    for n in range(OWN_WRITERS):
        own = app.history(alice, SecretAddress("production", "svc", f"own{n}"))
        assert sorted(own.versions) == list(range(1, WRITES + 1))

    # Log order is commit order: each secret's versions appear in ascending order.
    added = f"{Secret.__module__}:{Secret.__qualname__}.VersionAdded"
    seen: dict[object, int] = {}
    total = 0
    position = 0
    while True:
        page = app.recorder.select_notifications(
            start=position, limit=1000, topics=[added], inclusive_of_start=False
        )
        if not page:
            break
        for n in page:
            assert n.originator_version > seen.get(n.originator_id, 0)
            seen[n.originator_id] = n.originator_version
            total += 1
        position = page[-1].id
    assert total == (SHARED_WRITERS + OWN_WRITERS) * WRITES == 800

    recorder = app.recorder
    assert isinstance(recorder, ChainedPostgresApplicationRecorder)
    report = verify_store(recorder)
    assert report.ok, report.fault
    head_position, head_link = recorder.chain_head()
    assert head_link == report.head and head_position == recorder.max_notification_id()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM secretsledger_events").fetchone()
    assert row is not None and report.events_checked == row[0]
    app.close()
    print(
        f"\n800 versions by 8 processes in {elapsed:.1f}s ({800 / elapsed:.0f} writes/s); "
        f"{report.events_checked} events chained; {head_position - report.events_checked} "
        "ids skipped by rolled-back inserts (lost races)"
    )
