"""The ledger's full state as of any past position: a pure fold over the event log.

The fold state is plain JSON-able data, so that it can be saved now and then (every
`SAVE_EVERY` positions, in views.sqlite) and a later replay can start from the nearest saved
state instead of from the first event. States are saved by a replay at the positions it passes
and by the views' catch-up and rebuild (projections/views.py; a rebuild every
`REBUILD_SAVE_FACTOR` x `SAVE_EVERY` positions), so the first replay after a rebuild or on a
fresh host starts near its cut too. Saved states are a cache:
`secrets projections rebuild` drops them, and a replay never trusts one beyond the position it
was taken at. Each is bound to the ledger's chain link at its position and to a digest of its
parts (projections/replay_states.py, where states share the parts of secrets that did not
change): a state whose log position now holds another history (a replaced or rewritten log),
or whose text was damaged or edited, is deleted and the replay starts from an earlier one.

"As of T" means every event up to the last position whose timestamp is at or before T. Events
carry the writer's clock, so on hosts with skewed clocks timestamps need not rise with positions;
positions are the ledger's own order and are what a replay is cut at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import MapperDeserialisationError

from ledger.codec import topics
from ledger.operator import Operator
from ledger.records import Denial
from ledger.secret import Secret
from ledger.settings import LedgerSettings
from ledger.store.notifications import pages
from projections import secret_summary
from projections.event_reader import EventReader, Row, read_rows, same_id
from projections.replay_states import SavedStates, State
from projections.timefmt import iso, parse_iso

if TYPE_CHECKING:
    from ledger.application import SecretsLedger
    from ledger.rotation.catalogue import Catalogue

SAVE_EVERY = 10_000
PAGE = 2000

# The event classes `fold` reads more of than their position and time. Every other event
# (reads, denials, rejections: nine in ten on a busy ledger) only moves the state's position
# and time, so a replay does not decode it unless it is the last one of its cut.
_folded_topics: dict[str, bool] = {}


def _is_folded(topic: str) -> bool:
    """Whether events of this stored topic change more than the position and time (unknown
    topics: yes, so that decoding them fails or folds them as before). Decided by the class
    the allow-list maps the topic to (ledger/codec/topics.py), never by the topic's text."""
    found = _folded_topics.get(topic)
    if found is None:
        try:
            cls = topics.stored_class(topic)
        except Exception:
            found = True
        else:
            found = cls in FOLDED
        _folded_topics[topic] = found
    return found


# A catch-up resumes its fold from a saved state at most this far behind where it starts;
# farther (views caught up before states were saved there), it leaves states to replays.
RESUME_WITHIN = 2 * SAVE_EVERY


def empty() -> State:
    return {"position": 0, "timestamp": None, "retention": None, "secrets": {}, "operators": {}}


def apply(state: State, position: int, event: Any) -> None:
    """Fold one domain event into `state` (in place)."""
    fold(state, position, event, event.originator_id.hex)


def fold(state: State, position: int, event: Any, oid: str, ts: str | None = None) -> bool:
    """`apply` with the event's originator id (hex) and ISO time given by a caller that has
    them already (the views' catch-up); whether the event was a secret's (its saved part
    must then be encoded again)."""
    if ts is None:
        ts = iso(event.timestamp)
    state["position"] = position
    state["timestamp"] = ts
    if secret_summary.fold(state["secrets"], oid, event, ts):
        return True
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(state, oid, event, ts)
    return False


def _retention(state: State, oid: str, event: Any, ts: str) -> None:
    state["retention"] = event.retention


def _operator_registered(state: State, oid: str, event: Any, ts: str) -> None:
    state["operators"][oid] = {"name": event.name, "role": event.role, "sessions": {}}


def _role_granted(state: State, oid: str, event: Any, ts: str) -> None:
    if oid in state["operators"]:
        state["operators"][oid]["role"] = event.role


def _revoked(state: State, oid: str, event: Any, ts: str) -> None:
    if oid in state["operators"]:
        state["operators"][oid]["role"] = None


def _session_opened(state: State, oid: str, event: Any, ts: str) -> None:
    if oid in state["operators"]:
        state["operators"][oid]["sessions"][event.session_id] = {
            "opened_at": ts,
            "expires_at": iso(event.expires_at),
            "host": event.host,
        }


def _session_closed(state: State, oid: str, event: Any, ts: str) -> None:
    if oid in state["operators"]:
        state["operators"][oid]["sessions"].pop(event.session_id, None)


