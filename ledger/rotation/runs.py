"""Rotation use cases: rotate one secret, every due secret or all of them; emergency rotation;
provisioning an environment from the catalogue; and the rotation policy that says what is due.

Every write goes through the unit of work (ledger/unit_of_work.py: `authorize`, `save`,
`retrying`) and the write path (`SecretsService.write_version`, `record_rejection`), so
rotation keeps the write path's guarantees: the value reaches the keychain before its event,
lost races are retried, old values are pruned.

Rotation policy
===============
Every version that brings a new value counts as a rotation, whatever its reason (a manual
`set` counts, and so does the first version: a value's age runs from when it was written).
A rollback brings back an older value, so it does not reset the age: the value in use is as old
as the version it restored (`Secret.rotated_at`). Nor does a `set` of the value already in use
(same fingerprint as the version before it): it is allowed, but the age runs on.

A rotation (scheduled, manual, emergency) must change the value: a new value with the current
version's fingerprint is refused (rule ``unchanged-value``), and while an emergency rotation is
open, so is the value of any version it presumes compromised, every version up to the one in use
when it started (rule ``compromised-value``). Both are recorded as rejections (exit 5).

Per secret, as of an instant T:

* ``last_rotation``: when the value in use was first written; ``due = last_rotation +
  rotation_days``;
* ``overdue`` when T >= due; ``due-soon`` when T >= due - warning_days; else ``ok``;
* ``never-rotated`` when the secret has no value-bearing version at T;
* ``exempt`` for rotation kind ``none`` (identifiers, never due);
* ``emergency-pending`` (before all of the above but ``exempt``) when an emergency rotation
  started at or before T and the value in use was written before it: the incident did not
  replace it (an external key still waiting for its provider-issued value), so the value is
  presumed compromised until a newer one is written. A rollback to such a value makes the
  secret pending again: it brings the compromised value back.

``initial_value`` tells whether the value in use is still the one the secret was created with.
Keys missing from the catalogue are treated as ``external`` with the default 90/14 days.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from ledger import context
from ledger.access.policy import SENIOR, Permission
from ledger.address import SecretAddress
from ledger.errors import IntegrityFailure, LedgerError, NotFound, ValidationFailed
from ledger.integrity.checked_events import checked_event
from ledger.operator import Operator
from ledger.records import Incident, Rejection
from ledger.rotation.catalogue import Catalogue, KeySpec, load_catalogue
from ledger.rotation.generate import generate_value
from ledger.rotation.policy import (
    DEFAULT_ROTATION_DAYS,
    DEFAULT_WARNING_DAYS,
    DUE_SOON,
    EMERGENCY_PENDING,
    EXEMPT,
    NEVER_ROTATED,
    NON_COMPLIANT,
    OK,
    OVERDUE,
    STATUSES,
    emergency_since,
    policy_status,
    spec_status,
)
from ledger.rotation_records import RotationRun, ScheduleChange
from ledger.secret import Secret, Version
from ledger.store.notifications import notifications, originator_of
from ledger.validation import validate_environment, validate_value

if TYPE_CHECKING:
    from ledger.access.credentials import Credential, Principal
    from ledger.application import SecretsLedger

BOT_OPERATOR: Final = "rotation-bot"
UNCHANGED_VALUE: Final = "unchanged-value"
COMPROMISED_VALUE: Final = "compromised-value"
BOT_TOKEN_ENTRY: Final = f"automation.{BOT_OPERATOR}.token"

ProgressHook = Callable[[str, str], None]  # (address, outcome)
PlanHook = Callable[[int], None]  # how many steps are coming


# -- policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    address: SecretAddress
    kind: str  # external | generated | none
    catalogued: bool
    version: int
    created: datetime | None
    last_rotation: datetime | None
    initial_value: bool  # the value in use is the one the secret was created with
    rotation_days: int
    warning_days: int
    due: datetime | None
    status: str

    def age(self, as_of: datetime) -> timedelta | None:
        return None if self.last_rotation is None else as_of - self.last_rotation


def assess(
    secret: Secret,
    spec: KeySpec | None,
    as_of: datetime,
    emergency: datetime | None = None,
) -> Assessment:
    """The secret's rotation status at `as_of`; `emergency` as from `emergency_since`."""
    first = min(secret.versions, default=None)
    return assess_value(
        secret.address,
        secret.current_version,
        secret.versions[first].timestamp if first is not None else None,
        secret.last_rotation,
        spec,
        as_of,
        emergency,
    )


