"""The unit of work every use case is made of: load, authorise, stamp, save, retry.

A use case reads as get, command, save (the `eventsourcing` library's own examples, with
cosmicpython's unit of work around them):

    principal = uow.authorize(cred, Permission.MANAGE, "delete", address)   # authorise

    def attempt() -> None:
        secret = uow.existing_secret(address)    # load, each event checked against the chain
        secret.delete()                          # command
        uow.save(secret)                         # save: IntegrityError when a race is lost

    with uow.stamp(principal):                   # every event names who did it
        uow.retrying(attempt)                    # reload and retry on a lost race

The services in ledger/services/ and the jobs beside them (rotation.py, checkpoint_writer.py,
doctor.py, snapshot_check.py) use only these operations; the write of a secret's value under
the pending-write journal is `SecretsService.write_version` (ledger/services/secrets.py).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, PersistenceError, Recording, StoredEvent

from ledger import context
from ledger.access import tokens
from ledger.access.credentials import Credential, Principal
from ledger.access.policy import REQUIRED_ROLE, Permission, allows
from ledger.errors import (
    ConflictUnresolved,
    IntegrityFailure,
    LedgerError,
    LedgerUnavailable,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from ledger.operator import Operator, operator_id, validate_operator_name
from ledger.secret import Secret

if TYPE_CHECKING:
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger
    from ledger.store.chain import ChainFault, CheckpointedRecorder, StoredRow

T = TypeVar("T")

MAX_ATTEMPTS = 60
MAX_RETRY_SECONDS = 30.0

# What an unauthenticated caller can make the ledger store in a denial, and print: a name
# taken from a token or session file is escaped and cut (docs/security.md).
MAX_SHOWN_NAME = 80
MAX_REASON = 300


def bounded(text: str, limit: int) -> str:
    """`text` escaped (`unicode_escape`: no control character, no lone surrogate) and cut
    to about `limit` characters, marked with "..." when cut."""
    from ledger.records import escaped

    shown = escaped(text[: limit + 1], limit + 1)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def shown_name(name: str) -> str:
    """An operator name as a message or a stored reason may show it: quoted, escaped, cut."""
    return f"'{bounded(name, MAX_SHOWN_NAME)}'"


def _unusable_credential(cred: Credential) -> str:
    """Why a credential cannot even be looked up ("" if it can): text that is not UTF-8
    (undecodable bytes in the token variable or session file, or a lone surrogate escaped
    in its JSON) would fail in hashing, not as a refusal; an operator name that breaks the
    name rule can name no operator."""
    for text in (cred.token, cred.operator, cred.session_id, cred.session_secret):
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "credential is not valid UTF-8 text"
    name = cred.operator
    if cred.token:
        parsed = tokens.parse(cred.token)
        name = parsed[0] if parsed else None
    if name is not None:
        try:
            validate_operator_name(name)
        except ValidationFailed:
            return f"credential names no valid operator ({shown_name(name)})"
    return ""


class UnitOfWork:
    """Load, authorise, stamp, save and retry against one `SecretsLedger`'s store."""

    def __init__(self, app: SecretsLedger) -> None:
        self.app = app
        self._authority_repository: Any = None
        self._checkpointing = False

    # -- load: what a decision rests on, each event checked against its chain link --------

    def load_authority(self, aggregate_id: UUID) -> Any:
        """An aggregate a decision rests on (an operator, the settings, a secret), each event
        folded checked against the hash chain and decoded, or `DamagedHistory` naming the
        position (ledger/access/authority.py). AggregateNotFoundError as the repository's."""
        from ledger.access import authority

        if self._authority_repository is None:
            app = self.app
            if isinstance(app.recorder, authority.LinkedRecorder):
                self._authority_repository = authority.checked_repository(app.repository)
            else:  # a store with no chain (none of this project's): nothing to check against
                self._authority_repository = app.repository
        repository = self._authority_repository
        seen = self.app.seen_heads
        if seen is None:
            return authority.load(repository, aggregate_id)
        # This host's witness of the heads it has seen (ledger/integrity/seen_heads.py): a store
        # that
        # holds less of the aggregate than was seen here is refused.
        store = repository.event_store
        return seen.load(
            aggregate_id,
            lambda: authority.load(repository, aggregate_id),
            self.app.holds_events,
            store.read_rows if isinstance(store, authority.CheckedEventStore) else None,
        )

    def load_checked(self, aggregate_id: UUID, action: str) -> Any:
        """`load_authority`, failing closed on damage (exit 6, an alarm recorded for
        `action`); None when the aggregate does not exist."""
        with self.failing_closed(action):
            try:
                return self.load_authority(aggregate_id)
            except AggregateNotFoundError:
                return None

    def load_secret_by_id(self, secret_id: UUID, shown: str) -> Secret | None:
        """A secret a decision rests on (a read, a change, a prune): folded like an authority
        (each event after the sealed snapshot it starts from checked against its chain link,
        ledger/access/authority.py), failing closed on damage (exit 6, an alarm recorded). A
        `VersionPruned` inserted without its link would otherwise answer "pruned"."""
        found = self.load_checked(secret_id, f"a decision on {shown}")
        if found is not None and not isinstance(found, Secret):
            raise IntegrityFailure(
                f"{shown} is recorded as another kind of record: the ledger was altered or "
                "damaged: run `secrets audit verify`"
            )
        return found

    def load_secret(self, address: SecretAddress) -> Secret | None:
        """The secret at `address` as its checked events make it, None if never written."""
        return self.load_secret_by_id(address.id, str(address))

    def existing_secret(self, address: SecretAddress) -> Secret:
        """The secret at `address`; NotFound if it has no version."""
        found = self.load_secret(address)
        if found is None or not found.versions:
            raise NotFound(f"no secret {address}")
        return found

    def load_operator(self, name: str) -> Operator | None:
        try:
            found: Any = self.load_authority(operator_id(name))
        except AggregateNotFoundError:
            return None
        if not isinstance(found, Operator):
            raise IntegrityFailure(
                f"operator {name!r} is recorded as another kind of record: the ledger was "
                "altered or damaged: run `secrets audit verify`"
            )
        return found

    # -- authorise ----------------------------------------------------------------------

    def authorize(
        self,
        cred: Credential,
        permission: Permission,
        action: str,
        address: SecretAddress | None = None,
    ) -> Principal:
        """The proven caller, if allowed; otherwise record the denial and raise."""
        with self.failing_closed(action):
            _ = self.app.settings  # an uninitialised ledger is "not initialised", not "denied"
        principal, actor, reason = self.identify(cred, action)
        if principal is not None and not allows(principal.role, permission):
            reason = f"role {principal.role} may not {action}"
        elif principal is not None:
            return principal
        self.record_denial(actor, action, reason, address)
        required = REQUIRED_ROLE[permission]
        why = f" ({reason})" if principal is None else ""
        raise PermissionDenied(f"PERMISSION_DENIED: {action} requires {required}{why}")

    def identify(
        self, cred: Credential, action: str = "a command"
    ) -> tuple[Principal | None, str, str]:
        """(principal, actor for the record, reason) — principal None when unproven."""
        with self.failing_closed(action):
            return self._identify_unchecked(cred)

    def _identify_unchecked(self, cred: Credential) -> tuple[Principal | None, str, str]:
        if cred.problem:
            return None, context.ANONYMOUS, bounded(cred.problem, MAX_REASON)
        unusable = _unusable_credential(cred)
        if unusable:
            return None, context.ANONYMOUS, unusable
        if cred.token:
            parsed = tokens.parse(cred.token)
            if parsed is None:
                return None, context.ANONYMOUS, "malformed token"
            name, secret_part = parsed
            operator = self.load_operator(name)
            if operator is None or not operator.token_matches(tokens.digest(secret_part)):
                return None, context.ANONYMOUS, f"invalid token for operator {shown_name(name)}"
            if operator.role is None:
                return None, context.ANONYMOUS, f"operator {shown_name(name)} is revoked"
            return Principal(name, operator.role, None, None), name, ""
        if cred.operator and cred.session_id and cred.session_secret:
            operator = self.load_operator(cred.operator)
            session = (
                operator.valid_session(
                    cred.session_id, tokens.digest(cred.session_secret), context.now()
                )
                if operator is not None
                else None
            )
            if operator is None or session is None or operator.role is None:
                return (
                    None,
                    context.ANONYMOUS,
                    (
                        f"no valid session for {shown_name(cred.operator)} (expired, closed or "
                        "revoked); run `secrets auth login`"
                    ),
                )
            principal = Principal(
                cred.operator, operator.role, session.session_id, session.expires_at
            )
            return principal, cred.operator, ""
        return None, context.ANONYMOUS, "no operator session; run `secrets auth login`"

    def record_denial(
        self, operator: str, action: str, reason: str, address: SecretAddress | None = None
    ) -> None:
        """Record a refused action (HBSE-006) before the command fails."""
        from ledger.records import Denial

        with context.acting_as(operator):
            denial = Denial(
                action,
                reason,
                address.environment if address else None,
                address.service if address else None,
                address.name if address else None,
            )
            self.save(denial)

    @contextlib.contextmanager
    def failing_closed(self, action: str) -> Iterator[None]:
        """Damaged history read for a decision ends the command (exit 6), recorded as an
        integrity alarm where the ledger can still record one."""
        from ledger.access.authority import DamagedHistory
        from ledger.store.chain import ChainFault

        try:
            yield
        except DamagedHistory as damage:
            fault = ChainFault(
                damage.position, damage.kind, f"{damage.detail}, read to authorise {action}"
            )
            with context.acting_as(context.ANONYMOUS):  # nobody could be proven
                damage.recorded = self.record_alarm(fault)
            raise

    def record_alarm(self, fault: ChainFault) -> bool:
        """Record an integrity alarm (HBSE-013); False where the ledger cannot take one."""
        from ledger.records import IntegrityAlarm

        try:
            self.save(IntegrityAlarm(fault.position, fault.kind, fault.detail))
        except (LedgerError, PersistenceError):
            return False  # a ledger too damaged to append to still gets its report
        return True

    # -- stamp --------------------------------------------------------------------------

    @staticmethod
    def stamp(principal: Principal) -> contextlib.AbstractContextManager[None]:
        """Events created inside name `principal` as their operator."""
        return context.acting_as(principal.operator)

    # -- save and retry -----------------------------------------------------------------

    def save(self, *aggregates: Any) -> list[Recording[UUID]]:
        """Append the aggregates' pending events in one transaction. IntegrityError (a lost
        race) passes through for `retrying`; any other store failure is a LedgerError."""
        app = self.app
        try:
            return app.save(*aggregates)
        except IntegrityError:
            raise
        except PersistenceError as exc:
            if "lock timeout" in str(exc):
                raise  # PostgreSQL: worded in commands/main.py, as for a read
            if "locked" in str(exc) or "busy" in str(exc):
                waited = app.env.get("SQLITE_LOCK_TIMEOUT") or "?"
                raise LedgerUnavailable(
                    f"the ledger at {app.home} is locked by another writer (waited {waited} s); "
                    "nothing was written, try again"
                ) from None
            from ledger.store.sqlite_file import storage_failure

            failed = storage_failure(exc, app.home)
            if failed is not None:
                raise failed from None
            raise LedgerUnavailable(f"the event store refused the write: {exc}") from None

    def retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt` (load, command, save) until it saves without losing a race to
        another writer; ConflictUnresolved after MAX_ATTEMPTS tries or MAX_RETRY_SECONDS."""
        deadline = time.monotonic() + MAX_RETRY_SECONDS
        for n in range(MAX_ATTEMPTS):
            try:
                return attempt()
            except IntegrityError:
                if time.monotonic() > deadline:
                    break
                # Full jitter, growing: two writers in lock-step would otherwise collide again.
                time.sleep(random.uniform(0, min(0.25, 0.002 * 2**n)))  # noqa: S311
        raise ConflictUnresolved(
            f"another writer kept changing the same secret; gave up after {MAX_ATTEMPTS} tries"
        )

    # -- the chain, and the checkpoint hook ---------------------------------------------

    def chained_recorder(self) -> CheckpointedRecorder:
        """The store's recorder with its hash chain; LedgerUnavailable for a store without."""
        from ledger.store.chain import CheckpointedRecorder

        recorder = self.app.recorder
        if not isinstance(recorder, CheckpointedRecorder):
            raise LedgerUnavailable("this event store keeps no hash chain to verify")
        return recorder

    def decode_row(self, row: StoredRow) -> dict[str, Any]:
        """A stored row's event as a dict, decoded through the allow-list mapper."""
        oid = row.originator_id
        stored = StoredEvent(
            UUID(oid) if isinstance(oid, str) else oid, row.originator_version, row.topic, row.state
        )
        return dict(vars(self.app.mapper.to_domain_event(stored)))

    @property
    def checkpointing(self) -> bool:
        """Whether a checkpoint is being saved (its save must not start another)."""
        return self._checkpointing

    @contextlib.contextmanager
    def saving_checkpoint(self) -> Iterator[None]:
        """Saves inside are a checkpoint's own: they trigger no automatic checkpoint."""
        self._checkpointing = True
        try:
            yield
        finally:
            self._checkpointing = False