def _ignored(state: State, oid: str, event: Any, ts: str) -> None:
    """Events of the folded aggregates that change nothing the state holds."""


# Event class -> how it changes the state beyond the secrets (secret_summary folds those).
_HANDLERS: dict[type[Any], Callable[[State, str, Any, str], None]] = {
    LedgerSettings.Initialized: _retention,  # type: ignore[attr-defined]
    LedgerSettings.RetentionChanged: _retention,  # type: ignore[attr-defined]
    LedgerSettings.FingerprintKeyExported: _ignored,  # type: ignore[attr-defined]
    LedgerSettings.FingerprintKeyImported: _ignored,  # type: ignore[attr-defined]
    LedgerSettings.SeniorEngineersChanged: _ignored,  # type: ignore[attr-defined]
    LedgerSettings.VaultChosen: _ignored,  # type: ignore[attr-defined]
    Operator.Registered: _operator_registered,  # type: ignore[attr-defined]
    Operator.RoleGranted: _role_granted,  # type: ignore[attr-defined]
    Operator.Revoked: _revoked,  # type: ignore[attr-defined]
    Operator.TokenIssued: _ignored,  # type: ignore[attr-defined]
    Operator.SessionOpened: _session_opened,
    Operator.SessionClosed: _session_closed,  # type: ignore[attr-defined]
}
# Every event class `fold` reads more of than its position and time.
FOLDED: frozenset[type[Any]] = frozenset((*secret_summary.EVENTS, *_HANDLERS))


class Replayer:
    """Replays the log up to a position, starting from the nearest saved fold state."""

    def __init__(
        self,
        ledger: SecretsLedger,
        db: sqlite3.Connection | None = None,
        *,
        open_vault: bool = False,
    ) -> None:
        """`db`: where states are saved; they are used and saved only under the ledger's
        key (`SecretsLedger.replay_state_key`), read from the keychain with `open_vault`,
        else only if the command has it open already."""
        self.ledger = ledger
        self._reader = EventReader(ledger.mapper)
        self._saved = (
            SavedStates(db, ledger.replay_state_key(open_vault)) if db is not None else None
        )
        # Positions of the events this replayer could not decode, and so left out of what it
        # folded: the caller says so (a damaged log must not read as a clean answer).
        self.skipped: list[int] = []

    def _link(self, position: int) -> bytes | None:
        link_at = getattr(self.ledger.recorder, "link_at", None)
        found: bytes | None = link_at(position) if link_at is not None else None
        return found

    def _nearest(self, position: int) -> State:
        if self._saved is None:
            return empty()
        state = self._saved.nearest(position, self._link)
        if state is None:
            state = empty()
            self._saved.track(state)
        return state

    @property
    def saves(self) -> bool:
        """Whether this replayer can use and save states (it has the key)."""
        return self._saved is not None and self._saved.key is not None

    def changed(self, oid: str) -> None:
        """Mark a secret of the state being folded as changed since its last save (every
        `Secret.*` event): only those are encoded again (`SavedStates`)."""
        if self._saved is not None:
            self._saved.changed(oid)

    def apply(self, state: State, position: int, event: Any) -> None:
        """`apply` for a state this replayer may save: the secret an event changes is marked
        (`changed`), so that its saved part is encoded again."""
        oid = event.originator_id.hex
        if fold(state, position, event, oid):
            self.changed(oid)

    def save_state(self, state: State) -> None:
        if self._saved is not None:
            self._saved.save(state, self._link(state["position"]))

    def events(self, start: int, stop: int | None) -> Iterator[tuple[int, Any]]:
        """(position, domain event) after `start` up to `stop` (inclusive); undecodable
        events are skipped, noted in `skipped` (`secrets audit verify` reports them)."""
        for n in self.notifications(start, stop):
            try:
                yield n.id, self.ledger.mapper.to_domain_event(n)
            except MapperDeserialisationError:
                self.skipped.append(n.id)

    def notifications(self, start: int, stop: int | None) -> Iterator[Any]:
        """The stored notifications after `start` up to `stop` (inclusive), in pages."""
        for page in pages(self.ledger.recorder, start=start, stop=stop, page_size=PAGE):
            yield from page

    def resume(self, position: int) -> State | None:
        """The state as of `position` if a saved one is near it (within `RESUME_WITHIN`), or
        `position` is 0; None otherwise (folding from far back is a replay's cost to pay)."""
        if position == 0:
            return empty()
        state = self._nearest(position)
        if position - state["position"] > RESUME_WITHIN:
            return None
        return self.at_position(position, state)

    def at_position(self, position: int, state: State | None = None) -> State:
        """The state as of `position`, folded on from `state` (default: the nearest saved).

        The same as applying every decodable event in turn, without decoding the events that
        only move the position and time (`_is_folded`), except at a `SAVE_EVERY` position
        and at the end, where the last one that decodes gives the position and time."""
        if state is None:
            state = self._nearest(position)
        every = SAVE_EVERY
        tail: list[Row] = []  # rows not decoded since the last event applied
        convert: Callable[[Any], Any] = same_id
        for row, convert in self.rows(state["position"], position):
            at = row[0]
            if at % every and not _is_folded(row[3]):
                tail.append(row)
                continue
            event = self._decode(row, convert)
            if event is None:
                continue
            self.apply(state, at, event)
            tail.clear()
            if at % every == 0:
                self.save_state(state)
        for row in reversed(tail):
            event = self._decode(row, convert)
            if event is not None:
                apply(state, row[0], event)
                break
        return state

    def rows(self, start: int, stop: int) -> Iterator[tuple[Row, Callable[[Any], Any]]]:
        """The stored rows after `start` up to `stop` (inclusive), each with the conversion
        of its originator id (`read_rows`), in pages."""
        recorder = self.ledger.recorder
        while start < stop:
            page, convert = read_rows(recorder, start, PAGE, stop)
            for row in page:
                if row[0] > stop:
                    return
                yield row, convert
            if not page or page[-1][0] >= stop:
                return
            start = page[-1][0]

    def _decode(self, row: Row, convert: Callable[[Any], Any]) -> Any:
        """The domain event of a stored row; None where it cannot be decoded."""
        try:
            return self._reader.read_row(row, convert)[0]
        except MapperDeserialisationError:
            self.skipped.append(row[0])
            return None

    def position_at(self, when: datetime) -> int:
        """The last position whose event timestamp is at or before `when` (0 if none)."""
        found = 0
        for at, event in self.events(0, None):
            if event.timestamp <= when:
                found = at
        return found

    def at_time(self, when: datetime) -> State:
        return self.at_position(self.position_at(when))


