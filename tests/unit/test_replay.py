"""Replay as of any position equals the state the application itself had at that moment."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import context
from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.errors import LedgerError
from ledger.secret import Secret
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from projections import replay, replay_states
from projections.replay import Replayer, snapshot
from projections.replay_states import SavedStates
from projections.timefmt import iso

ADDRESSES = [
    SecretAddress("production", "nexus", "a.apiKey"),
    SecretAddress("production", "nexus", "b.apiKey"),
    SecretAddress("staging", "github", "token"),
]

op = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2), st.integers(0, 10**6)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("restore"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("rollback"), st.integers(0, 2), st.integers(1, 4)),
    st.tuples(st.just("destroy"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("grant"), st.integers(0, 2), st.sampled_from(["engineer", "analyst"])),
    st.tuples(st.just("login"), st.integers(0, 2), st.just(0)),
)


def _no_spec(value: str) -> None:
    return None


def expected_state(ledger: Any, operators: list[str], when: datetime) -> dict[str, Any]:
    """What the aggregates say, in the shape of `replay.snapshot`."""
    secrets = []
    for address in ADDRESSES:
        secret = ledger.uow.load_secret(address)
        if secret is None or not secret.versions:
            continue
        assert isinstance(secret, Secret)
        current = secret.current
        assert current is not None
        secrets.append(
            {
                "environment": address.environment,
                "service": address.service,
                "name": address.name,
                "current_version": secret.current_version,
                "fingerprint": current.short_fingerprint,
                "last_rotation": iso(secret.last_rotation) if secret.last_rotation else None,
                "status": "destroyed"
                if secret.destroyed
                else "deleted"
                if secret.deleted
                else "active",
                "retained_versions": secret.retained_versions,
            }
        )
    people = []
    sessions = []
    for name in operators:
        found = ledger.uow.load_operator(name)
        people.append({"name": name, "role": found.role})
        sessions += [
            (name, s.session_id[:8]) for s in found.sessions.values() if s.expires_at > when
        ]
    return {
        "secrets": sorted(secrets, key=lambda s: (s["environment"], s["service"], s["name"])),
        "operators": sorted(people, key=lambda o: o["name"]),
        "sessions": sorted(sessions),
    }


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "secrets": [{k: v for k, v in s.items() if k != "last_change"} for s in doc["secrets"]],
        "operators": doc["operators"],
        "sessions": sorted((s["operator"], s["session"]) for s in doc["sessions"]),
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(op, min_size=1, max_size=18), pick=st.data())
def test_replay_at_any_position_equals_the_recorded_state(ops: list[Any], pick: Any) -> None:
    home = Path(tempfile.mkdtemp())
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    try:
        with context.frozen_clock(lambda: clock[0]):
            ledger = open_ledger(home, create=True, backend=MemoryKeyring())
            ledger.checkpoint_every = 0
            issued = ledger.initialize("alice")
            cred = Credential(token=issued.token)
            operators = ["alice"]
            tokens = {"alice": issued.token}
            recorded: list[tuple[int, datetime, dict[str, Any]]] = []
            for kind, index, arg in ops:
                clock[0] += timedelta(hours=3)
                address = ADDRESSES[index]
                try:
                    if kind == "set":
                        ledger.write(cred, address, f"value-{arg}-xxxxxxxx", spec_check=_no_spec)
                    elif kind == "delete":
                        ledger.delete(cred, address)
                    elif kind == "restore":
                        ledger.restore(cred, address)
                    elif kind == "rollback":
                        ledger.rollback(cred, address, arg)
                    elif kind == "destroy":
                        ledger.destroy(cred, address)
                    elif kind == "grant":
                        name = f"op{index}"
                        tokens[name] = ledger.grant(cred, name, arg).token
                        if name not in operators:
                            operators.append(name)
                    elif kind == "login":
                        name = operators[index % len(operators)]
                        ledger.login(name, tokens[name], timedelta(hours=4))
                except LedgerError:
                    pass  # refused operations still record what they record
                position = ledger.recorder.max_notification_id() or 0
                recorded.append((position, clock[0], expected_state(ledger, operators, clock[0])))

        for position, when, expected in recorded:
            state = Replayer(ledger).at_position(position)
            assert comparable(snapshot(state, when)) == expected
        position, when, expected = pick.draw(st.sampled_from(recorded))
        by_time = Replayer(ledger).at_time(when)
        assert by_time["position"] == position
        assert comparable(snapshot(by_time, when)) == expected
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_replay_resumes_from_a_saved_state(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(replay, "SAVE_EVERY", 4)
    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    ledger.checkpoint_every = 0
    cred = Credential(token=ledger.initialize("alice").token)
    for n in range(8):
        ledger.write(cred, ADDRESSES[n % 3], f"value-{n}-xxxxxxxx", spec_check=_no_spec)
    cache = sqlite3.connect(tmp_path / "cache.sqlite", isolation_level=None)
    head = ledger.recorder.max_notification_id()
    full = Replayer(ledger).at_position(head)
    assert Replayer(ledger, cache).at_position(head) == full
    saved = [r[0] for r in cache.execute("SELECT position FROM replay_checkpoints")]
    assert saved and all(p % 4 == 0 for p in saved)

    class Counting(Replayer):
        folded = 0

        def rows(self, start: int, stop: int) -> Any:
            for item in super().rows(start, stop):
                Counting.folded += 1
                yield item

    assert Counting(ledger, cache).at_position(head) == full
    assert Counting.folded == head - max(saved)
    middle = Replayer(ledger).at_position(head - 3)
    assert Replayer(ledger, cache).at_position(head - 3) == middle


def _busy_ledger(home: Path, writes: int) -> tuple[Any, Credential]:
    """A ledger with secrets set, deleted, restored and rolled back, and sessions opened."""
    ledger = open_ledger(home, create=True, backend=MemoryKeyring())
    ledger.checkpoint_every = 0
    issued = ledger.initialize("alice")
    cred = Credential(token=issued.token)
    for n in range(writes):
        address = ADDRESSES[n % 3]
        ledger.write(cred, address, f"value-{n}-xxxxxxxx", spec_check=_no_spec)
        if n % 5 == 4:
            ledger.delete(cred, address)
        if n % 5 == 0 and n:
            ledger.restore(cred, ADDRESSES[(n - 1) % 3])
        if n % 7 == 6:
            ledger.rollback(cred, address, 1)
        if n % 4 == 3:
            ledger.login("alice", issued.token, timedelta(hours=4))
    return ledger, cred


# The key of states saved outside a ledger (`SavedStates` alone).
KEY = bytes(range(32))


def _saved(db: sqlite3.Connection, keyed: Any) -> dict[int, str]:
    """position -> the text of the state saved there, as it loads (its MAC checked under
    `keyed`: a key, or a ledger's `replay_state_key()`; a state that would not load maps to
    "")."""
    key = keyed if isinstance(keyed, bytes) else keyed.replay_state_key()
    assert key is not None
    states = SavedStates(db, key)
    found: dict[int, str] = {}
    for (position,) in db.execute("SELECT position FROM replay_checkpoints ORDER BY position"):
        state = states.read(position)
        found[position] = "" if state is None else replay_states.encode(state)
    return found


class _Counting(Replayer):
    folded = 0

    def rows(self, start: int, stop: int) -> Any:
        for item in super().rows(start, stop):
            _Counting.folded += 1
            yield item


def test_rebuilding_the_views_saves_replay_states_again(tmp_path: Path, monkeypatch: Any) -> None:
    """A rebuild drops the saved states and its catch-up saves them again from the first event,
    every REBUILD_SAVE_FACTOR * SAVE_EVERY positions: the first replay after it (a cold replay)
    starts from one, folds at most that far, saves the states it passes and equals a full
    re-fold."""
    from projections.views import REBUILD_SAVE_FACTOR, Views

    monkeypatch.setattr(replay, "SAVE_EVERY", 4)
    ledger, _ = _busy_ledger(tmp_path, 12)
    views = Views(ledger)
    views.catch_up()
    head = ledger.recorder.max_notification_id()
    expected = Replayer(ledger, views.db).at_position(head)
    views.db.execute("UPDATE replay_checkpoints SET head = '{}'")  # wrong: rebuild drops it
    seen: list[int] = []
    before = views.snapshot()
    assert views.rebuild(progress=seen.append) == head and seen[-1] == head
    assert views.snapshot() == before
    saved = _saved(views.db, ledger)
    spacing = REBUILD_SAVE_FACTOR * 4
    assert sorted(saved) == list(range(spacing, head + 1, spacing))
    for position, text in saved.items():
        # Byte for byte the text of the re-folded state (the rebuild re-encodes only the
        # secrets that changed since its last save).
        assert text == replay_states.encode(Replayer(ledger).at_position(position)), position
    for position in range(head + 1):
        _Counting.folded = 0
        assert _Counting(ledger, views.db).at_position(position) == Replayer(ledger).at_position(
            position
        )
        assert _Counting.folded <= position % spacing, position
    # The replays above saved the states in between as they passed them.
    assert sorted(_saved(views.db, ledger)) == list(range(4, head + 1, 4))
    assert Replayer(ledger, views.db).at_position(head) == expected


def test_catch_up_saves_replay_states_as_the_log_grows(tmp_path: Path, monkeypatch: Any) -> None:
    """Each command's catch-up folds the new events from the saved state before them (pages of
    2 events here, so a fold spans pages and commands); every state equals a full re-fold."""
    from projections import views_catchup
    from projections.views import Views

    monkeypatch.setattr(replay, "SAVE_EVERY", 5)
    monkeypatch.setattr(views_catchup, "PAGE", 2)
    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    ledger.checkpoint_every = 0
    cred = Credential(token=ledger.initialize("alice").token)
    for n in range(15):
        ledger.write(cred, ADDRESSES[n % 3], f"value-{n}-xxxxxxxx", spec_check=_no_spec)
        if n % 4 == 1:
            ledger.delete(cred, ADDRESSES[n % 3])
        views = Views(ledger)  # a new command each time
        views.catch_up()
        views.close()
    views = Views(ledger)
    head = ledger.recorder.max_notification_id() or 0
    saved = _saved(views.db, ledger)
    assert sorted(saved) == list(range(5, head + 1, 5))
    for position, text in saved.items():
        assert text == replay_states.encode(Replayer(ledger).at_position(position)), position


def test_catch_up_leaves_states_to_replays_when_none_is_near(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Views caught up before states were saved: a catch-up does not fold the log from the
    start (a stall in some unrelated command); the next replay saves states as it passes."""
    from projections.views import Views

    monkeypatch.setattr(replay, "SAVE_EVERY", 2)
    monkeypatch.setattr(replay, "RESUME_WITHIN", 4)
    ledger, cred = _busy_ledger(tmp_path, 8)
    views = Views(ledger)
    views.catch_up()
    views.db.execute("DELETE FROM replay_checkpoints")
    ledger.write(cred, ADDRESSES[0], "value-late-xxxxxxxx", spec_check=_no_spec)
    ledger.write(cred, ADDRESSES[1], "value-late-xxxxxxxx", spec_check=_no_spec)
    _Counting.folded = 0
    monkeypatch.setattr(replay, "Replayer", _Counting)
    assert views.catch_up() > 0
    assert _Counting.folded == 0 and _saved(views.db, ledger) == {}
    head = ledger.recorder.max_notification_id() or 0
    assert _Counting(ledger, views.db).at_position(head) == Replayer(ledger).at_position(head)
    assert len(_saved(views.db, ledger)) == head // 2


