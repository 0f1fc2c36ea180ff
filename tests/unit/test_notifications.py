"""Reading the log by event kind, a page at a time, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import Notification

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.errors import IntegrityFailure
from ledger.operator import Operator
from ledger.secret import Secret
from ledger.store.notifications import notifications, originator_of, topic_of
from ledger.store.opening import open_ledger
from tests.fakes import FlakyKeyring


def test_every_event_of_a_kind_is_read_across_pages_in_order(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "h", create=True, backend=FlakyKeyring())
    issued = ledger.initialize("alice")
    assert issued is not None
    alice = Credential(token=issued.token)
    names = [f"key{i}" for i in range(7)]
    for name in names:
        ledger.write(alice, SecretAddress("production", "nexus", name), "v-" + name * 3)

    # A page of 2 forces four pages; other kinds of events between them are skipped.
    found = list(notifications(ledger.recorder, Secret, "Registered", page_size=2))
    assert [ledger.repository.get(originator_of(n)).address.name for n in found] == names
    positions = [n.id for n in found]
    assert positions == sorted(positions)
    operators = list(notifications(ledger.recorder, Operator, "Registered", page_size=2))
    assert len(operators) == 1
    # `stop` cuts the log at a position, inclusive.
    assert (
        list(notifications(ledger.recorder, Secret, "Registered", stop=positions[2])) == (found[:3])
    )
    ledger.close()


def test_an_event_name_that_is_not_recorded_fails_at_once() -> None:
    assert topic_of(Secret, "Registered") == "ledger.secret:Secret.Registered"
    with pytest.raises(ValueError, match="not a recorded event"):
        topic_of(Secret, "Registred")


def test_a_stored_row_naming_no_valid_id_is_an_integrity_failure() -> None:
    row = Notification(
        id=42,
        originator_id="not-a-uuid",
        originator_version=1,
        topic=topic_of(Operator, "Registered"),
        state=b"{}",
    )
    with pytest.raises(IntegrityFailure, match="position 42 names no valid aggregate id"):
        originator_of(row)