def assess_value(
    address: SecretAddress,
    version: int,
    created: datetime | None,
    last: datetime | None,
    spec: KeySpec | None,
    as_of: datetime,
    emergency: datetime | None = None,
) -> Assessment:
    """The rotation status at `as_of` of a secret at `version`, whose first version was
    written at `created` and whose value in use was first written at `last`."""
    kind, days, warning, due, status = spec_status(spec, last, as_of, emergency)
    return Assessment(
        address=address,
        kind=kind,
        catalogued=spec is not None,
        version=version,
        created=created,
        last_rotation=last,
        initial_value=created is not None and last == created,
        rotation_days=days,
        warning_days=warning,
        due=due,
        status=status,
    )


def is_due(assessment: Assessment) -> bool:
    return assessment.status in (EMERGENCY_PENDING, OVERDUE, DUE_SOON)


# -- reports -----------------------------------------------------------------------------------


@dataclass
class BatchReport:
    scope: str
    run_id: str
    resumed: bool = False
    incident_id: str | None = None
    rotated: list[tuple[str, int, str]] = field(default_factory=list)  # address, version, fp12
    needs_value: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # address, why (never a value)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # address, rule broken
    skipped: list[tuple[str, str]] = field(default_factory=list)  # address, why
    unused: list[str] = field(default_factory=list)  # values given for secrets already done
    sessions_closed: int = 0

    @property
    def complete(self) -> bool:
        return not (self.needs_value or self.failed or self.rejected)


@dataclass
class ProvisionReport:
    environment: str
    dry_run: bool
    created: list[tuple[str, int, str]] = field(default_factory=list)  # version 0 in a dry run
    missing: list[str] = field(default_factory=list)  # external/none keys with no value given
    present: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # present but deleted: not recreated
    ignored: list[str] = field(default_factory=list)  # values given for keys already present
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.failed)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    scope: str
    trigger: str
    started: datetime
    ended: datetime | None
    complete: bool
    rotated: int
    needs_value: int
    failed: int

    @classmethod
    def of(cls, run: RotationRun) -> RunSummary:
        return cls(
            run_id=run.id.hex,
            scope=run.scope,
            trigger=run.trigger,
            started=run.created_on,
            ended=run.modified_on if run.batches else None,
            complete=run.complete,
            rotated=len(run.rotated),
            needs_value=len(run.needs_value),
            failed=len(run.failed),
        )


@dataclass(frozen=True)
class ScheduleState:
    installed: bool
    at: str | None
    host: str | None
    changed: datetime | None
    last_run: RunSummary | None


# -- use cases ---------------------------------------------------------------------------------