def snapshot(state: State, as_of: datetime | None = None) -> dict[str, Any]:
    """The state as a stable document: sorted lists, short fingerprints, open sessions only."""
    moment = as_of or (parse_iso(state["timestamp"]) if state["timestamp"] else None)
    secrets = sorted(
        (
            {
                "environment": s["environment"],
                "service": s["service"],
                "name": s["name"],
                "current_version": s["current_version"],
                "fingerprint": (s["fingerprint"] or "")[:12],
                "last_rotation": s["last_rotation"],
                "last_change": s["last_change"],
                "status": "destroyed"
                if s["destroyed"]
                else "deleted"
                if s["deleted"]
                else "active",
                "retained_versions": list(s["retained"]),
            }
            for s in state["secrets"].values()
            if s["current_version"] > 0
        ),
        key=lambda s: (s["environment"], s["service"], s["name"]),
    )
    operators = sorted(
        ({"name": o["name"], "role": o["role"]} for o in state["operators"].values()),
        key=lambda o: o["name"],
    )
    sessions = sorted(
        (
            {
                "operator": o["name"],
                "session": sid[:8],
                "opened_at": s["opened_at"],
                "expires_at": s["expires_at"],
                "host": s["host"],
            }
            for o in state["operators"].values()
            for sid, s in o["sessions"].items()
            if moment is None or parse_iso(s["expires_at"]) > moment
        ),
        key=lambda s: (s["operator"], s["opened_at"], s["session"]),
    )
    return {
        "position": state["position"],
        "timestamp": state["timestamp"],
        "as_of": iso(moment) if moment else None,
        "retention": state["retention"],
        "secrets": secrets,
        "operators": operators,
        "sessions": sessions,
    }


NOT_APPLICABLE = "n/a"  # deleted or destroyed: no rotation policy applies
UNKNOWN = "unknown"  # the rotation projection could not be evaluated (undecodable events)


