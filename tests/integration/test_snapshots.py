"""Snapshots (every 50 events) must round-trip the aggregates exactly: before this was fixed,
the 50th event of a secret failed to snapshot *after* its events were committed, so the write
raised and removed the value of a version that had been recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.operator import operator_id
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring

ADDR = SecretAddress("production", "svc", "many.versions")


def _replayed(app: Any, aggregate_id: Any) -> Any:
    aggregate = None
    for event in app.events.get(aggregate_id):
        aggregate = event.mutate(aggregate)
    return aggregate


def test_secrets_and_operators_survive_their_snapshots(tmp_path: Path, store_url: str) -> None:
    app = open_ledger(
        tmp_path / "home", create=True, backend=MemoryKeyring(), database_url=store_url
    )
    issued = app.initialize("alice", retention=5)
    assert issued is not None
    alice = Credential(token=issued.token)
    for n in range(130):
        app.write(alice, ADDR, f"value-{n:03d}", spec_check=lambda _v: None)
    for _ in range(60):
        app.login("alice", issued.token)

    snapshots = list(app.snapshots.get(ADDR.id)) if app.snapshots else []
    assert snapshots, "expected the secret to have been snapshotted"
    secret = app.history(alice, ADDR)
    assert secret.version > snapshots[-1].originator_version  # loaded via a snapshot
    assert sorted(secret.versions) == list(range(1, 131))
    assert all(isinstance(k, int) for k in secret.versions)
    assert secret.versions == _replayed(app, ADDR.id).versions
    assert app.read(alice, ADDR)[1] == "value-129"
    assert app.read(alice, ADDR, 126)[1] == "value-125"
    assert app.doctor(alice).healthy  # no recorded version lost its value

    operator = app.repository.get(operator_id("alice"))
    assert operator.sessions == _replayed(app, operator_id("alice")).sessions
    assert len(operator.sessions) == 60
    app.close()
