"""One secret's summary folded from its events: the fold that replay, compliance and the views
share.

A summary is plain data (JSON-able when its times are text), so that replay can save it
(projections/replay_states.py): the address, the current version and its fingerprint, when the
value in use was first introduced (`last_rotation`), the last change and who made it, the
reason of the current version, deleted and destroyed, the versions that keep a value
(`retained`) and when each version's value was born (`born`, keyed by the version as text).
Times are whatever the caller folds with: `iso()` text for replay, datetimes for compliance.

Handlers are chosen by event class (`HANDLERS`), never by a class's name: a renamed event is
an import error here, and tests/unit/test_secret_summary.py fails for a `Secret` event class
that has no handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ledger.secret import Secret, value_source

Summary = dict[str, Any]
T = TypeVar("T")


def value_born(
    event: Any, current: int, fingerprint: str | None, born: Callable[[int], T | None], ts: T
) -> T:
    """When the value a `VersionAdded` event records was born, for a secret whose current
    version is `current` with `fingerprint`: a rollback, or a set of the value already in use,
    keeps the age of the value it carries on (`ledger.secret.value_source`; `born(n)` says
    when version n's value was born, None if unknown); any other version is born at `ts`."""
    source = value_source(event.rolled_back_from, event.fingerprint, current, fingerprint)
    if source is None:
        return ts
    found = born(source)
    return ts if found is None else found


def registered(event: Any, ts: Any) -> Summary:
    """The summary a `Secret.Registered` event starts."""
    return {
        "environment": event.environment,
        "service": event.service,
        "name": event.name,
        "current_version": 0,
        "fingerprint": None,
        "last_rotation": None,
        "last_change": ts,
        "operator": event.operator,
        "reason": None,
        "deleted": False,
        "destroyed": False,
        "retained": [],
        "born": {},  # version -> when its value was first introduced
    }


def _version_added(summary: Summary, event: Any, ts: Any) -> None:
    born_at: dict[str, Any] = summary["born"]
    born = value_born(
        event,
        summary["current_version"],
        summary["fingerprint"],
        lambda n: born_at.get(str(n)),
        ts,
    )
    born_at[str(event.version)] = born
    summary.update(
        current_version=event.version,
        fingerprint=event.fingerprint,
        last_rotation=born,
        reason=event.reason,
        deleted=False,
        destroyed=False,
    )
    summary["retained"] = sorted({*summary["retained"], event.version})


def _version_pruned(summary: Summary, event: Any, ts: Any) -> None:
    summary["retained"] = [n for n in summary["retained"] if n != event.version]


def _deleted(summary: Summary, event: Any, ts: Any) -> None:
    summary["deleted"] = True


def _restored(summary: Summary, event: Any, ts: Any) -> None:
    summary["deleted"] = False


def _destroyed(summary: Summary, event: Any, ts: Any) -> None:
    gone = set(event.versions)
    summary["retained"] = [n for n in summary["retained"] if n not in gone]
    summary["deleted"] = summary["destroyed"] = True


# Event class -> how it changes a summary that exists (`Registered` starts one: `registered`).
HANDLERS: dict[type[Any], Callable[[Summary, Any, Any], None]] = {
    Secret.VersionAdded: _version_added,
    Secret.VersionPruned: _version_pruned,  # type: ignore[attr-defined]
    Secret.Deleted: _deleted,  # type: ignore[attr-defined]
    Secret.Restored: _restored,  # type: ignore[attr-defined]
    Secret.Destroyed: _destroyed,  # type: ignore[attr-defined]
}
REGISTERED: type[Any] = Secret.Registered  # type: ignore[attr-defined]
# Every event class of a secret: what this fold reads.
EVENTS: tuple[type[Any], ...] = (REGISTERED, *HANDLERS)


def fold(summaries: dict[str, Summary], oid: str, event: Any, ts: Any) -> bool:
    """Fold one event of the secret `oid` into `summaries` (in place); whether it was a
    secret's event. Events of a secret whose registration was not folded change nothing."""
    cls = type(event)
    handler = HANDLERS.get(cls)
    if handler is not None:
        summary = summaries.get(oid)
        if summary is not None:
            summary["last_change"] = ts
            summary["operator"] = event.operator
            handler(summary, event, ts)
        return True
    if cls is REGISTERED:
        summaries[oid] = registered(event, ts)
        return True
    return False