def with_compliance(
    doc: dict[str, Any], ledger: SecretsLedger, catalogue: Catalogue
) -> dict[str, Any]:
    """Add each secret's rotation compliance as it was then to a `snapshot` document.

    The policy is `ledger.rotation.policy.spec_status` (what `secrets rotate-status --as-of` and
    every other screen apply), fed from the replayed state itself: its `last_rotation` is
    folded as the `Secret` aggregate folds it (a rollback keeps the restored value's age), so
    no second fold of the log is needed (that second fold was most of a replay's time on a
    large ledger). Adds `compliance` (ok, due-soon, overdue, never-rotated, exempt,
    emergency-pending; n/a for a deleted or destroyed secret) and `rotation_due`."""
    from ledger.rotation.policy import emergency_since, spec_status

    as_of = parse_iso(doc["as_of"]) if doc["as_of"] is not None else None
    emergency: datetime | None = None
    known = as_of is not None
    if as_of is not None:
        try:
            emergency = emergency_since(ledger, as_of, doc["position"])
        except MapperDeserialisationError:
            known = False  # a damaged event (`secrets audit verify` names it): all unknown
    for s in doc["secrets"]:
        s["rotation_due"] = None
        if s["status"] != "active":
            s["compliance"] = NOT_APPLICABLE
            continue
        if as_of is None or not known:
            s["compliance"] = UNKNOWN
            continue
        spec = catalogue.lookup(s["service"], s["name"])
        last = parse_iso(s["last_rotation"]) if s["last_rotation"] else None
        _, _, _, due, status = spec_status(spec, last, as_of, emergency)
        s["compliance"] = status
        s["rotation_due"] = iso(due) if due is not None else None
    return doc


# What kind of change each secret event is, as `secrets audit diff` names it.
_VERSION_CHANGES = {
    "manual": "set",
    "rotation": "rotated",
    "emergency": "emergency-rotated",
    "rollback": "rolled-back",
    "provision": "provisioned",
}
_SECRET_CHANGES: dict[type[Any], str] = {
    Secret.Deleted: "deleted",  # type: ignore[attr-defined]
    Secret.Restored: "restored",  # type: ignore[attr-defined]
    Secret.Destroyed: "destroyed",  # type: ignore[attr-defined]
    Secret.VersionPruned: "pruned",  # type: ignore[attr-defined]
}
_ROLE_EVENTS = (Operator.Registered, Operator.RoleGranted, Operator.Revoked)  # type: ignore[attr-defined]


def window(replayer: Replayer, state: State, stop: int) -> dict[str, Any]:
    """Fold the events after `state`'s position up to `stop` into `state` (in place) and say
    what happened in between: each secret's changes by kind (added, set, rotated,
    emergency-rotated, rolled-back, provisioned, deleted, restored, destroyed, pruned), roles
    granted and revoked, access denied (HBSE-006), and the sessions opened (which the two
    snapshots miss when they also ended inside the window). Every entry but a session has its
    position and time."""
    secrets: dict[str, list[dict[str, Any]]] = {}
    roles: list[dict[str, Any]] = []
    denials: list[dict[str, Any]] = []
    # (operator, session) as snapshots name them: a session opened and closed (or expired)
    # inside the window is in neither snapshot, only here.
    opened: list[tuple[str, str]] = []
    for at, event in replayer.events(state["position"], stop):
        cls = type(event)
        oid = event.originator_id.hex
        when = {"position": at, "at": iso(event.timestamp), "by": event.operator}
        secret = state["secrets"].get(oid)
        if secret is not None and (cls is Secret.VersionAdded or cls in _SECRET_CHANGES):
            address = f"{secret['environment']}/{secret['service']}/{secret['name']}"
            if cls is Secret.VersionAdded:
                change = "added" if secret["current_version"] == 0 else None
                change = change or _VERSION_CHANGES.get(event.reason, event.reason)
                entry = {"change": change, "version": event.version, "reason": event.reason}
                if event.rolled_back_from is not None:
                    entry["rolled_back_from"] = event.rolled_back_from
            else:
                entry = {"change": _SECRET_CHANGES[cls]}
                if cls is Secret.VersionPruned:  # type: ignore[attr-defined]
                    entry["version"] = event.version
            secrets.setdefault(address, []).append({**entry, **when})
        elif cls in _ROLE_EVENTS:
            known = state["operators"].get(oid)
            registered = cls is Operator.Registered  # type: ignore[attr-defined]
            name = event.name if registered else (known or {}).get("name")
            if cls is Operator.Revoked:  # type: ignore[attr-defined]
                held = (known or {}).get("role")
                roles.append({"operator": name, "change": "revoked", "role": held, **when})
            else:
                roles.append({"operator": name, "change": "granted", "role": event.role, **when})
        elif cls is Operator.SessionOpened and oid in state["operators"]:
            opened.append((state["operators"][oid]["name"], event.session_id[:8]))
        elif cls is Denial.AccessDenied:  # type: ignore[attr-defined]
            target = f"{event.environment}/{event.service}/{event.name}" if event.service else None
            denials.append(
                {
                    "operator": event.operator,
                    "action": event.action,
                    "secret": target,
                    "reason": event.reason,
                    "position": at,
                    "at": iso(event.timestamp),
                }
            )
        replayer.apply(state, at, event)
    return {
        "secrets": secrets,
        "role_changes": roles,
        "denials": denials,
        "sessions_opened": opened,
    }


