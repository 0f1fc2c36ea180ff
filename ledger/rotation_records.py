"""Aggregates that record rotation work: batch runs and the rotation schedule.

A `RotationRun` remembers which secrets a batch set out to rotate and at which version each
stood when it began, so an interrupted run can be finished later without rotating anything
twice: a target whose version moved on since the start is done. Version numbers, not clocks,
decide that, so the answer cannot depend on the host's time.
"""

from __future__ import annotations

from eventsourcing.domain import event

from ledger.stamping import LedgerAggregate

SCOPES = ("due", "all", "emergency")
TRIGGERS = ("manual", "schedule")


class RotationRun(LedgerAggregate):
    """One `secrets rotate` (or `emergency-rotate`) job, possibly over several invocations."""

    @event("Started")
    def __init__(
        self, scope: str, trigger: str, targets: dict[str, int], incident_id: str | None
    ) -> None:
        self.scope = scope
        self.trigger = trigger
        self.targets = dict(targets)  # address -> current version when the run began
        self.incident_id = incident_id
        self.complete = False
        self.abandoned = False
        self.batches = 0
        self.rotated: list[str] = []
        self.needs_value: list[str] = []
        self.failed: list[str] = []

    @property
    def open(self) -> bool:
        return not (self.complete or self.abandoned)

    @event("BatchEnded")
    def end_batch(
        self,
        rotated: list[str],
        needs_value: list[str],
        failed: list[str],
        skipped: list[str],
        complete: bool,
    ) -> None:
        self.batches += 1
        self.rotated = sorted({*self.rotated, *rotated})
        self.needs_value = list(needs_value)
        self.failed = list(failed)
        self.complete = complete

    @event("Abandoned")
    def abandon(self, reason: str) -> None:
        self.abandoned = True


class ScheduleChange(LedgerAggregate):
    """The rotation schedule was installed or removed on a host (the newest change wins)."""

    @event("ScheduleChanged")
    def __init__(self, action: str, at: str | None, host: str, entry: str) -> None:
        self.action = action  # "installed" | "removed"
        self.at = at  # "HH:MM" local time of the host's cron, or None when removed
        self.host = host
        self.entry = entry  # the marker naming the crontab block
