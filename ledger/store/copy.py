"""Copying a whole ledger between event stores (`secrets ledger copy`): SQLite <-> PostgreSQL.

Every stored event is copied byte for byte with its position (notification id), so timestamps
(inside the events' state), the hash chain links and anything that cites a position stay valid.
The source is verified first and only a verified prefix is copied; the copy is verified again
and must end on the same chain head. Snapshots are copied when the events they summarise are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import takewhile
from typing import Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.errors import BadConfiguration, IntegrityFailure
from ledger.store.chain import ChainedRecorder, StoredRow, verify


class CopyableRecorder(ChainedRecorder, Protocol):
    def iter_snapshots(self) -> Iterator[StoredEvent]: ...

    def is_empty(self) -> bool: ...

    def import_history(
        self,
        rows: Iterable[StoredRow],
        links: Iterable[tuple[int, bytes]],
        snapshots: Iterable[StoredEvent],
    ) -> int: ...


@dataclass(frozen=True)
class CopyReport:
    events: int
    snapshots: int
    last_position: int
    head: bytes


def _key(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else str(originator_id)


def copy_history(source: CopyableRecorder, target: CopyableRecorder) -> CopyReport:
    if not target.is_empty():
        raise BadConfiguration("the target already holds events: copy only into an empty store")

    # 1. Verify the source, noting each aggregate's newest copied version for the snapshots.
    newest: dict[str, int] = {}

    def noting(rows: Iterator[StoredRow]) -> Iterator[StoredRow]:
        for row in rows:
            key = _key(row.originator_id)
            newest[key] = max(newest.get(key, 0), row.originator_version)
            yield row

    report, verified = verify(noting(source.iter_rows()), source.iter_links())
    if report.fault is not None:
        raise IntegrityFailure(
            f"the source ledger fails verification at position {report.fault.position} "
            f"({report.fault.kind}: {report.fault.detail}); nothing was copied"
        )
    last = verified[-1][0] if verified else 0

    # 2. Copy that verified prefix (events appended meanwhile are not part of this copy).
    copied_snapshots = 0

    def snapshots() -> Iterator[StoredEvent]:
        nonlocal copied_snapshots
        for s in source.iter_snapshots():
            if s.originator_version <= newest.get(_key(s.originator_id), -1):
                copied_snapshots += 1
                yield s

    count = target.import_history(
        takewhile(lambda r: r.notification_id <= last, source.iter_rows()),
        takewhile(lambda pair: pair[0] <= last, source.iter_links()),
        snapshots(),
    )

    # 3. The copy must verify on its own and end on the same head: same events, same order.
    copied, _ = verify(
        takewhile(lambda r: r.notification_id <= last, target.iter_rows()),
        takewhile(lambda pair: pair[0] <= last, target.iter_links()),
    )
    if copied.fault is not None or copied.head != report.head or count != report.events_checked:
        where = f" at position {copied.fault.position}" if copied.fault else ""
        raise IntegrityFailure(
            f"the copy does not verify{where} (copied {count} of {report.events_checked} "
            "events); do not use it"
        )
    return CopyReport(count, copied_snapshots, last, report.head)