def diff(
    before: dict[str, Any], after: dict[str, Any], between: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What changed between two snapshots: secrets, roles, sessions; with `between` (from
    `window`), also what kind of change each secret had, the roles granted and revoked and the
    denials in the window. A secret that changed and changed back (deleted, then restored) is
    listed with its changes and no field deltas."""

    def key(s: dict[str, Any]) -> str:
        return f"{s['environment']}/{s['service']}/{s['name']}"

    happened: dict[str, list[dict[str, Any]]] = (between or {}).get("secrets", {})
    old = {key(s): s for s in before["secrets"]}
    new = {key(s): s for s in after["secrets"]}
    secrets: list[dict[str, Any]] = []
    for address in sorted(old.keys() | new.keys() | happened.keys()):
        a, b = old.get(address), new.get(address)
        events = happened.get(address, [])
        if a == b and not events:
            continue
        change = "added" if a is None else "removed" if b is None else "changed"
        fields = {
            f: {"from": a.get(f) if a else None, "to": b.get(f) if b else None}
            for f in ("current_version", "fingerprint", "status", "last_rotation")
            if (a or {}).get(f) != (b or {}).get(f)
        }
        kinds = list(dict.fromkeys(e["change"] for e in events))
        secrets.append(
            {
                "secret": address,
                "change": change,
                "fields": fields,
                "changes": kinds,
                "events": events,
            }
        )
    roles_before = {o["name"]: o["role"] for o in before["operators"]}
    roles_after = {o["name"]: o["role"] for o in after["operators"]}
    operators = [
        {"operator": name, "from": roles_before.get(name), "to": roles_after.get(name)}
        for name in sorted(roles_before.keys() | roles_after.keys())
        if roles_before.get(name) != roles_after.get(name)
    ]
    sessions_before = {(s["operator"], s["session"]) for s in before["sessions"]}
    sessions_after = {(s["operator"], s["session"]) for s in after["sessions"]}
    opened_within = {tuple(s) for s in (between or {}).get("sessions_opened", [])}
    # Opened in the window and not open at its end: closed or expired within it.
    ended = (sessions_before - sessions_after) | (opened_within - sessions_after)
    started = (sessions_after - sessions_before) | opened_within
    return {
        "from": {"position": before["position"], "as_of": before["as_of"]},
        "to": {"position": after["position"], "as_of": after["as_of"]},
        "secrets": secrets,
        "operators": operators,
        "role_changes": list((between or {}).get("role_changes", [])),
        "denials": list((between or {}).get("denials", [])),
        "sessions_opened": [{"operator": o, "session": s} for o, s in sorted(started)],
        "sessions_ended": [{"operator": o, "session": s} for o, s in sorted(ended)],
    }


def who_can(doc: dict[str, Any], environment: str, service: str, name: str) -> dict[str, Any]:
    """Who could read or change one secret in a snapshot. Access is by role alone (see
    ledger/access/policy.py), so this is every operator whose role then allowed it."""
    from ledger.access.policy import Permission, allows

    found = next(
        (
            s
            for s in doc["secrets"]
            if (s["environment"], s["service"], s["name"]) == (environment, service, name)
        ),
        None,
    )
    holders = []
    for o in doc["operators"]:
        can = [p.value for p in (Permission.READ, Permission.MANAGE) if allows(o["role"], p)]
        if can:
            holders.append({"operator": o["name"], "role": o["role"], "can": can})
    return {
        "secret": f"{environment}/{service}/{name}",
        "position": doc["position"],
        "as_of": doc["as_of"],
        "exists": found is not None,
        "status": found["status"] if found else None,
        "operators": holders,
    }