class Rotator:
    """Rotation use cases over one `SecretsLedger` and one catalogue."""

    def __init__(self, ledger: SecretsLedger, catalogue: Catalogue | None = None) -> None:
        self.ledger = ledger
        self.catalogue = catalogue if catalogue is not None else load_catalogue(None)

    def spec(self, address: SecretAddress) -> KeySpec | None:
        return self.catalogue.lookup(address.service, address.name)

    def kind(self, address: SecretAddress) -> str:
        spec = self.spec(address)
        return spec.rotation if spec is not None else "external"

    # -- reading state ------------------------------------------------------------------

    def live_secrets(self) -> dict[SecretAddress, Secret]:
        """Every secret that has a value and is not deleted, by address."""
        found: dict[SecretAddress, Secret] = {}
        for sid in self.ledger.secret_ids():
            secret = self._get(sid)
            if secret is not None and secret.versions and not secret.deleted:
                found[secret.address] = secret
        return found

    def _get(self, sid: UUID) -> Secret | None:
        # What is due, and what a rotation changes, rests on these: checked loads.
        return self.ledger.load_secret(sid, f"secret {sid}")

    def assessments(self, as_of: datetime | None = None) -> list[Assessment]:
        when = as_of or context.now()
        since = emergency_since(self.ledger, when)
        return [
            assess(s, self.spec(a), when, since) for a, s in sorted(self.live_secrets().items())
        ]

    # -- values -------------------------------------------------------------------------

    def _checked(
        self, cred: Credential, address: SecretAddress, value: str
    ) -> ValidationFailed | None:
        """None if `value` is acceptable for `address`, else why not (and the rejection is
        recorded). The error's message never holds the value."""
        try:
            validate_value(self.spec(address), value, address)
        except ValidationFailed as failed:
            self.ledger.record_rejection(cred, address, failed.rule)
            return failed
        return None

    def compromised(self) -> dict[SecretAddress, int]:
        """Per secret, the newest version the open emergency rotation presumes compromised
        (it and every older one: the values in use or kept when it started); empty when no
        emergency rotation is open."""
        run = self.open_run("emergency")
        if run is None or run.incident_id is None:
            return {}
        return {_parse(a): v for a, v in run.targets.items()}

    def _reused(
        self,
        cred: Credential,
        secret: Secret,
        value: str,
        compromised_through: int | None,
    ) -> ValidationFailed | None:
        """None if `value` is new for `secret`, else why not (and the rejection is recorded)."""
        fingerprint = self.ledger.fingerprint(secret.address, value)
        refused = _reuse(secret, fingerprint, compromised_through)
        if refused is not None:
            self.ledger.record_rejection(cred, secret.address, refused.rule)
        return refused

    def _refuse_identifier(self, address: SecretAddress) -> ValidationFailed:
        return ValidationFailed(
            "rotation-kind",
            f"{address} is an identifier (rotation kind none), not a credential: it is never "
            "rotated; change it with `secrets set` if it really changed",
        )

    def _write(
        self,
        principal: Principal,
        address: SecretAddress,
        value: str,
        reason: str,
        incident_id: str | None = None,
        compromised_through: int | None = None,
        expected: int | None = None,
    ) -> Version:
        def refuse(secret: Secret, fingerprint: str) -> None:
            # Checked again against the secret as the write loads it: another writer may have
            # set this very value since the caller's check.
            refused = _reuse(secret, fingerprint, compromised_through)
            if refused is not None:
                self.ledger.uow.save(
                    Rejection(address.environment, address.service, address.name, refused.rule)
                )
                raise refused

        rotation = reason in ("rotation", "emergency")
        with context.acting_as(principal.operator):
            return self.ledger.secrets.write_version(
                address,
                value,
                reason,
                None,
                incident_id,
                refuse=refuse if rotation else None,
                expected=expected,
            )

    # -- rotate one ---------------------------------------------------------------------

    def check_rotatable(
        self, cred: Credential, address: SecretAddress, expected: int | None = None
    ) -> Principal:
        """The caller, if it may rotate `address` and `address` can be rotated (and is at
        version `expected`, when given); else raise.

        Lets the CLI refuse before prompting for a value that could not be used."""
        principal = self.ledger.authorize(cred, Permission.MANAGE, "rotate", address)
        secret = self.ledger.uow.existing_secret(address)
        secret.expect_version(expected)
        if secret.deleted:
            raise NotFound(f"{address} is deleted (restore it first)")
        if self.kind(address) == "none":
            raise self._refuse_identifier(address)
        return principal

    def rotate(
        self,
        cred: Credential,
        address: SecretAddress,
        value: str | None = None,
        expected: int | None = None,
    ) -> Version:
        """Rotate one secret: a generated value, or `value` (required for external kinds);
        with `expected`, only if its current version is that one (check-and-set)."""
        principal = self.check_rotatable(cred, address, expected)
        spec = self.spec(address)
        kind = self.kind(address)
        through = self.compromised().get(address)
        if value is None:
            if spec is None or kind != "generated":
                raise ValidationFailed(
                    "needs-value",
                    f"{address} is rotated by its provider: give the new value "
                    "(--value-stdin, --value-file or the prompt)",
                )
            value = generate_value(spec)
        else:
            refused = self._checked(cred, address, value) or self._reused(
                cred, self.ledger.uow.existing_secret(address), value, through
            )
            if refused is not None:
                raise refused
        return self._write(principal, address, value, "rotation", None, through, expected)

    # -- runs ---------------------------------------------------------------------------

    def _load(self, aggregate_id: UUID, kind: type[Any], shown: str) -> Any:
        """A run or an incident a rotation decides on (what it rotates, what it resumes),
        folded from chain-checked events, failing closed on damage (exit 6, an alarm
        recorded): an unchained `RotationRun.Started` would otherwise choose the targets."""
        found = self.ledger.uow.load_checked(aggregate_id, f"a rotation on {shown}")
        if not isinstance(found, kind):
            raise IntegrityFailure(
                f"{shown} is missing or recorded as another kind of record: the ledger was "
                "altered or damaged: run `secrets audit verify`"
            )
        return found

    def _load_run(self, run_id: UUID) -> RotationRun:
        found: RotationRun = self._load(run_id, RotationRun, f"rotation run {run_id.hex}")
        return found

    def _runs(self) -> Iterator[RotationRun]:
        for n in notifications(self.ledger.recorder, RotationRun, "Started"):
            yield self._load_run(originator_of(n))

    def open_run(self, scope: str) -> RotationRun | None:
        """The newest run of `scope` if it is unfinished (only the newest can be)."""
        newest: RotationRun | None = None
        for run in self._runs():
            if run.scope == scope:
                newest = run
        return newest if newest is not None and newest.open else None

    def runs(self) -> list[RunSummary]:
        return [RunSummary.of(run) for run in self._runs()]

    def _save_run(self, run: RotationRun, change: Callable[[RotationRun], None]) -> None:
        def attempt() -> None:
            found = self._load_run(run.id)
            change(found)
            self.ledger.uow.save(found)

        self.ledger.uow.retrying(attempt)

    # -- rotate many --------------------------------------------------------------------

    def rotate_batch(
        self,
        cred: Credential,
        scope: str,
        values: Mapping[SecretAddress, str] | None = None,
        *,
        partial: bool = False,
        fresh: bool = False,
        trigger: str = "manual",
        on_progress: ProgressHook | None = None,
        on_plan: PlanHook | None = None,
    ) -> BatchReport:
        """Rotate every due secret (`scope="due"`) or every secret (`scope="all"`).

        Values in `values` are checked first: an unknown address or a value that breaks its
        key's rules stops the batch before anything is written, unless `partial`. A secret
        given a value is rotated even if it is not due. An unfinished `all` run (interrupted,
        or waiting for provider-issued values) is resumed, unless `fresh`.
        """
        if scope not in ("due", "all"):
            raise ValidationFailed("scope", f"unknown rotation scope {scope!r}")
        principal = self.ledger.authorize(cred, Permission.MANAGE, "rotate")
        live = self.live_secrets()
        given = dict(values or {})
        compromised = self.compromised()
        rejected = self._check_values(cred, live, given, partial, compromised)

        run = self.open_run(scope)
        resumed = False
        if run is not None and (fresh or scope == "due"):
            # A due run needs no resuming: whatever it left undone is still due.
            reason = "superseded by a fresh run" if fresh else "superseded"
            self._save_run(run, lambda r: r.abandon(reason))
            run = None
        skipped: list[tuple[str, str]] = []
        if run is not None:
            resumed = True
            targets = {
                a: v
                for a, v in run.targets.items()
                if (s := live.get(_parse(a))) is not None and s.current_version == v
            }
        else:
            now = context.now()
            since = emergency_since(self.ledger, now)
            targets = {}
            for address, secret in sorted(live.items()):
                if self.kind(address) == "none":
                    skipped.append((str(address), "identifier (rotation kind none)"))
                    continue
                if (
                    scope == "all"
                    or address in given
                    or is_due(assess(secret, self.spec(address), now, since))
                ):
                    targets[str(address)] = secret.current_version
            with context.acting_as(principal.operator):
                run = RotationRun(scope, trigger, targets, None)
                self.ledger.uow.save(run)
        report = BatchReport(scope=scope, run_id=run.id.hex, resumed=resumed)
        report.rejected = rejected
        report.skipped = skipped
        report.unused = sorted(str(a) for a in given if str(a) not in targets)
        if on_plan is not None:
            on_plan(len(targets))
        self._rotate_targets(
            principal, run, targets, given, "rotation", None, compromised, report, on_progress
        )
        return report

    def _check_values(
        self,
        cred: Credential,
        live: Mapping[SecretAddress, Secret],
        given: dict[SecretAddress, str],
        partial: bool,
        compromised: Mapping[SecretAddress, int],
    ) -> list[tuple[str, str]]:
        """Drop unusable values from `given`; raise (nothing written) unless `partial`."""
        problems: list[tuple[str, str]] = []
        said: dict[str, str] = {}
        for address in sorted(given):
            if address not in live:
                problems.append((str(address), "unknown-secret"))
            elif self.kind(address) == "none":
                problems.append((str(address), "rotation-kind"))
            else:
                refused = self._checked(cred, address, given[address]) or self._reused(
                    cred, live[address], given[address], compromised.get(address)
                )
                if refused is not None:
                    problems.append((str(address), refused.rule))
                    said[str(address)] = rule_broken(refused, address)
        if problems and not partial:
            listed = "; ".join(f"{a}: {said.get(a, broken)}" for a, broken in problems)
            raise ValidationFailed(
                "values-file",
                f"{len(problems)} value(s) unusable, nothing was written ({listed}); "
                "fix them or pass --partial to rotate the rest",
            )
        for bad, _ in problems:
            given.pop(_parse(bad), None)
        return problems

    def _rotate_targets(
        self,
        principal: Principal,
        run: RotationRun,
        targets: Mapping[str, int],
        given: Mapping[SecretAddress, str],
        reason: str,
        incident_id: str | None,
        compromised: Mapping[SecretAddress, int],
        report: BatchReport,
        on_progress: ProgressHook | None,
    ) -> None:
        try:
            for name in sorted(targets):
                through = compromised.get(_parse(name))
                outcome = self._rotate_target(
                    principal, name, given, reason, incident_id, through, report
                )
                if on_progress is not None:
                    on_progress(name, outcome)
        except BaseException:
            # Interrupted: what was written stays written; note it if the store still answers,
            # and leave the run open for the next invocation to finish.
            with contextlib.suppress(Exception):  # the interruption is what the caller must see
                self._end_batch(run, report, interrupted=True)
            raise
        self._end_batch(run, report, interrupted=False)

    def _rotate_target(
        self,
        principal: Principal,
        name: str,
        given: Mapping[SecretAddress, str],
        reason: str,
        incident_id: str | None,
        compromised_through: int | None,
        report: BatchReport,
    ) -> str:
        address = _parse(name)
        spec = self.spec(address)
        value = given.get(address)
        if value is None and spec is not None and spec.rotation == "generated":
            value = generate_value(spec)
        if value is None:
            report.needs_value.append(name)
            return "needs a provider-issued value"
        try:
            added = self._write(principal, address, value, reason, incident_id, compromised_through)
        except ValidationFailed as refused:
            if refused.rule not in (UNCHANGED_VALUE, COMPROMISED_VALUE):
                raise
            report.rejected.append((name, refused.rule))  # recorded by the write's check
            return "rejected"
        except LedgerError as exc:
            # Domain errors never carry a value; the rest of the batch goes on.
            report.failed.append((name, str(exc)))
            return "failed"
        report.rotated.append((name, added.number, added.short_fingerprint))
        return f"v{added.number} [{added.short_fingerprint}]"

    def _end_batch(self, run: RotationRun, report: BatchReport, *, interrupted: bool) -> None:
        # Done over the whole run (every invocation so far): targets whose version moved on.
        done = []
        for name, started_at in sorted(run.targets.items()):
            secret = self.ledger.uow.load_secret(_parse(name))
            if secret is not None and secret.current_version != started_at:
                done.append(name)
        needs = list(report.needs_value)
        failed = [a for a, _ in report.failed]
        skipped = [a for a, _ in report.skipped]
        complete = not (needs or failed or interrupted)
        self._save_run(run, lambda r: r.end_batch(done, needs, failed, skipped, complete))

    # -- emergency ----------------------------------------------------------------------

    def emergency(
        self,
        cred: Credential,
        reason: str = "",
        values: Mapping[SecretAddress, str] | None = None,
        on_progress: ProgressHook | None = None,
        on_plan: PlanHook | None = None,
    ) -> BatchReport:
        """Rotate everything now under one incident, and end every other operator session.

        Unusable values never stop an emergency: they are reported and the rest goes on. An
        unfinished emergency (interrupted, or waiting for provider-issued values) is resumed
        under the same incident.
        """
        principal = self.ledger.authorize(cred, Permission.MANAGE, "emergency-rotate")
        live = self.live_secrets()
        given = dict(values or {})
        run = self.open_run("emergency")
        # What the incident presumes compromised: every value in use or kept when it started
        # (this one starts now, so every value there is now).
        if run is not None and run.incident_id is not None:
            compromised = {_parse(a): v for a, v in run.targets.items()}
        else:
            compromised = {a: s.current_version for a, s in live.items()}
        rejected = self._check_values(cred, live, given, True, compromised)
        with context.acting_as(principal.operator):
            if run is None or run.incident_id is None:
                incident = Incident(reason or "emergency rotation")
                targets = {
                    str(a): s.current_version
                    for a, s in sorted(live.items())
                    if self.kind(a) != "none"
                }
                run = RotationRun("emergency", "manual", targets, incident.id.hex)
                self.ledger.uow.save(incident, run)
                resumed = False
            else:
                targets = {
                    a: v
                    for a, v in run.targets.items()
                    if (s := live.get(_parse(a))) is not None and s.current_version == v
                }
                resumed = True
        incident_id = run.incident_id
        assert incident_id is not None
        report = BatchReport(
            scope="emergency", run_id=run.id.hex, resumed=resumed, incident_id=incident_id
        )
        report.rejected = rejected
        report.skipped = [
            (str(a), "identifier (rotation kind none)")
            for a in sorted(live)
            if self.kind(a) == "none"
        ]
        report.unused = sorted(str(a) for a in given if str(a) not in targets)
        report.sessions_closed = self.close_other_sessions(principal)
        if on_plan is not None:
            on_plan(len(targets))
        self._rotate_targets(
            principal,
            run,
            targets,
            given,
            "emergency",
            incident_id,
            compromised,
            report,
            on_progress,
        )
        self._complete_incident(principal, UUID(incident_id), run.id, report)
        return report

    def _complete_incident(
        self, principal: Principal, incident_id: UUID, run_id: UUID, report: BatchReport
    ) -> None:
        finished = self._load_run(run_id)
        needs = list(report.needs_value)
        failed = sorted({a for a, _ in report.failed} | {a for a, _ in report.rejected})

        def attempt() -> None:
            incident: Incident = self._load(incident_id, Incident, f"incident {incident_id.hex}")
            # Rotated over the whole incident, across resumed invocations.
            incident.complete(list(finished.rotated), needs, failed)
            self.ledger.uow.save(incident)

        with context.acting_as(principal.operator):
            self.ledger.uow.retrying(attempt)

    def close_other_sessions(self, principal: Principal) -> int:
        """End every open session but the caller's own; return how many were ended."""
        registered = notifications(self.ledger.recorder, Operator, "Registered")
        names = [originator_of(n) for n in registered]
        closed = 0
        for oid in names:

            def attempt(oid: UUID = oid) -> int:
                operator: Any = self.ledger.uow.load_authority(oid)
                assert isinstance(operator, Operator)
                now = context.now()
                # Expired sessions are already useless; ending them would only inflate the count.
                doomed = [
                    sid
                    for sid, session in operator.sessions.items()
                    if sid != principal.session_id and session.expires_at > now
                ]
                for session_id in doomed:
                    operator.close_session(session_id, "emergency")
                if doomed:
                    self.ledger.uow.save(operator)
                return len(doomed)

            with context.acting_as(principal.operator):
                closed += self.ledger.uow.retrying(attempt)
        return closed

    # -- provision ----------------------------------------------------------------------

    def provision(
        self,
        cred: Credential,
        environment: str,
        values: Mapping[SecretAddress, str] | None = None,
        *,
        dry_run: bool = False,
        on_progress: ProgressHook | None = None,
        on_plan: PlanHook | None = None,
    ) -> ProvisionReport:
        """Create every catalogue key missing in `environment` (reason `provision`).

        Generated kinds are generated; external and identifier kinds come from `values` or
        are reported missing. Idempotent: present keys are left alone. Any unusable value
        stops it before anything is written. A dry run writes nothing, not even rejections.
        """
        validate_environment(environment)
        principal = self.ledger.authorize(cred, Permission.MANAGE, "provision")
        given = dict(values or {})
        report = ProvisionReport(environment=environment, dry_run=dry_run)
        wanted = {SecretAddress(environment, s.service, s.name): s for s in self.catalogue}
        problems: list[tuple[str, str]] = []
        for address in sorted(given):
            spec = wanted.get(address)
            if spec is None:
                why = "not-in-catalogue" if address.environment == environment else "environment"
                problems.append((str(address), why))
                continue
            try:
                validate_value(spec, given[address], address)
            except ValidationFailed as failed:
                if not dry_run:
                    self.ledger.record_rejection(cred, address, failed.rule)
                problems.append((str(address), rule_broken(failed, address)))
        if problems:
            listed = "; ".join(f"{a}: {rule}" for a, rule in problems)
            raise ValidationFailed(
                "values-file",
                f"{len(problems)} value(s) unusable, nothing was written ({listed})",
            )
        if on_plan is not None:
            on_plan(len(wanted))
        for address, spec in wanted.items():
            existing = self.ledger.uow.load_secret(address)
            name = str(address)
            if existing is not None and existing.versions:
                (report.deleted if existing.deleted else report.present).append(name)
                if address in given:
                    report.ignored.append(name)
                if on_progress is not None:
                    on_progress(name, "deleted" if existing.deleted else "present")
                continue
            value = given.get(address)
            if value is None and spec.rotation == "generated":
                value = generate_value(spec)
            if value is None:
                report.missing.append(name)
                outcome = "missing"
            elif dry_run:
                report.created.append((name, 0, ""))
                outcome = "would be created"
            else:
                try:
                    added = self._write(principal, address, value, "provision")
                except LedgerError as exc:
                    report.failed.append((name, str(exc)))
                    outcome = "failed"
                else:
                    report.created.append((name, added.number, added.short_fingerprint))
                    outcome = f"v{added.number} [{added.short_fingerprint}]"
            if on_progress is not None:
                on_progress(name, outcome)
        return report

    # -- schedule -----------------------------------------------------------------------

    def record_schedule(self, cred: Credential, action: str, at: str | None, entry: str) -> None:
        principal = self.ledger.authorize(cred, Permission.MANAGE, f"schedule-{action}")
        with context.acting_as(principal.operator):
            self.ledger.uow.save(ScheduleChange(action, at, self.ledger.host, entry))

    def enlist_bot(self, cred: Credential) -> None:
        """Create (or re-key) the rotation-bot as a senior-engineer; keep its token in the
        ledger's keychain namespace, where only this user's keychain session can read it."""
        issued = self.ledger.grant(cred, BOT_OPERATOR, SENIOR)
        self.ledger.vault.put(BOT_TOKEN_ENTRY, issued.token)

    def retire_bot(self, cred: Credential) -> bool:
        """Revoke the rotation-bot and forget its token; False if it was not active."""
        active = True
        try:
            self.ledger.revoke(cred, BOT_OPERATOR)
        except NotFound:
            active = False
        self.ledger.vault.delete(BOT_TOKEN_ENTRY)
        return active

    def bot_ready(self) -> bool:
        return self.ledger.vault.get(BOT_TOKEN_ENTRY) is not None

    def schedule_state(self) -> ScheduleState:
        changes = deque(notifications(self.ledger.recorder, ScheduleChange, "ScheduleChanged"), 1)
        newest: Any = (
            checked_event(self.ledger, changes[0], "the rotation schedule") if changes else None
        )
        scheduled = [r for r in self.runs() if r.trigger == "schedule"]
        last = scheduled[-1] if scheduled else None
        if newest is None:
            return ScheduleState(False, None, None, None, last)
        installed = newest.action == "installed"
        return ScheduleState(installed, newest.at, newest.host, newest.timestamp, last)


