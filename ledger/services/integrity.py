"""Integrity: signed checkpoints, verification of the chain and the snapshots, alarms, and
`doctor` (keychain against ledger). The chain and its checks are ledger/store/chain.py and
ledger/integrity/verify.py; signing is ledger/integrity/checkpoint_writer.py; this module is the
use cases."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger import context
from ledger.access.credentials import Credential, Principal
from ledger.access.policy import Permission
from ledger.errors import IntegrityFailure

if TYPE_CHECKING:
    from ledger.access.authority import DamagedHistory
    from ledger.application import SecretsLedger
    from ledger.checkpoint import SignedHead, Witness
    from ledger.integrity.doctor import DoctorReport
    from ledger.integrity.verify import IntegrityReport
    from ledger.store.chain import ChainFault, RowCheck
    from ledger.unit_of_work import UnitOfWork


class IntegrityService:
    def __init__(self, app: SecretsLedger, uow: UnitOfWork) -> None:
        self.app = app
        self.uow = uow

    # -- checkpoints --------------------------------------------------------------------

    def latest_checkpoint(self) -> tuple[int, SignedHead] | None:
        """The newest checkpoint in the log: (its position, what it signed)."""
        from ledger.integrity import checkpoint_writer

        return checkpoint_writer.latest(self.app)

    def write_checkpoint(self) -> tuple[int, SignedHead]:
        """Sign the current chain head (ledger/integrity/checkpoint_writer.py); returns the
        checkpoint's position and content."""
        from ledger.integrity import checkpoint_writer

        return checkpoint_writer.write(self.app)

    def auto_checkpoint(self) -> None:
        """The checkpoint a save that crossed a multiple of the interval writes."""
        try:
            with context.acting_as(context.SYSTEM):
                self.write_checkpoint()
        except Exception as exc:
            # This runs inside the save of someone's write: an error escaping from here would
            # make that write remove its value although its event is recorded. A missing
            # keychain or a refused signature only means no checkpoint this time; the next
            # multiple of the interval tries again and `audit checkpoint` can be run by hand.
            self.app.post_commit_problems.append(
                f"automatic checkpoint skipped ({type(exc).__name__}); "
                "run `secrets audit checkpoint` when the keychain is back"
            )

    def checkpoint(
        self, cred: Credential, reset_witness: bool, action: str
    ) -> tuple[int, SignedHead]:
        """Sign the head now. `reset_witness` (senior-engineer) makes the keychain's note
        follow this checkpoint even if it had seen a longer log: after restoring a backup the
        shorter log is legitimate, and without a reset every verify would report it truncated.
        The reset itself is recorded as an integrity alarm, so it cannot pass unnoticed.
        `action` names the command a refusal is recorded (and reported) for."""
        from ledger.integrity import checkpoint_writer

        uow = self.uow
        if not reset_witness:
            principal = uow.authorize(cred, Permission.AUDIT, action)
            with uow.stamp(principal):
                return self.write_checkpoint()
        # A restored (older) log is what this host's seen heads refuse: authorising the
        # reset must not read them, and a successful reset forgets them
        # (ledger/integrity/seen_heads.py).
        seen = self.app.seen_heads
        if seen is not None:
            seen.suspended = True
        try:
            principal = uow.authorize(cred, Permission.ADMIN, "audit checkpoint --reset-witness")
        finally:
            if seen is not None:
                seen.suspended = False
        with uow.stamp(principal):
            known = self.keychain_witness()
            overruled = seen.forget() if seen is not None else []
            at, signed = self.write_checkpoint()
            if overruled:
                from ledger.records import IntegrityAlarm

                detail = (
                    f"this host's seen heads forgotten by {principal.operator}; the log held "
                    f"less than seen of {len(overruled)} (first: {overruled[0]})"
                )
                uow.save(IntegrityAlarm(at, "seen-heads-reset", detail))
            if known is not None and known.position >= at:
                from ledger.records import IntegrityAlarm

                detail = (
                    f"keychain checkpoint note reset from position {known.position} to {at} "
                    f"by {principal.operator}"
                )
                uow.save(IntegrityAlarm(at, "witness-reset", detail))
            checkpoint_writer.note(self.app, at, signed)
        return at, signed

    def checkpoint_public_key(self, cred: Credential) -> str:
        """The checkpoint public key (hex): as recorded in the log, else this keychain's."""
        from ledger.checkpoint import public_key_of
        from ledger.integrity import checkpoint_writer

        self.uow.authorize(cred, Permission.AUDIT, "audit pubkey")
        latest = self.latest_checkpoint()
        if latest is not None:
            return latest[1].public_key
        return public_key_of(checkpoint_writer.signing_key(self.app, None))

    def keychain_witness(self) -> Witness | None:
        from ledger.integrity import checkpoint_writer

        return checkpoint_writer.keychain_witness(self.app)

    # -- verification -------------------------------------------------------------------

    def undecodable(
        self, position: int, originator_id: Any, version: Any, topic: Any, state: Any
    ) -> ChainFault | None:
        """Why a stored event (whose chain link holds) is still damage: it does not decode
        through the allow-list mapper, as every load would decode it. None when it does."""
        try:
            oid = UUID(originator_id) if isinstance(originator_id, str) else originator_id
            self.app.mapper.to_domain_event(StoredEvent(oid, version, topic, bytes(state)))
        except Exception as exc:
            from ledger.store.chain import ChainFault

            # Not the mapper's message: it may quote stored bytes.
            return ChainFault(
                position, "undecodable", f"the event cannot be decoded ({type(exc).__name__})"
            )
        return None

    def verify_history(
        self,
        pinned_key: str | None,
        witnesses: list[Witness] | None,
        *,
        fast: bool,
        decodes: RowCheck | None,
        pinned_by: str,
    ) -> IntegrityReport:
        """`fast=False` walks every event carefully (the fast pass hands over to that walk
        at the first fault anyway: the report is the same, which the tests check).
        `decodes` says whether each event decodes (default: through the mapper; the CLI
        passes projections/event_reader.py's check, the same answer faster)."""
        from ledger.integrity.verify import verify_history
        from ledger.store.chain import JoinedRecorder

        recorder = self.uow.chained_recorder()
        joined = recorder.iter_joined if fast and isinstance(recorder, JoinedRecorder) else None
        return verify_history(
            recorder.iter_rows,
            recorder.iter_links,
            joined=joined,
            rescan=recorder.iter_links,
            link_at=recorder.link_at,
            row_at=recorder.row_at,
            decode=self.uow.decode_row,
            decodes=decodes or self.undecodable,
            pinned_key=pinned_key,
            pinned_by=pinned_by,
            witnesses=witnesses or [],
            consecutive_ids=getattr(recorder, "consecutive_ids", False),
        )

    def audit_verify(
        self,
        cred: Credential,
        pinned_key: str | None,
        witnesses: list[Witness] | None,
        decodes: RowCheck | None,
    ) -> tuple[IntegrityReport, bool]:
        """Verify, and record an alarm on a fault. Returns (report, alarm recorded).

        Damaged history read while authorising does not stop the verification: it is the
        tool for that damage, read-only, and reports only integrity facts. The alarm of the
        damage is recorded (`UnitOfWork.failing_closed`), the report follows, and it is a
        fault."""
        from ledger.access.authority import DamagedHistory

        damage: DamagedHistory | None = None
        principal: Principal | None = None
        try:
            principal = self.uow.authorize(cred, Permission.AUDIT, "audit verify")
        except DamagedHistory as found_damage:
            damage = found_damage
        self.app.check_pages()
        found, pinned_key, pinned_by = self._witnessed(witnesses, pinned_key)
        report = self.verify_history(
            pinned_key, found, fast=True, decodes=decodes, pinned_by=pinned_by
        )
        if report.fault is None:
            report = self.with_snapshot_check(report)
        return self._alarmed(report, damage, principal)

    def _witnessed(
        self, witnesses: list[Witness] | None, pinned_key: str | None
    ) -> tuple[list[Witness], str | None, str]:
        """The witnesses to check the log against (with this keychain's note of the newest
        checkpoint), the public key to pin, and what pins it."""
        from ledger.access.authority import DamagedHistory

        found = [*(witnesses or [])]
        try:
            keychain = self.keychain_witness()
        except DamagedHistory:
            keychain = None  # the settings naming the keychain are the damage reported
        pinned_by = "the pinned public key"
        if keychain is not None:
            found.append(keychain)
            if pinned_key is None:
                # This keychain signed checkpoints of this ledger: its key is the ledger's, so
                # a log re-signed under another key (every checkpoint forged anew) is found
                # here rather than believed from the first checkpoint it shows.
                from ledger.integrity import checkpoint_writer

                pinned_key = checkpoint_writer.keychain_public_key(self.app)
                pinned_by = "this keychain's checkpoint key"
        return found, pinned_key, pinned_by

    def _alarmed(
        self, report: IntegrityReport, damage: DamagedHistory | None, principal: Principal | None
    ) -> tuple[IntegrityReport, bool]:
        """The report, with the damage authorising read if the chain itself holds, and
        whether an alarm of its fault is recorded (one fault, one alarm)."""
        if report.fault is None and damage is not None:
            # The chain holds (the bytes are the ones written) yet they cannot be used:
            # still damage, and the report must say so.
            from ledger.store.chain import ChainFault

            fault = ChainFault(damage.position, damage.kind, damage.detail)
            return replace(report, fault=fault), damage.recorded
        recorded = False
        if report.fault is not None:
            if damage is not None and damage.recorded and damage.position == report.fault.position:
                # Authorising already read this damage and recorded its alarm: one fault, one
                # alarm (the metrics and the alert count them).
                return report, True
            actor = principal.operator if principal is not None else context.ANONYMOUS
            with context.acting_as(actor):
                recorded = self.uow.record_alarm(report.fault)
        return report, recorded

    def with_snapshot_check(self, report: IntegrityReport) -> IntegrityReport:
        """Snapshots are outside the chain, yet loads start from them: fold and compare."""
        from ledger.integrity.snapshot_check import verify_snapshots
        from ledger.store.chain import ChainFault

        checked = verify_snapshots(self.app)
        fault = None
        if checked.faults:
            first = checked.faults[0]
            try:
                at = self.uow.chained_recorder().position_of(
                    UUID(first.originator_id), first.version
                )
            except (ValueError, TypeError):  # a forged row that names no aggregate
                at = None
            fault = ChainFault(
                at or 0,
                "snapshot",
                f"the snapshot of {first.originator_id} at version {first.version}: "
                f"{first.detail} ({len(checked.faults)} bad snapshot(s) in all; "
                "`secrets doctor --repair` drops them)",
            )
        return replace(
            report,
            snapshots_checked=checked.checked,
            snapshots_valid=checked.checked - len(checked.faults),
            fault=fault,
        )

    # -- doctor -------------------------------------------------------------------------

    def doctor(self, cred: Credential, repair: bool) -> DoctorReport:
        """Keychain against ledger on this host (ledger/integrity/doctor.py); senior-engineer
        only."""
        from ledger.integrity.doctor import examine

        self.uow.authorize(cred, Permission.MANAGE, "doctor")
        if repair:
            self._verified_before_repair()
        return examine(self.app, repair)

    def _verified_before_repair(self) -> None:
        """A repair deletes keychain entries on the word of the log: a log that does not
        verify (an event inserted without its link, rows hidden for the length of the repair)
        could make it delete values that are still recorded. Nothing is repaired then."""
        found = []
        keychain = self.keychain_witness()
        if keychain is not None:
            found.append(keychain)
        fault = self.verify_history(
            None, found, fast=True, decodes=None, pinned_by="the pinned public key"
        ).fault
        if fault is not None:
            raise IntegrityFailure(
                f"the recorded history does not verify ({fault.kind} at position "
                f"{fault.position}): `doctor --repair` removes nothing on the word of a log "
                "it cannot trust; run `secrets audit verify`"
            )
