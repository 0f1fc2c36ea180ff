"""Care of an embedded (SQLite) store: read its pages, rebuild its indexes; list secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from uuid import UUID

from ledger.secret import Secret
from ledger.store.notifications import notifications, originator_of

if TYPE_CHECKING:
    from ledger.application import SecretsLedger


class MaintenanceService:
    def __init__(self, app: SecretsLedger) -> None:
        self.app = app

    def secret_ids(self) -> Iterator[UUID]:
        for n in notifications(self.app.recorder, Secret, "Registered"):
            yield originator_of(n)

    def repair_indexes(self) -> list[str]:
        """Rebuild the indexes of an embedded store when they are all that is damaged and
        the rows match the hash chain (`sqlite_file.repair_indexes`); the names rebuilt."""
        from ledger.store.chain import verify_store
        from ledger.store.config import DATABASE_FILE
        from ledger.store.sqlite import ChainedSQLiteApplicationRecorder
        from ledger.store.sqlite_file import repair_indexes

        recorder = self.app.recorder
        if not isinstance(recorder, ChainedSQLiteApplicationRecorder):
            return []

        def rows_fault() -> str | None:
            fault = verify_store(recorder).fault
            return None if fault is None else f"{fault.kind} at position {fault.position}"

        return repair_indexes(self.app.home / DATABASE_FILE, rows_fault)

    def check_pages(self, deep: bool = False) -> None:
        """Read every page of an embedded (SQLite) store, and with `deep` check its indexes
        against its rows (`sqlite_file.check_pages`): damage is IntegrityFailure."""
        from ledger.store.config import DATABASE_FILE
        from ledger.store.sqlite import ChainedSQLiteApplicationRecorder
        from ledger.store.sqlite_file import check_pages

        if isinstance(self.app.recorder, ChainedSQLiteApplicationRecorder):
            check_pages(self.app.home / DATABASE_FILE, deep)
