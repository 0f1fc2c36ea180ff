"""Read models caught up from a real SQLite event log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import context
from ledger.address import SecretAddress
from ledger.config import open_ledger
from ledger.credentials import Credential
from ledger.errors import PermissionDenied
from ledger.vault.memory import MemoryKeyring
from projections.views import Views

ADDR = SecretAddress("production", "nexus", "mcp.bun.apiKey")


def _key(n: int) -> str:
    return "sk-" + f"{n:02d}" * 20


def test_views_fold_versions_audit_codes_and_rollback_age(tmp_path: Path) -> None:
    now = [datetime(2025, 1, 1, tzinfo=UTC)]
    with context.frozen_clock(lambda: now[0]):
        ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
        issued = ledger.initialize("alice")
        assert issued is not None
        alice = Credential(token=issued.token)
        ledger.write(alice, ADDR, _key(1))
        now[0] += timedelta(days=40)
        ledger.write(alice, ADDR, _key(2))
        now[0] += timedelta(days=40)
        ledger.rollback(alice, ADDR, 1)
        ledger.read(alice, ADDR)
        with pytest.raises(PermissionDenied):
            ledger.write(Credential(), ADDR, _key(3))
    views = Views(ledger)
    assert views.catch_up() > 0
    (row,) = views.secrets()
    assert (row.current_version, row.reason, row.operator) == (3, "rollback", "alice")
    assert row.last_rotation == "2025-01-01T00:00:00.000Z"  # the restored value's birth
    codes = [r.code for r in views.audit()]
    assert codes.count("HBSE-005") == 1 and codes.count("HBSE-001") == 1
    (denied,) = views.audit(code="HBSE-006")
    assert (denied.operator, denied.action, denied.outcome) == ("anonymous", "set", "denied")
    assert denied.target == str(ADDR)
    assert views.catch_up() == 0  # nothing applied twice

    incremental = (views.secrets(), views.audit(), views.operators())
    digest = views.digest()
    assert views.rebuild() == views.position()
    assert (views.secrets(), views.audit(), views.operators()) == incremental
    # What `secrets projections rebuild` compares: equal views, equal digests; and the
    # audit log's secondary indexes, dropped during the rebuild, are back.
    assert views.digest() == digest
    indexes = {r[0] for r in views.db.execute("SELECT name FROM sqlite_master")}
    assert {"audit_view_code", "audit_view_event_counts"} <= indexes
    views.db.execute("UPDATE audit_view SET detail = 'changed' WHERE position = 1")
    assert views.digest() != digest


def test_two_views_catching_up_at_once_apply_each_event_once(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    issued = ledger.initialize("alice")
    assert issued is not None
    for n in range(5):
        ledger.write(Credential(token=issued.token), ADDR, _key(n))
    first, second = Views(ledger), Views(ledger)
    assert first.catch_up() + second.catch_up() == ledger.recorder.max_notification_id()
    assert len(first.audit()) == ledger.recorder.max_notification_id()