def _saved_every_3(tmp_path: Path, monkeypatch: Any) -> tuple[Any, Any, replay_states.State, int]:
    """A busy ledger with views caught up and states saved every 3 positions: (ledger, views,
    the state re-folded at the head, the last position a state was saved at)."""
    from projections.views import Views

    monkeypatch.setattr(replay, "SAVE_EVERY", 3)
    ledger, _ = _busy_ledger(tmp_path, 9)
    views = Views(ledger)
    views.catch_up()
    full = Replayer(ledger).at_position(ledger.recorder.max_notification_id() or 0)
    return ledger, views, full, max(_saved(views.db, ledger))


def test_a_stale_or_damaged_saved_state_is_never_used(tmp_path: Path, monkeypatch: Any) -> None:
    """A saved state is bound to the chain link at its position and to a digest of its head
    and parts: one with a part edited or missing, a damaged head, or from another history is
    deleted and the replay starts earlier."""
    from projections.views import Views

    ledger, views, full, last = _saved_every_3(tmp_path, monkeypatch)
    db, head = views.db, full["position"]

    def parts_of(position: int) -> list[int]:
        row = db.execute("SELECT parts FROM replay_checkpoints WHERE position = ?", (position,))
        listed: list[int] = json.loads(row.fetchone()[0])
        return listed

    # One secret's part edited (its fingerprint), in place: every state sharing it is refused.
    part = parts_of(last)[0]
    text = db.execute("SELECT text FROM replay_parts WHERE id = ?", (part,)).fetchone()[0]
    oid, _, body = text.partition(":")
    edited = json.loads(body)
    edited["fingerprint"] = "0" * 64
    db.execute(
        "UPDATE replay_parts SET text = ? WHERE id = ?", (oid + ":" + json.dumps(edited), part)
    )
    assert _saved(db, ledger)[last] == ""  # no longer loads
    _Counting.folded = 0
    assert _Counting(ledger, db).at_position(head) == full
    assert _Counting.folded > head - last  # started before the edited state
    assert _saved(db, ledger)[last] == replay_states.encode(Replayer(ledger).at_position(last))
    # A part missing.
    db.execute("DELETE FROM replay_parts WHERE id = ?", (parts_of(last)[-1],))
    assert _saved(db, ledger)[last] == ""
    assert Replayer(ledger, db).at_position(head) == full
    assert _saved(db, ledger)[last] == replay_states.encode(Replayer(ledger).at_position(last))
    # A damaged head, and a list of parts that is not one.
    db.execute("UPDATE replay_checkpoints SET head = 'not json' WHERE position = ?", (last,))
    assert Replayer(ledger, db).at_position(head) == full
    db.execute("UPDATE replay_checkpoints SET parts = '{\"a\":1}' WHERE position = ?", (last,))
    assert Replayer(ledger, db).at_position(head) == full
    # Another history at those positions (a replaced log): its chain links differ.
    db.execute("UPDATE replay_checkpoints SET link = ?", (b"\x01" * 32,))
    _Counting.folded = 0
    assert _Counting(ledger, db).at_position(head) == full
    assert _Counting.folded == head  # every state was stale: a full re-fold
    saved = _saved(db, ledger)
    assert saved and all(
        text == replay_states.encode(Replayer(ledger).at_position(p)) for p, text in saved.items()
    )
    # States of older layouts (whole texts; before that, not bound to the log) are dropped on
    # open: a cache, saved again by the next replay.
    views.close()
    for columns in ("state TEXT NOT NULL", "state TEXT NOT NULL, link BLOB, digest TEXT"):
        old = sqlite3.connect(tmp_path / "views.sqlite")
        old.execute("DROP TABLE replay_checkpoints")
        old.execute(f"CREATE TABLE replay_checkpoints (position INTEGER PRIMARY KEY, {columns})")
        old.execute("INSERT INTO replay_checkpoints (position, state) VALUES (3, '{}')")
        old.commit()
        old.close()
        reopened = Views(ledger)
        assert _saved(reopened.db, ledger) == {}
        assert Replayer(ledger, reopened.db).at_position(head) == full
        reopened.close()


