"""Read models caught up from a real SQLite event log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from ledger import context
from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import SecretsLedger
from ledger.errors import PermissionDenied
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from projections import views as views_module
from projections import views_catchup, views_fold
from projections.event_reader import EventReader
from projections.timefmt import iso
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


def _generated_history(tmp_path: Path) -> SecretsLedger:
    """A small generated history (tests/benchmarks/generate_ledger.py: reads, sets, rotations,
    prunes, rollbacks, deletes and restores, denials, validation failures, sessions, role
    changes, checkpoints), plus a destroy, a restore, an emergency rotation and an alarm."""
    from ledger.records import Incident, IntegrityAlarm
    from ledger.secret import Secret
    from tests.benchmarks.generate_ledger import generate

    _, meta = generate(tmp_path / "generated", 6000, 30, 6, seed=3)
    ledger = open_ledger(Path(meta["home"]), backend=MemoryKeyring())
    ledger.checkpoint_every = 0
    with context.acting_as("admin"):
        secret = ledger.repository.get(Secret.create_id("prod", "svc00", "apiKey.k00000"))
        secret.destroy()
        other = ledger.repository.get(Secret.create_id("staging", "svc00", "password.k00001"))
        other.delete()
        other.restore()
        incident = Incident("drill")
        incident.complete([str(other.address)], [], [])
        ledger.save(secret, other, incident, IntegrityAlarm(12, "hash-mismatch", "altered row"))
    return ledger


def _outcome(read: Callable[[], tuple[Any, str]]) -> tuple[Any, ...]:
    try:
        event, ts = read()
    except Exception as exc:
        return ("raised", type(exc))
    return (type(event), vars(event), ts)


def test_the_event_reader_gives_the_mappers_event_and_iso_time_for_every_stored_event(
    tmp_path: Path,
) -> None:
    ledger = _generated_history(tmp_path)
    mapper, reader = ledger.mapper, EventReader(ledger.mapper)
    assert reader.shortcut
    kinds: set[str] = set()
    shortcuts = 0
    notifications = ledger.recorder.select_notifications(start=1, limit=100_000)
    # The same events as the catch-up reads them on SQLite: stored rows, ids as stored.
    rows = ledger.recorder.select_rows(0, 100_000)
    assert [r[0] for r in rows] == [n.id for n in notifications]
    convert = ledger.recorder.convert_originator_id
    views = Views(ledger)
    audit_only: set[str] = set()
    for n, row in zip(notifications, rows, strict=True):
        expected = mapper.to_domain_event(n)
        kinds.add(type(expected).__qualname__)
        outcome = (type(expected), vars(expected), iso(expected.timestamp))  # type: ignore[attr-defined]
        assert _outcome(lambda n=n: reader.read(n)) == outcome  # type: ignore[misc]
        assert _outcome(lambda row=row: reader.read_row(row, convert)) == outcome  # type: ignore[misc]
        shortcuts += _taken(reader, n)
        # Reads, denials and validation failures: the same audit row, without the event.
        quick = reader.audit_row(row)
        if quick is not None:
            audit_only.add(quick[3])
            ts = iso(expected.timestamp)  # type: ignore[attr-defined]
            assert quick == views._apply(views.db.cursor(), n.id, expected, ts)
    assert audit_only == {
        "ReadReceipt.SecretRead",
        "Denial.AccessDenied",
        "Rejection.ValidationFailed",
    }
    assert {
        "ReadReceipt.SecretRead",
        "Secret.VersionAdded",
        "Secret.VersionPruned",
        "Secret.Deleted",
        "Secret.Restored",
        "Secret.Destroyed",
        "Denial.AccessDenied",
        "Rejection.ValidationFailed",
        "Operator.SessionOpened",
        "Operator.SessionClosed",
        "Operator.RoleGranted",
        "Checkpoint.CheckpointSigned",
        "Incident.EmergencyRotationCompleted",
        "IntegrityAlarm.IntegrityCheckFailed",
    } <= kinds
    # Sessions opened carry a second datetime (their expiry) and go through the mapper.
    assert shortcuts > 0.9 * len(notifications)


def _taken(reader: EventReader, n: Any) -> bool:
    """Whether the reader's shortcut takes this notification (else the mapper does)."""
    return reader._shortcut(n.state, n.originator_id, n.originator_version, n.topic) is not None


READ_STATE = (
    '{"timestamp":{"_type_":"datetime_iso","_data_":"%s"},'
    '"originator_topic":"ledger.records:ReadReceipt","operator":"op010",'
    '"correlation_id":"60313a1287f7a76e15095323bcae10ee","environment":"dev",'
    '"service":"svc48","name":"apiKey.k03122","version":1%s}'
)


SHORTCUT_STAMPS = (
    "2025-01-01T01:36:12.965123+00:00",
    "2025-01-01T01:36:12+00:00",
    "2025-01-01T01:36:12.999999+00:00",
)


