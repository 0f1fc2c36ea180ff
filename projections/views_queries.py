"""The questions the views answer (every command's reads of them)."""

from __future__ import annotations

import sqlite3
from typing import Any

from projections import views_schema
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


class ViewsQueries(ViewsDatabase):
    """The queries of `Views`."""

    # -- queries --------------------------------------------------------------------------

    def secrets(
        self, environment: str | None = None, include_deleted: bool = False
    ) -> list[SecretRow]:
        sql = (
            "SELECT environment, service, name, current_version, fingerprint, last_change, "
            "operator, reason, last_rotation, deleted, destroyed, retained FROM secrets_view "
            "WHERE current_version > 0"
        )
        params: list[Any] = []
        if environment is not None:
            sql += " AND environment = ?"
            params.append(environment)
        if not include_deleted:
            sql += " AND deleted = 0"
        sql += " ORDER BY environment, service, name"
        return [
            SecretRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4] or "",
                r[5] or "",
                r[6] or "",
                r[7] or "",
                r[8] or "",
                bool(r[9]),
                bool(r[10]),
                r[11],
            )
            for r in self._db.execute(sql, params)
        ]

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
    ) -> list[AuditRow]:
        clauses: list[str] = []
        params: list[Any] = []
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
        return [AuditRow(*r) for r in self._db.execute(sql, params)]

    @property
    def db(self) -> sqlite3.Connection:
        """The views database, for caches that live beside the views (replay states)."""
        return self._db

    def position_at(self, when: str) -> int:
        """The last position whose event timestamp (ISO, as stored) is at or before `when`."""
        below = self.position() + 1  # positions below this are still to search
        covered = self._db.execute("SELECT since FROM audit_time_coverage").fetchone()
        if covered is not None:
            # Blocks wholly at or after `since` are complete; the last one with an event at
            # or before `when` holds the answer (every later event is stamped after it).
            since = int(covered[0])
            first = 0 if since <= 1 else -(-since // views_schema.TIME_BLOCK)
            row = self._db.execute(
                "SELECT max(block) FROM audit_time_blocks WHERE block >= ? AND earliest <= ?",
                (first, when),
            ).fetchone()
            if row is not None and row[0] is not None:
                return self._last_at_or_before(when, (int(row[0]) + 1) * views_schema.TIME_BLOCK)
            below = min(below, first * views_schema.TIME_BLOCK)
        return self._last_at_or_before(when, below)

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
            for r in self._db.execute(
                f"SELECT event, action, environment, COUNT(*) FROM audit_view "
                f"WHERE event IN ({marks}) GROUP BY event, action, environment "
                "ORDER BY event, action, environment",
                events,
            )
        ]

    def operator_counts(self, event: str) -> list[OperatorCount]:
        """(operator, action, environment, count) of one event kind."""
        return [
            OperatorCount(r[0], r[1], r[2], int(r[3]))
            for r in self._db.execute(
                "SELECT operator, action, environment, COUNT(*) FROM audit_view "
                "WHERE event = ? GROUP BY operator, action, environment "
                "ORDER BY operator, action, environment",
                (event,),
            )
        ]

    def address_counts(self, event: str) -> list[AddressCount]:
        """(environment, service, name, count) of one event kind that names a secret."""
        return [
            AddressCount(r[0], r[1], r[2], int(r[3]))
            for r in self._db.execute(
                "SELECT environment, service, name, COUNT(*) FROM audit_view "
                "WHERE event = ? AND service IS NOT NULL "
                "GROUP BY environment, service, name ORDER BY environment, service, name",
                (event,),
            )
        ]

    def secret_status_counts(self) -> list[StatusCount]:
        """(environment, status, count): status is active, deleted or destroyed."""
        return [
            StatusCount(r[0], r[1], int(r[2]))
            for r in self._db.execute(
                "SELECT environment, CASE WHEN destroyed THEN 'destroyed' "
                "WHEN deleted THEN 'deleted' ELSE 'active' END AS status, COUNT(*) "
                "FROM secrets_view WHERE current_version > 0 "
                "GROUP BY environment, status ORDER BY environment, status"
            )
        ]

    def operators(self) -> list[OperatorRow]:
        return [
            OperatorRow(r[0], r[1], r[2])
            for r in self._db.execute(
                "SELECT name, role, updated_at FROM operators_view ORDER BY name"
            )
        ]