def test_saved_states_share_the_parts_of_secrets_that_did_not_change(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Each save stores only the secrets whose text changed since the state it folded on from
    (the point of the layout: a large ledger's rebuild wrote 4 MiB a state before)."""
    from projections.views import Views

    monkeypatch.setattr(replay, "SAVE_EVERY", 5)
    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    ledger.checkpoint_every = 0
    cred = Credential(token=ledger.initialize("alice").token)
    for n in range(3):
        ledger.write(cred, ADDRESSES[n], f"value-{n}-xxxxxxxx", spec_check=_no_spec)
    for _ in range(12):  # reads: no secret changes
        ledger.read(cred, ADDRESSES[0])
    ledger.write(cred, ADDRESSES[1], "value-new-xxxxxxxx", spec_check=_no_spec)
    views = Views(ledger)
    views.rebuild()
    db = views.db
    head = ledger.recorder.max_notification_id() or 0
    saved = _saved(db, ledger)
    assert len(saved) >= 3
    for position, text in saved.items():
        assert text == replay_states.encode(Replayer(ledger).at_position(position)), position
    # Three secrets, one of them written again: at most one part each before the first save
    # that holds all three, and the second value's part once; the other states share them.
    parts = db.execute("SELECT count(*) FROM replay_parts").fetchone()[0]
    listed = [json.loads(r[0]) for r in db.execute("SELECT parts FROM replay_checkpoints")]
    assert sum(len(p) for p in listed) > parts
    assert parts <= 3 + 2 + 1
    assert Replayer(ledger, db).at_position(head) == Replayer(ledger).at_position(head)


def test_a_state_folded_on_is_saved_with_only_its_marked_secrets_encoded_again(
    tmp_path: Path,
) -> None:
    """`SavedStates` encodes again only the secrets marked changed in the state it tracks (so
    the fold marks every `Secret.*` event); a state it does not track is encoded whole."""
    db = sqlite3.connect(tmp_path / "states.sqlite", isolation_level=None)
    states = SavedStates(db, KEY)
    state = replay.empty()
    state["secrets"]["a"] = {"name": "x", "retained": [1], "born": {"1": "t"}}
    state["secrets"]["b"] = {"name": 'y\u00e9"', "retained": [], "born": {}}
    state.update(position=3, timestamp="2025-01-01T00:00:00.000Z", retention=10)
    states.save(state, b"L" * 32)
    assert _saved(db, KEY)[3] == replay_states.encode(state)
    state["position"] = 6
    state["secrets"]["a"]["retained"].append(2)
    states.changed("a")
    state["operators"]["o"] = {"name": "alice", "role": None, "sessions": {"s": {}}}
    state["secrets"]["b"]["name"] = "z"  # not marked: its old part stays
    states.save(state, None)
    assert _saved(db, KEY)[6] != replay_states.encode(state)
    assert json.loads(_saved(db, KEY)[6])["secrets"]["b"]["name"] == 'y\u00e9"'
    assert json.loads(_saved(db, KEY)[6])["secrets"]["a"]["retained"] == [1, 2]
    copy = json.loads(replay_states.encode(state))  # not the tracked state: encoded whole
    copy["position"] = 9
    states.changed("gone")  # marked but not in the state: ignored
    states.save(copy, None)
    assert _saved(db, KEY)[9] == replay_states.encode(copy)
    loaded = SavedStates(db, KEY).nearest(9, lambda _at: None)
    assert loaded == copy and loaded is not None
    assert replay_states.encode(loaded) == replay_states.encode(copy)
    assert SavedStates(db, None).nearest(9, lambda _at: None) is None  # no key: not used
    assert SavedStates(db, bytes(32)).read(9) is None  # another key: not believed
    assert SavedStates(db, KEY).nearest(8, lambda _at: b"M" * 32) is None  # other links: deleted
    assert _saved(db, KEY) == {9: replay_states.encode(copy)}


def test_replay_gives_each_secret_its_compliance_as_it_was_then(tmp_path: Path) -> None:
    """`with_compliance` (what `audit replay` shows) is the rotation policy of `rotate-status`
    evaluated then, over the log cut at the replayed position (not by timestamp)."""
    from ledger.rotation.catalogue import load_catalogue
    from projections.compliance import compliance

    catalogue = load_catalogue(None)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = [t0]
    a, b, c = ADDRESSES
    with context.frozen_clock(lambda: clock[0]):
        ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
        ledger.checkpoint_every = 0
        cred = Credential(token=ledger.initialize("alice").token)
        ledger.write(cred, a, "value-a1-xxxxxxxx", spec_check=_no_spec)
        ledger.write(cred, b, "value-b1-xxxxxxxx", spec_check=_no_spec)
        clock[0] = t0 + timedelta(days=100)
        ledger.delete(cred, b)
        cut = ledger.recorder.max_notification_id() or 0
        # Same timestamp as the cut, later position: not part of the state at `cut`.
        ledger.write(cred, a, "value-a2-xxxxxxxx", spec_check=_no_spec)
        clock[0] = t0 + timedelta(days=101)
        ledger.write(cred, c, "value-c1-xxxxxxxx", spec_check=_no_spec)

    def statuses(doc: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
        return {s["name"]: (s["compliance"], s["rotation_due"]) for s in doc["secrets"]}

    def replay_at(position: int, when: datetime | None = None) -> dict[str, Any]:
        state = Replayer(ledger).at_position(position)
        return replay.with_compliance(snapshot(state, when), ledger, catalogue)

    due_a1 = iso(t0 + timedelta(days=90))
    at_cut = replay_at(cut)
    assert at_cut["as_of"] == iso(t0 + timedelta(days=100))
    assert statuses(at_cut) == {"a.apiKey": ("overdue", due_a1), "b.apiKey": ("n/a", None)}
    head = ledger.recorder.max_notification_id() or 0
    assert statuses(replay_at(head)) == {
        "a.apiKey": ("ok", iso(t0 + timedelta(days=190))),
        "b.apiKey": ("n/a", None),
        "token": ("ok", iso(t0 + timedelta(days=191))),
    }
    # By time, it is what `rotate-status --as-of` says at that instant (same policy code).
    for days in (10, 80, 95):
        when = t0 + timedelta(days=days)
        doc = replay_at(Replayer(ledger).position_at(when), when)
        expected = {
            a.address.name: (a.status, iso(a.due) if a.due else None)
            for a in compliance(ledger, catalogue, when).secrets
        }
        assert statuses(doc) == expected
        then = {10: "ok", 80: "due-soon", 95: "overdue"}[days]
        assert set(expected.values()) == {(then, due_a1)}


def test_diff_says_what_kind_of_change_and_lists_denials(tmp_path: Path) -> None:
    from ledger.errors import PermissionDenied

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = [t0]
    a, b, c = ADDRESSES
    with context.frozen_clock(lambda: clock[0]):
        ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
        ledger.checkpoint_every = 0
        cred = Credential(token=ledger.initialize("alice").token)
        ledger.write(cred, a, "value-a1-xxxxxxxx", spec_check=_no_spec)
        ledger.write(cred, b, "value-b1-xxxxxxxx", spec_check=_no_spec)
        ledger.grant(cred, "carol", "analyst")
        start = ledger.recorder.max_notification_id() or 0
        clock[0] += timedelta(days=1)
        ledger.write(cred, a, "value-a2-xxxxxxxx", spec_check=_no_spec, reason="rotation")
        ledger.rollback(cred, a, 1)
        ledger.write(cred, c, "value-c1-xxxxxxxx", spec_check=_no_spec)
        ledger.delete(cred, b)
        ledger.restore(cred, b)  # ends as it began: still listed, with no field deltas
        ledger.grant(cred, "bob", "engineer")
        ledger.revoke(cred, "carol")
        with pytest.raises(PermissionDenied):
            ledger.write(Credential(), a, "value-xx-xxxxxxxx", spec_check=_no_spec)
        stop = ledger.recorder.max_notification_id() or 0

    replayer = Replayer(ledger)
    state = replayer.at_position(start)
    before = snapshot(state)
    doc = replay.diff(before, snapshot(state), replay.window(replayer, state, stop))
    assert state == Replayer(ledger).at_position(stop)  # the window folds to the same state
    found = {s["secret"]: s for s in doc["secrets"]}
    assert {k: (v["change"], v["changes"]) for k, v in found.items()} == {
        str(a): ("changed", ["rotated", "rolled-back"]),
        str(b): ("changed", ["deleted", "restored"]),
        str(c): ("added", ["added"]),
    }
    assert found[str(b)]["fields"] == {}
    rolled = found[str(a)]["events"][1]
    assert (rolled["version"], rolled["rolled_back_from"], rolled["by"]) == (3, 1, "alice")
    assert [(r["operator"], r["change"], r["role"]) for r in doc["role_changes"]] == [
        ("bob", "granted", "engineer"),
        ("carol", "revoked", "analyst"),
    ]
    assert [(d["operator"], d["action"], d["secret"]) for d in doc["denials"]] == [
        ("anonymous", "set", str(a))
    ]
    assert all(start < e["position"] <= stop for s in doc["secrets"] for e in s["events"])
    # Without the window the shape is as before, plus empty lists.
    plain = replay.diff(before, snapshot(state))
    assert plain["denials"] == [] and plain["role_changes"] == []


def test_position_at_is_the_last_position_stamped_at_or_before_t(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """`Views.position_at` (where `audit replay --at T` cuts) with writers' clocks out of
    order: it equals a scan of every event, from blocks kept since the views were built and
    for views whose blocks start late (built before the blocks existed)."""
    from projections import views_schema
    from projections.views import Views

    monkeypatch.setattr(views_schema, "TIME_BLOCK", 3)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    # Hours of each write: clocks jump back and forth (skewed hosts).
    hours = [0, 5, 2, 9, 9, 1, 14, 7, 20, 3, 21, 25, 24, 30, 6, 31]
    clock = [t0]
    with context.frozen_clock(lambda: clock[0]):
        ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
        ledger.checkpoint_every = 0
        cred = Credential(token=ledger.initialize("alice").token)
        views = Views(ledger)
        for n, hour in enumerate(hours):
            clock[0] = t0 + timedelta(hours=hour)
            ledger.write(cred, ADDRESSES[n % 3], f"value-{n}-xxxxxxxx", spec_check=_no_spec)
            if n == 9:
                views.catch_up()
                # As if these views predated the blocks: they start at the next catch-up.
                views.db.execute("DELETE FROM audit_time_blocks")
                views.db.execute("DELETE FROM audit_time_coverage")
    views.catch_up()
    stamped = [(r.position, r.timestamp) for r in views.audit() if r.timestamp]

    def scan(when: str) -> int:
        return max((p for p, ts in stamped if ts <= when), default=0)

    def instants() -> list[str]:
        found = {ts for _, ts in stamped} | {iso(t0 - timedelta(hours=1))}
        for hour in range(-1, 33):
            found.add(iso(t0 + timedelta(hours=hour, minutes=30)))
        return sorted(found)

    since = views.db.execute("SELECT since FROM audit_time_coverage").fetchone()[0]
    assert since > 1
    for when in instants():
        assert views.position_at(when) == scan(when), when
    views.rebuild()
    assert views.db.execute("SELECT since FROM audit_time_coverage").fetchone()[0] == 1
    for when in instants():
        assert views.position_at(when) == scan(when), when


def test_replay_skips_decoding_only_what_cannot_change_the_state(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Reads and denials are not decoded unless they end the cut or sit at a save position;
    with damaged events anywhere (kinds the fold reads, and ones it skips, also last in the
    cut), every position gives what applying each decodable event in turn gives."""
    from ledger.errors import PermissionDenied

    monkeypatch.setattr(replay, "SAVE_EVERY", 5)
    ledger = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    ledger.checkpoint_every = 0
    cred = Credential(token=ledger.initialize("alice").token)
    analyst = Credential(token=ledger.grant(cred, "bob", "analyst").token)
    for n in range(6):
        address = ADDRESSES[n % 3]
        ledger.write(cred, address, f"value-{n}-xxxxxxxx", spec_check=_no_spec)
        for _ in range(n % 3 + 1):
            ledger.read(cred, address)
        with pytest.raises(PermissionDenied):
            ledger.write(analyst, address, f"refused-{n}-xxxxxxxx", spec_check=_no_spec)
    head = ledger.recorder.max_notification_id() or 0
    con = sqlite3.connect(tmp_path / "ledger.sqlite")
    topics = dict(con.execute("SELECT rowid, topic FROM stored_events"))
    skipped = [p for p, t in topics.items() if not replay._is_folded(t)]
    folded = [p for p, t in topics.items() if replay._is_folded(t)]
    assert len(skipped) > len(folded) / 2
    damaged = {skipped[-1], skipped[-2], skipped[3], folded[4], head - 1, 10}
    for position in damaged:
        con.execute("UPDATE stored_events SET state = x'00' WHERE rowid = ?", (position,))
    con.commit()
    con.close()

    def one_by_one(position: int) -> replay_states.State:
        state = replay.empty()
        for at, event in Replayer(ledger).events(0, position):
            replay.apply(state, at, event)
        return state

    cache = sqlite3.connect(tmp_path / "cache.sqlite", isolation_level=None)
    assert Replayer(ledger)._reader.shortcut  # the fold's fast decoding is what is compared
    for position in range(head + 1):
        assert Replayer(ledger).at_position(position) == one_by_one(position), position
        assert Replayer(ledger, cache).at_position(position) == one_by_one(position), position
    assert 10 not in _saved(cache, ledger) and 5 in _saved(cache, ledger.replay_state_key())


def test_hostile_saved_state_rows_never_break_a_replay(tmp_path: Path, monkeypatch: Any) -> None:
    """views.sqlite is a cache anyone with the file can damage: lists of parts that are deeply
    nested, repeated or reordered, bytes that are not UTF-8, tables of another shape. Each
    state so damaged is refused, the replay equals a re-fold, and the parts no state lists
    are deleted with the states."""
    from projections.views import Views

    ledger, views, full, last = _saved_every_3(tmp_path, monkeypatch)
    db, head = views.db, full["position"]
    listed: list[int] = json.loads(
        db.execute("SELECT parts FROM replay_checkpoints WHERE position = ?", (last,)).fetchone()[0]
    )
    assert len(listed) >= 2
    set_parts = "UPDATE replay_checkpoints SET parts = ? WHERE position = ?"
    damage = [
        (set_parts, ("[" * 200_000, last)),
        (set_parts, (json.dumps(listed * 3), last)),
        (set_parts, (json.dumps([listed[1], listed[0], *listed[2:]]), last)),
        ("UPDATE replay_checkpoints SET head = CAST(X'80FF' AS TEXT) WHERE position = ?", (last,)),
        ("UPDATE replay_parts SET text = CAST(X'80FF' AS TEXT) WHERE id = ?", (listed[0],)),
    ]
    for statement, parameters in damage:
        db.execute(statement, parameters)
        assert _saved(db, ledger).get(last) == ""  # refused, not raised
        assert Replayer(ledger, db).at_position(head) == full
        assert _saved(db, ledger)[last] == replay_states.encode(Replayer(ledger).at_position(last))
        listed = json.loads(
            db.execute(
                "SELECT parts FROM replay_checkpoints WHERE position = ?", (last,)
            ).fetchone()[0]
        )

    def unlisted() -> int:
        return int(
            db.execute(
                "SELECT count(*) FROM replay_parts WHERE id NOT IN (SELECT j.value FROM "
                "replay_checkpoints AS c, json_each(c.parts) AS j)"
            ).fetchone()[0]
        )

    assert unlisted() == 0  # each refused state's own parts went with it
    # Another history at every position: all states deleted, their parts too, new ones saved.
    db.execute("UPDATE replay_checkpoints SET link = ?", (b"\x01" * 32,))
    assert Replayer(ledger, db).at_position(head) == full
    assert unlisted() == 0 and len(_saved(db, ledger)) == head // 3
    # A parts table of another shape is dropped on open, and the states with it refused.
    views.close()
    other = sqlite3.connect(tmp_path / "views.sqlite")
    other.execute("DROP TABLE replay_parts")
    other.execute("CREATE TABLE replay_parts (id INTEGER PRIMARY KEY, body BLOB)")
    other.commit()
    other.close()
    reopened = Views(ledger)
    assert Replayer(ledger, reopened.db).at_position(head) == full
    assert all(text for text in _saved(reopened.db, ledger).values())
    reopened.close()


def test_a_window_marks_what_it_folds_for_the_next_save(tmp_path: Path, monkeypatch: Any) -> None:
    """`window` folds on from a state that saved states may track: a save after it must hold
    the secrets it changed (a missed mark would save their old text under a valid digest)."""
    from projections.replay import window
    from projections.views import Views

    monkeypatch.setattr(replay, "SAVE_EVERY", 1_000)
    ledger, _ = _busy_ledger(tmp_path, 9)
    views = Views(ledger)
    views.catch_up()
    head = ledger.recorder.max_notification_id() or 0
    replayer = Replayer(ledger, views.db)
    state = replayer.at_position(head // 2)
    replayer.save_state(state)  # its secrets' parts are now known as of head // 2
    window(replayer, state, head)
    replayer.save_state(state)
    assert state["position"] == head
    assert _saved(views.db, ledger)[head] == replay_states.encode(
        Replayer(ledger).at_position(head)
    )