def _reuse(
    secret: Secret, fingerprint: str, compromised_through: int | None
) -> ValidationFailed | None:
    """Why a rotation of `secret` to the value of `fingerprint` is no rotation, or None."""
    current = secret.current
    if current is not None and current.fingerprint == fingerprint:
        return ValidationFailed(
            UNCHANGED_VALUE,
            f"{secret.address}: the new value is the one in use (v{current.number}); a rotation "
            f"must change it (rule {UNCHANGED_VALUE})",
        )
    if compromised_through is not None:
        for version in secret.versions.values():
            if version.number <= compromised_through and version.fingerprint == fingerprint:
                return ValidationFailed(
                    COMPROMISED_VALUE,
                    f"{secret.address}: the new value is v{version.number}'s, which the open "
                    "emergency rotation presumes compromised; give a value it has not seen "
                    f"(rule {COMPROMISED_VALUE})",
                )
    return None


def rule_broken(failed: ValidationFailed, address: SecretAddress) -> str:
    """The rule's name and what it asks, as `set` says it (`github_token: the value needs at
    least 36 characters after the prefix`); never the value, which no message holds."""
    message = str(failed).removeprefix(f"{address}: ")
    return f"{failed.rule}: {message}" if message and message != failed.rule else failed.rule


def _parse(name: str) -> SecretAddress:
    environment, service, key = name.split("/", 2)
    return SecretAddress(environment, service, key)


def parse_address(text: str) -> SecretAddress:
    """`env/service/name` as a validated address (ValidationFailed otherwise)."""
    parts = text.split("/")
    if len(parts) != 3:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ValidationFailed(
            "address", f"{shown!r} is not an address of the form environment/service/name"
        )
    return SecretAddress.parse(*parts)


# The policy names are defined in ledger/rotation/policy.py and re-exported from here.
__all__ = [
    "BOT_OPERATOR",
    "BOT_TOKEN_ENTRY",
    "COMPROMISED_VALUE",
    "DEFAULT_ROTATION_DAYS",
    "DEFAULT_WARNING_DAYS",
    "DUE_SOON",
    "EMERGENCY_PENDING",
    "EXEMPT",
    "NEVER_ROTATED",
    "NON_COMPLIANT",
    "OK",
    "OVERDUE",
    "STATUSES",
    "UNCHANGED_VALUE",
    "Assessment",
    "BatchReport",
    "ProvisionReport",
    "Rotator",
    "RunSummary",
    "ScheduleState",
    "assess",
    "assess_value",
    "emergency_since",
    "is_due",
    "parse_address",
    "policy_status",
    "spec_status",
]
