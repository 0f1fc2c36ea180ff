"""The questions the views answer (every command's reads of them)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from projections import event_reader, views_schema
from projections.timefmt import parse_iso
from projections.view_rows import (
    ActionCount,
    AddressCount,
    AuditRow,
    OperatorCount,
    OperatorRow,
    SecretRow,
    StatusCount,
)
from projections.views_schema import ViewsDatabase

if TYPE_CHECKING:
    from ledger.application import SecretsLedger


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _instant(value: object) -> str | None:
    """`value` if it is a stored instant; None for anything else an edited file may hold
    there (a BLOB, a number, text that is no time)."""
    if not isinstance(value, str):
        return None
    try:
        parse_iso(value)
    except (ValueError, OverflowError):
        return None
    return value


def _texts(*groups: tuple[Any, ...]) -> bool:
    return all(isinstance(v, str) for group in groups for v in group)


def _texts_or_none(values: tuple[Any, ...]) -> bool:
    return all(v is None or isinstance(v, str) for v in values)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ViewsQueries(ViewsDatabase):
    """The queries of `Views`."""

    ledger: SecretsLedger
    _reader: event_reader.EventReader

    # -- queries --------------------------------------------------------------------------

    def secrets(
        self, environment: str | None = None, include_deleted: bool = False
    ) -> list[SecretRow]:
        sql = (
            "SELECT environment, service, name, current_version, fingerprint, last_change, "
            "operator, reason, last_rotation, deleted, destroyed, retained, last_read, "
            "last_reader, last_read_version FROM secrets_view WHERE current_version > 0"
        )
        params: list[Any] = []
        if environment is not None:
            sql += " AND environment = ?"
            params.append(environment)
        if not include_deleted:
            sql += " AND deleted = 0"
        sql += " ORDER BY environment, service, name"
        found: list[SecretRow] = []
        unfit = 0
        for r in self._db.execute(sql, params):
            # A cache row is shown only as far as it fits its columns: a writer of the file
            # can put any type anywhere, and a BLOB or text that is no time must not reach
            # the JSON encoder or a date parser (exit 1 in `list -o json`, `dashboard`).
            version, retained = _count(r[3]), _count(r[11])
            changed, rotated = _instant(r[5]), _instant(r[8])
            read, read_version = _instant(r[12]), _count(r[14])
            fits = (
                all(isinstance(v, str) for v in r[0:3])
                and version is not None
                and retained is not None
                and (changed is not None or r[5] is None)
                and (rotated is not None or r[8] is None)
                and all(isinstance(v, str) or v is None for v in (r[4], r[6], r[7], r[13]))
                and (read is not None or r[12] is None)
                and (read_version is not None or r[14] is None)
            )
            unfit += not fits
            found.append(
                SecretRow(
                    _text(r[0]),
                    _text(r[1]),
                    _text(r[2]),
                    version or 0,
                    _text(r[4]),
                    changed or "",
                    _text(r[6]),
                    _text(r[7]),
                    rotated or "",
                    bool(r[9]) if isinstance(r[9], int) else True,
                    bool(r[10]) if isinstance(r[10], int) else True,
                    retained or 0,
                    read,
                    r[13] if read is not None and isinstance(r[13], str) else None,
                    read_version if read is not None else None,
                )
            )
        if unfit:
            self.ledger.warnings.append(
                f"the views cache has {unfit} secret row(s) that do not fit their columns "
                "(shown without the values that do not); run `secrets projections rebuild`"
            )
        return found

    def audit(
        self,
        *,
        code: str | None = None,
        operator: str | None = None,
        service: str | None = None,
        name: str | None = None,
        environment: str | None = None,
        since: str | None = None,
        until: str | None = None,
        after_position: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        codes: tuple[str, ...] | None = None,
        without_actions: tuple[str, ...] = (),
    ) -> list[AuditRow]:
        clauses: list[str] = []
        params: list[Any] = []
        if codes is not None:
            clauses.append(f"code IN ({', '.join('?' * len(codes))})" if codes else "0")
            params.extend(codes)
        if without_actions:
            clauses.append(f"action NOT IN ({', '.join('?' * len(without_actions))})")
            params.extend(without_actions)
        for column, value in (
            ("code", code),
            ("operator", operator),
            ("service", service),
            ("name", name),
            ("environment", environment),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("timestamp >= ?")
            params.append(since)
        if until is not None:
            clauses.append("timestamp <= ?")
            params.append(until)
        if after_position is not None:
            clauses.append("position > ?")
            params.append(after_position)
        sql = "SELECT * FROM audit_view"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY position " + ("DESC" if newest_first else "ASC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        found: list[AuditRow] = []
        unfit = 0
        for r in self._db.execute(sql, params):
            # As for secret rows: a writer of the file can put any type in any cell; shown
            # only as far as it fits (`audit log` then finds the row unlike its event).
            fits = _texts(r[1:6], r[9:12]) and _texts_or_none(r[6:9])
            unfit += not fits
            found.append(
                AuditRow(
                    r[0],
                    *(_text(v) for v in r[1:6]),
                    *(v if isinstance(v, str) else None for v in r[6:9]),
                    *(_text(v) for v in r[9:12]),
                )
            )
        self._unfit(unfit, "audit")
        return found

    def _unfit(self, unfit: int, what: str) -> None:
        if unfit:
            self.ledger.warnings.append(
                f"the views cache has {unfit} {what} row(s) that do not fit their columns "
                "(shown without the values that do not); run `secrets projections rebuild`"
            )

    def _counted(self, rows: Any, what: str) -> list[tuple[Any, ...]]:
        """The grouped counts of `rows` whose keys are text (or NULL) and count a count:
        a group keyed by a BLOB or a number (an edited cell) is left out, with a warning,
        rather than reach the metrics' labels (a TypeError there)."""
        found = list(rows)
        kept = [r for r in found if _texts_or_none(r[:-1]) and _count(r[-1]) is not None]
        if len(kept) < len(found):
            self.ledger.warnings.append(
                f"the views cache has {len(found) - len(kept)} {what} count(s) keyed by values "
                "that do not fit their columns (left out); run `secrets projections rebuild`"
            )
        return kept

    @property
    def db(self) -> sqlite3.Connection:
        """The views database, for caches that live beside the views (replay states)."""
        return self._db

    def position_at(self, when: str) -> int:
        """The last position whose event timestamp (ISO, as stored) is at or before `when`.

        The blocks and the coverage are cache rows a writer of views.sqlite can edit (an
        `earliest` moved to 2999 made `audit replay --at now` answer position 0): the answer
        is checked against the log, which is the truth: the event at it is stamped at or
        before `when` and the next one after. When the log says otherwise, the audit view is
        scanned from its end instead."""
        found = self._position_at(when)
        if self._agrees_with_log(when, found):
            return found
        return self._last_at_or_before(when, self.position() + 1)

    def _position_at(self, when: str) -> int:
        below = self.position() + 1  # positions below this are still to search
        covered = self._db.execute("SELECT since FROM audit_time_coverage").fetchone()
        since = _count(covered[0]) if covered is not None else None
        if since is not None and since >= 0:
            # Blocks wholly at or after `since` are complete; the last one with an event at
            # or before `when` holds the answer (every later event is stamped after it).
            first = 0 if since <= 1 else -(-since // views_schema.TIME_BLOCK)
            row = self._db.execute(
                "SELECT max(block) FROM audit_time_blocks WHERE block >= ? AND earliest <= ?",
                (first, when),
            ).fetchone()
            block = _count(row[0]) if row is not None else None
            if block is not None:
                return self._last_at_or_before(when, (block + 1) * views_schema.TIME_BLOCK)
            below = min(below, first * views_schema.TIME_BLOCK)
        return self._last_at_or_before(when, below)

    def _agrees_with_log(self, when: str, position: int) -> bool:
        """Whether the log's events at `position` and the one after it (up to the views'
        position) are stamped at or before `when`, and after it. Two rows read."""
        head = self.position()
        try:
            rows, convert = event_reader.read_rows(
                self.ledger.recorder, max(position - 1, 0), 2 if position else 1
            )
            stamps = [(row[0], self._reader.read_row(row, convert)[1]) for row in rows]
        except Exception:  # an undecodable event there: the scan below answers
            return False
        if position:
            if not stamps or stamps[0][0] != position or not stamps[0][1] <= when:
                return False
            stamps = stamps[1:]
        return not stamps or stamps[0][0] > head or stamps[0][1] > when

    def _last_at_or_before(self, when: str, below: int) -> int:
        row = self._db.execute(
            "SELECT max(position) FROM audit_view WHERE position < ? AND timestamp <= ? "
            "AND timestamp != ''",
            (below, when),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def unreadable(self, upto: int) -> list[int]:
        """Positions up to `upto` whose event could not be decoded when the views applied it."""
        rows = self._db.execute(
            "SELECT position FROM audit_view WHERE code = 'HBSE-013' AND action = 'unreadable' "
            "AND position <= ? ORDER BY position",
            (upto,),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def event_count(self, event: str | None = None) -> int:
        """How many events of one kind (qualified class name) were applied; all if None."""
        if event is None:
            row = self._db.execute("SELECT COUNT(*) FROM audit_view").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM audit_view WHERE event = ?", (event,)
            ).fetchone()
        return int(row[0])

    def action_counts(self, events: list[str]) -> list[ActionCount]:
        """(event, action, environment, count) for the given event kinds."""
        marks = ", ".join("?" for _ in events)
        return [
            ActionCount(r[0], r[1], r[2], int(r[3]))
            for r in self._counted(
                self._db.execute(
                    f"SELECT event, action, environment, COUNT(*) FROM audit_view "
                    f"WHERE event IN ({marks}) GROUP BY event, action, environment "
                    "ORDER BY event, action, environment",
                    events,
                ),
                "audit",
            )
        ]

    def operator_counts(self, event: str) -> list[OperatorCount]:
        """(operator, action, environment, count) of one event kind."""
        return [
            OperatorCount(r[0], r[1], r[2], int(r[3]))
            for r in self._counted(
                self._db.execute(
                    "SELECT operator, action, environment, COUNT(*) FROM audit_view "
                    "WHERE event = ? GROUP BY operator, action, environment "
                    "ORDER BY operator, action, environment",
                    (event,),
                ),
                "audit",
            )
        ]

    def address_counts(self, event: str) -> list[AddressCount]:
        """(environment, service, name, count) of one event kind that names a secret."""
        return [
            AddressCount(r[0], r[1], r[2], int(r[3]))
            for r in self._counted(
                self._db.execute(
                    "SELECT environment, service, name, COUNT(*) FROM audit_view "
                    "WHERE event = ? AND service IS NOT NULL "
                    "GROUP BY environment, service, name ORDER BY environment, service, name",
                    (event,),
                ),
                "audit",
            )
        ]

    def secret_status_counts(self) -> list[StatusCount]:
        """(environment, status, count): status is active, deleted or destroyed."""
        return [
            StatusCount(r[0], r[1], int(r[2]))
            for r in self._counted(
                self._db.execute(
                    "SELECT environment, CASE WHEN destroyed THEN 'destroyed' "
                    "WHEN deleted THEN 'deleted' ELSE 'active' END AS status, COUNT(*) "
                    "FROM secrets_view WHERE current_version > 0 "
                    "GROUP BY environment, status ORDER BY environment, status"
                ),
                "secret",
            )
        ]

    def operators(self) -> list[OperatorRow]:
        return [
            OperatorRow(r[0], r[1], r[2])
            for r in self._counted(
                self._db.execute(
                    "SELECT name, role, updated_at, 0 FROM operators_view ORDER BY name"
                ),
                "operator",
            )
        ]