@pytest.mark.parametrize(
    ("stamp", "extra"),
    [
        ("2025-01-01T01:36:12.965123+00:00", ""),  # the shortcut
        ("2025-01-01T01:36:12+00:00", ""),  # no microseconds: the shortcut, .000
        ("2025-01-01T01:36:12.999999+00:00", ""),  # truncated, never rounded
        ("2025-01-01T01:36:12.965123+01:00", ""),  # another offset: the mapper
        ("2025-01-01 01:36:12.965123+00:00", ""),  # a space for the T
        ("2025-02-30T01:36:12.965123+00:00", ""),  # no such day: unreadable
        ("2025-01-01T24:00:00.000000+00:00", ""),  # hour 24
        ("2025-01-01T01:36:60.000000+00:00", ""),  # second 60
        ("\u0662025-01-01T01:36:12.965123+00:00", ""),  # an escaped non-ASCII digit
        ("٢025-01-01T01:36:12.965123+00:00", ""),  # a non-ASCII digit
        ("2025-W01-3T01:36:12.965123+00:00", ""),  # a week date
        ("2025-01-01T01:36:12.965123+00:00", ',"x":{"_type_":"nope","_data_":1}'),
        ("2025-01-01T01:36:12.965123+00:00", ',"x":{"\u005ftype_":"nope","_data_":1}'),
        ("2025-01-01T01:36:12.965123+00:00", ',"x":{"_type_":"uuid_hex","_data_":"%s"}'),
        ("2025-01-01T01:36:12.965123+00:00", ',"x":"_type_"'),
        ("2025-01-01T01:36:12.965123+00:00", ',"class_version":1'),
        ("2025-01-01T01:36:12.965123+00:00", ',"class_version":2'),
        ("2025-01-01T01:36:12.965123+00:00", ',"timestamp":"2025-01-01"'),
    ],
)
def test_the_event_reader_leaves_every_unusual_state_to_the_mapper(
    tmp_path: Path, stamp: str, extra: str
) -> None:
    """Same event, same time text, or the same exception (damaged bytes: the unreadable row),
    whichever way an event is stored."""
    from uuid import uuid4

    from eventsourcing.persistence import Notification

    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    mapper, reader = ledger.mapper, EventReader(ledger.mapper)
    views = Views(ledger)
    if "%s" in extra:
        extra = extra % uuid4().hex
    text = READ_STATE % (stamp, extra)
    states = [
        text.encode(),
        b" " + text.encode(),
        text.encode() + b"\n",
        b"[" + text.encode() + b"]",
    ]
    states += [text.encode()[:-1], text.encode().replace(b"op010", b"op\xff10")]
    for state in states:
        n = Notification(
            id=1,
            originator_id=uuid4(),
            originator_version=1,
            topic="ledger.records:ReadReceipt.SecretRead",
            state=state,
        )

        def reference(n: Notification = n) -> tuple[Any, str]:
            event: Any = mapper.to_domain_event(n)
            return event, iso(event.timestamp)

        assert _outcome(lambda n=n: reader.read(n)) == _outcome(reference), state  # type: ignore[misc]
        row = (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
        convert = ledger.recorder.convert_originator_id
        assert _outcome(  # type: ignore[misc]
            lambda row=row, convert=convert: reader.read_row(row, convert)
        ) == _outcome(reference)
        taken = _taken(reader, n)
        assert taken == (state is states[0] and not extra and stamp in SHORTCUT_STAMPS)
        # The audit row alone is built exactly where the shortcut would take the event.
        quick = reader.audit_row(row)
        assert (quick is not None) == taken
        if quick is not None:
            event, ts = reference()
            assert quick == views._apply(views.db.cursor(), n.id, event, ts)
        # The same row with an id not as the recorder writes it: left to reading the event.
        for stored_id in (str(n.originator_id).upper(), "{" + str(n.originator_id) + "}"):
            assert reader.audit_row((n.id, stored_id, *row[2:])) is None


def test_rebuild_gives_the_views_of_catching_up_event_by_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the shortcut or through the mapper alone (the decoding before it existed), a
    rebuild gives exactly the views caught up one event per transaction; and again, in the
    same process, after other views were built."""
    ledger = _generated_history(tmp_path)
    monkeypatch.setattr(views_catchup, "PAGE", 1)
    stepwise = Views(ledger, path=tmp_path / "stepwise.sqlite")
    assert stepwise.catch_up() == ledger.recorder.max_notification_id()
    expected = stepwise.digest()
    monkeypatch.undo()

    via_mapper = Views(ledger, path=tmp_path / "mapper.sqlite")
    via_mapper._reader.shortcut = False
    via_mapper.rebuild()
    assert via_mapper.digest() == expected

    # A recorder without `select_rows` (PostgreSQL): the library's notifications, same views.
    monkeypatch.setattr(type(ledger.recorder), "select_rows", None)
    via_notifications = Views(ledger, path=tmp_path / "notifications.sqlite")
    via_notifications.rebuild()
    assert via_notifications.digest() == expected
    monkeypatch.undo()

    rebuilt = Views(ledger, path=tmp_path / "rebuilt.sqlite")
    rebuilt.catch_up()
    assert rebuilt.digest() == expected
    rebuilt.rebuild()
    assert rebuilt.digest() == expected
    # The rebuild's durability and checkpoint settings are the connection's own again.
    assert rebuilt.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert rebuilt.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    # Nothing remembered from before the rebuild can stand in for a row the log lacks.
    rebuilt.db.execute("DELETE FROM operators_view")
    assert rebuilt.rebuild() == ledger.recorder.max_notification_id()
    assert rebuilt.digest() == expected


def test_the_audit_row_alone_needs_every_attribute_it_shows(tmp_path: Path) -> None:
    """A read whose state lacks an attribute its audit row shows is left to reading the event
    (where a class default, or the `getattr` default, decides), never shown from a guess."""
    from uuid import uuid4

    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    reader = EventReader(ledger.mapper)
    text = READ_STATE % ("2025-01-01T01:36:12.965123+00:00", "")
    row = (1, uuid4().hex, 1, "ledger.records:ReadReceipt.SecretRead", text.encode())
    assert reader.audit_row(row) is not None
    for key in ('"operator":"op010",', '"correlation_id":"60313a1287f7a76e15095323bcae10ee",'):
        assert key in text
        assert reader.audit_row((*row[:4], text.replace(key, "").encode())) is None
    reader.shortcut = False  # a cipher, a compressor, another transcoder: never
    assert reader.audit_row(row) is None


def test_views_of_another_format_are_caught_up_again_from_the_log(tmp_path: Path) -> None:
    """Views left by another version of the code (another VIEWS_FORMAT, or none) hold rows
    of that version: they are emptied on open and caught up again, never mixed with rows of
    this one; views of this format are kept as they are."""
    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    issued = ledger.initialize("alice")
    assert issued is not None
    alice = Credential(token=issued.token)
    ledger.write(alice, ADDR, _key(1))
    ledger.read(alice, ADDR)
    views = Views(ledger)
    views.catch_up()
    expected = views.digest()
    assert views.db.execute("PRAGMA user_version").fetchone()[0] == views_module.VIEWS_FORMAT
    # What an older version would have left: its own detail text, no format number.
    views.db.execute("UPDATE audit_view SET detail = 'older text' WHERE position = 1")
    views.db.execute("PRAGMA user_version = 0")
    views.close()
    reopened = Views(ledger)
    assert reopened.position() == 0  # emptied, to be caught up from the first event
    reopened.catch_up()
    assert reopened.digest() == expected
    reopened.db.execute("UPDATE audit_view SET detail = 'kept' WHERE position = 1")
    reopened.close()
    same_format = Views(ledger)
    assert same_format.position() > 0
    assert same_format.db.execute(
        "SELECT detail FROM audit_view WHERE position = 1"
    ).fetchone() == ("kept",)


def test_every_stored_event_class_has_a_view_handler() -> None:
    """The views choose what an event does by its class: a new event class must be given a
    handler (or `_audit_only`), never fall through unnoticed."""
    from ledger.codec import topics

    stored = {topics.stored_class(t) for t in topics.EVENT_OWNERS}
    assert set(views_fold.handlers()) == stored


def test_a_read_names_its_run_and_reads_stored_before_the_field_still_decode(
    tmp_path: Path,
) -> None:
    """`SecretRead.purpose` (the consumer run, `secrets run`) is optional: a stored read
    without it decodes (None) and shows `v1`; with it the audit row names the run, the same
    from the shortcut and from the mapper; a purpose of another type is not a read's state."""
    from uuid import uuid4

    from eventsourcing.persistence import Notification

    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    reader = EventReader(ledger.mapper)
    stamp = "2025-01-01T01:36:12.965123+00:00"
    topic = "ledger.records:ReadReceipt.SecretRead"
    for extra, detail in [
        ("", "v1"),
        (',"purpose":null', "v1"),
        (',"purpose":"run 0123456789ab"', "v1 (run 0123456789ab)"),
    ]:
        text = (READ_STATE % (stamp, extra)).encode()
        row = (1, uuid4().hex, 1, topic, text)
        shown = reader.audit_row(row)
        assert shown is not None and shown[-1] == detail
        event = ledger.mapper.to_domain_event(
            Notification(
                id=1, originator_id=UUID(row[1]), originator_version=1, topic=topic, state=text
            )
        )
        # An event stored before the field has no attribute: readers take None for it.
        assert getattr(event, "purpose", None) == (
            None if "run" not in extra else "run 0123456789ab"
        )
    wrong = (READ_STATE % (stamp, ',"purpose":7')).encode()
    assert reader.audit_row((1, uuid4().hex, 1, topic, wrong)) is None
    with pytest.raises(Exception, match=r"(?i)shape|field|decod"):
        ledger.mapper.to_domain_event(
            Notification(
                id=1, originator_id=uuid4(), originator_version=1, topic=topic, state=wrong
            )
        )
