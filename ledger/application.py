"""The `SecretsLedger` application: every use case, authorised, recorded, retried.

Order of a write: authorise; write the value to the vault under a journaled intent; append the
events; on a lost race reload and retry with jittered backoff; on any failure remove the value
again. Values never reach the event store, only their keyed fingerprints.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import random
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    PersistenceError,
    Recording,
    StoredEvent,
)

from ledger import context, crashpoints, tokens
from ledger.address import SecretAddress
from ledger.checkpoint_names import DEFAULT_INTERVAL
from ledger.credentials import Credential, Principal
from ledger.entries import entry_name
from ledger.errors import (
    ConflictUnresolved,
    IntegrityFailure,
    KeychainUnavailable,
    LedgerError,
    LedgerUnavailable,
    NotFound,
    NotInitialized,
    PermissionDenied,
    ValidationFailed,
)
from ledger.notifications import notifications, originator_of
from ledger.operator import Operator, check_role, operator_id, validate_operator_name
from ledger.policy import REQUIRED_ROLE, SENIOR, Permission, allows
from ledger.secret import Secret, Version
from ledger.settings import (
    DEFAULT_RETENTION,
    KEYCHAIN,
    SETTINGS_ID,
    VAULT_KINDS,
    LedgerSettings,
)
from ledger.vault.intents import Intent, IntentJournal
from ledger.vault.keyring_vault import KeyringVault, open_vault

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from ledger.chain import ChainFault, CheckpointedRecorder, RowCheck, StoredRow
    from ledger.checkpoint import SignedHead, Witness
    from ledger.doctor import DoctorReport
    from ledger.integrity import IntegrityReport
    from ledger.vault.port import ValueVault

T = TypeVar("T")

FINGERPRINT_KEY_ENTRY = "ledger.fingerprint-key"
KEY_EXPORT_PREFIX = "slk1"
DEFAULT_SESSION_TTL = timedelta(hours=8)
MAX_ATTEMPTS = 60
MAX_RETRY_SECONDS = 30.0


# What an unauthenticated caller can make the ledger store in a denial, and print: a name
# taken from a token or session file is escaped and cut (docs/security.md).
MAX_SHOWN_NAME = 80
MAX_REASON = 300


def _bounded(text: str, limit: int) -> str:
    """`text` escaped (`unicode_escape`: no control character, no lone surrogate) and cut
    to about `limit` characters, marked with "..." when cut."""
    from ledger.records import escaped

    shown = escaped(text[: limit + 1], limit + 1)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _shown(name: str) -> str:
    return f"'{_bounded(name, MAX_SHOWN_NAME)}'"


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
            return f"credential names no valid operator ({_shown(name)})"
    return ""


@dataclass(frozen=True)
class OpenedSession:
    operator: str
    role: str
    session_id: str
    session_secret: str
    expires_at: datetime


class SecretsLedger(Application[UUID]):
    name = "SecretsLedger"
    # Only secrets: a snapshot is written and used only where the command has the keychain
    # open (it is sealed under a keychain key), and authorising happens before that; an
    # operator's events (grants, tokens, sessions) are few enough to fold on every load.
    snapshotting_intervals = {Secret: 50}  # noqa: RUF012  (library API)
    # Where the event store is, for messages ("" = the SQLite file in `home`), and the name of
    # this host's read-model cache in `home` (one per store: see ledger/config_postgres.py).
    location = ""
    views_file = "views.sqlite"

    def __init__(
        self,
        env: dict[str, str],
        home: Path,
        backend: KeyringBackend | Callable[[], KeyringBackend] | None = None,
    ) -> None:
        # Read by the snapshot store, which the library's __init__ builds.
        self._seal_key: bytes | None = None
        self._seal_key_state = "unread"  # "reading" while looked up, "missing" if none
        self._replay_key: bytes | None = None
        super().__init__(env=env)
        self.home = home
        self.host = socket.gethostname()
        self._backend = backend
        self._vault: ValueVault | None = None
        self._settings: LedgerSettings | None = None
        self._fp_key: bytes | None = None
        self.intents = IntentJournal(home / "pending")
        # Things the caller should tell the operator (the ledger itself never prints).
        self.warnings: list[str] = []
        self.checkpoint_every = DEFAULT_INTERVAL  # 0 turns automatic checkpoints off
        self._checkpointing = False
        # Work after a commit that failed without undoing it (a snapshot, an automatic
        # checkpoint): the command succeeded; the edge reports these as warnings.
        self.post_commit_problems: list[str] = []
        self._authority_repository: Any = None

    def construct_mapper(self) -> Mapper[UUID]:
        from ledger.decoding import AllowListMapper

        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=AllowListMapper
        )

    def construct_snapshot_store(self) -> EventStore[UUID]:
        from ledger.decoding import SealedSnapshotStore

        return SealedSnapshotStore(
            mapper=self.mapper,
            recorder=self.factory.aggregate_recorder(purpose="snapshots"),
            key=self.snapshot_seal_key,
            link_of=self.event_link,
            ignored=self._snapshot_ignored,
            # The settings are never snapshotted, and are what finding the key needs.
            skip=lambda oid: oid == SETTINGS_ID or self._seal_key_state == "reading",
        )

    def snapshot_seal_key(self, open_vault: bool = False) -> bytes | None:
        """The key that seals snapshots (from the fingerprint key), or None where it cannot
        be had: then no snapshot is written or used, and loads fold the events.

        Only from a vault the command has opened for its own work (or with `open_vault`):
        a command that needs no keychain (`versions`, `list`, the dashboard) never opens it
        for a snapshot, which on the file vault would cost a passphrase and a key derivation."""
        if self._seal_key_state == "unread" and (open_vault or self._vault is not None):
            from ledger.decoding import seal_key

            self._seal_key_state = "reading"
            try:
                self._seal_key = seal_key(self._fingerprint_key(), self.settings.ledger_uid)
            except Exception:  # no keychain, locked, no key on this host: fold instead
                self._seal_key_state = "missing"
            else:
                self._seal_key_state = "read"
        return self._seal_key

    def replay_state_key(self, open_vault: bool = False) -> bytes | None:
        """The key that authenticates saved replay states (projections/replay_states.py),
        from the fingerprint key and the ledger uid, or None where the snapshot seal key
        cannot be had (`snapshot_seal_key`: the same rule for opening the keychain)."""
        if self._replay_key is None and self.snapshot_seal_key(open_vault) is not None:
            from ledger.decoding import derive_key

            assert self._fp_key is not None
            info = b"secrets-ledger replay states v1\x00" + self.settings.ledger_uid.encode()
            self._replay_key = derive_key(self._fp_key, info)
        return self._replay_key

    def event_link(self, originator_id: UUID, version: int) -> bytes | None:
        """The chain link stored at the position of an aggregate's event, None if none."""
        recorder: Any = self.recorder
        position = recorder.position_of(originator_id, version)
        return None if position is None else recorder.link_at(position)

    def _snapshot_ignored(self, detail: str) -> None:
        note = f"{detail}: ignored, the events were folded instead (run `secrets doctor`)"
        if note not in self.post_commit_problems:
            self.post_commit_problems.append(note)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        from ledger.transcodings import ALL

        super().register_transcodings(transcoder)
        for transcoding in ALL:
            transcoder.register(transcoding)

    # -- infrastructure -------------------------------------------------------------------

    def _load_authority(self, aggregate_id: UUID) -> Any:
        """An aggregate a decision rests on (an operator, the settings), each event folded
        checked against the hash chain and decoded, or `DamagedHistory` naming the position
        (ledger/authority.py). AggregateNotFoundError as the repository's."""
        from ledger import authority

        if self._authority_repository is None:
            if isinstance(self.recorder, authority.LinkedRecorder):
                self._authority_repository = authority.checked_repository(self.repository)
            else:  # a store with no chain (none of this project's): nothing to check against
                self._authority_repository = self.repository
        return authority.load(self._authority_repository, aggregate_id)

    def _holds_events(self) -> bool:
        try:
            return bool(self.recorder.max_notification_id())
        except PersistenceError:
            return False  # a store that cannot answer has not shown damage

    @property
    def settings(self) -> LedgerSettings:
        if self._settings is None:
            try:
                found: Any = self._load_authority(SETTINGS_ID)
            except AggregateNotFoundError:
                if self._holds_events():
                    from ledger.authority import DamagedHistory

                    # `init` records the settings first: a log without them was altered
                    # (their rows deleted, or their id or version overwritten).
                    raise DamagedHistory(
                        1, "deleted", "the ledger's settings are not in a log that holds events"
                    ) from None
                raise NotInitialized("no ledger here yet; run `secrets init`") from None
            if not isinstance(found, LedgerSettings):
                raise IntegrityFailure(
                    "the ledger's settings are recorded as another kind of record: the ledger "
                    "was altered or damaged: run `secrets audit verify`"
                )
            self._settings = found
        return self._settings

    @property
    def namespace(self) -> str:
        return f"secrets-ledger:{self.settings.ledger_uid}"

    @property
    def vault(self) -> ValueVault:
        if self._vault is None:
            self._vault = open_vault(self._backend_for(self.recorded_vault()), self.namespace)
        return self._vault

    def _backend_for(self, kind: str | None) -> KeyringBackend:
        """The backend given to this application (tests, tools), or the one `kind` (a
        recorded or requested vault kind; None: choose as before the record) names here."""
        backend = self._backend
        if backend is None:
            from ledger.vault.keyring_vault import select_backend

            return select_backend(str(self.home), kind)
        if callable(backend) and not hasattr(backend, "set_password"):
            return backend()
        return backend  # type: ignore[return-value]

    def recorded_vault(self) -> str | None:
        """The vault kind the ledger records for this host, or None (no record: a ledger
        from before the record, or a host of a shared ledger that has not joined it)."""
        vaults = self.settings.vaults
        if not isinstance(vaults, dict):
            raise IntegrityFailure(
                "the ledger's record of where hosts keep their values is not a table of hosts: "
                "its history may have been altered; run `secrets audit verify`"
            )
        kind = vaults.get(self.host)
        if kind is not None and kind not in VAULT_KINDS:
            from ledger.records import escaped

            shown = escaped(str(kind), 40)
            raise IntegrityFailure(
                f"the ledger records vault {shown!r} for host {self.host!r}, which is no vault "
                "kind (keychain, file): its history may have been altered; run "
                "`secrets audit verify`"
            )
        return kind

    def _fingerprint_key(self) -> bytes:
        # Read from the keychain once per process: it never changes for a ledger, and on a
        # Secret Service each read is a D-Bus round trip with its own key exchange, which was
        # 40% of an in-process `set` (docs/performance.md). Only a key found is kept.
        if self._fp_key is not None:
            return self._fp_key
        key = self.vault.get(FINGERPRINT_KEY_ENTRY)
        if key is None:
            raise KeychainUnavailable(
                f"this ledger's fingerprint key is not in the keychain ({self.vault.description}, "
                f"host {self.host}); on a shared ledger, bring it from the host that ran `init`: "
                "`secrets ledger export-key` there, `secrets ledger import-key` here"
            )
        self._fp_key = bytes.fromhex(key)
        return self._fp_key

    def fingerprint(self, address: SecretAddress, value: str) -> str:
        """Keyed HMAC-SHA256 of the value, bound to its address. Reveals nothing without the key."""
        message = f"{address.environment}\x00{address.service}\x00{address.name}\x00".encode()
        return hmac.new(
            self._fingerprint_key(), message + value.encode(), hashlib.sha256
        ).hexdigest()

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        recordings = super().save(*objs, **kwargs)
        every = self.checkpoint_every
        if recordings and every > 0 and not self._checkpointing:
            first = recordings[0].notification.id
            last = recordings[-1].notification.id
            # Exactly one save crosses each multiple of `every`, so concurrent writers do not
            # all sign the same stretch of log.
            if last // every > (first - 1) // every:
                self._auto_checkpoint()
        return recordings

    def _take_snapshots(self, processing_event: Any) -> None:
        # Runs after the events are committed. A snapshot is a cache: failing to write one
        # must not turn a recorded write into an exception, or the write path would believe
        # nothing was recorded (and remove the value the new event refers to).
        try:
            super()._take_snapshots(processing_event)
        except Exception as exc:
            self.post_commit_problems.append(
                f"a snapshot could not be saved ({type(exc).__name__}); loads fold the events"
            )

    def _save(self, *aggregates: Any) -> list[Recording[UUID]]:
        try:
            return self.save(*aggregates)
        except IntegrityError:
            raise
        except PersistenceError as exc:
            if "lock timeout" in str(exc):
                raise  # PostgreSQL: worded in commands/main.py, as for a read
            if "locked" in str(exc) or "busy" in str(exc):
                waited = self.env.get("SQLITE_LOCK_TIMEOUT") or "?"
                raise LedgerUnavailable(
                    f"the ledger at {self.home} is locked by another writer (waited {waited} s); "
                    "nothing was written, try again"
                ) from None
            from ledger.config import storage_failure

            failed = storage_failure(exc, self.home)
            if failed is not None:
                raise failed from None
            raise LedgerUnavailable(f"the event store refused the write: {exc}") from None

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run `attempt` until it saves without losing a race to another writer."""
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

    # -- initialisation -------------------------------------------------------------------

    def is_initialized(self) -> bool:
        try:
            _ = self.settings
        except NotInitialized:
            return False
        return True

    def initialize(
        self, first_operator: str, retention: int = DEFAULT_RETENTION, vault: str | None = None
    ) -> tokens.IssuedToken | None:
        """Create the ledger and its first senior-engineer; None if it already exists.

        `vault` (keychain or file; None: chosen as before) is where this host keeps the
        ledger's values; the kind in use is recorded, and every later command uses it."""
        from ledger.vault.keyring_vault import vault_kind

        validate_operator_name(first_operator)
        if retention < 1:
            raise ValidationFailed("retention", "retention must keep at least 1 version")
        if vault is not None and vault not in VAULT_KINDS:
            raise ValidationFailed("vault", f"--vault must be keychain or file (got {vault!r})")
        if self.is_initialized():
            return None
        backend = self._backend_for(vault)
        with context.acting_as(first_operator):
            settings = LedgerSettings(uuid.uuid4().hex, retention, {self.host: vault_kind(backend)})
            self._settings = settings
            self._vault = open_vault(backend, self.namespace)
            self.vault.put(FINGERPRINT_KEY_ENTRY, secrets.token_hex(32))
            operator = Operator(first_operator, SENIOR)
            issued = tokens.issue(first_operator)
            operator.issue_token(issued.token_id, issued.digest)
            try:
                self._save(settings, operator)
            except BaseException as exc:
                # Nothing was recorded (another process initialised the ledger first, or the
                # store refused): the key put under this attempt's own namespace is an orphan,
                # and the vault must follow the ledger that does exist.
                with contextlib.suppress(LedgerError):
                    self.vault.delete(FINGERPRINT_KEY_ENTRY)
                self._settings = None
                self._vault = None
                self._fp_key = None
                if isinstance(exc, IntegrityError):
                    return None  # the winner's key and operator stand
                raise
        return issued

    def founder(self) -> str | None:
        """The operator who ran `secrets init` (the actor of the settings' first event)."""
        for first in self.events.get(SETTINGS_ID, lte=1):
            found: Any = getattr(first, "operator", None)
            return found if isinstance(found, str) else None
        return None

    def refuse_second_init(self, claimed: str) -> PermissionDenied:
        self._record_denial(
            context.ANONYMOUS, "init", f"ledger exists; {_shown(claimed)} not created"
        )
        return PermissionDenied(
            "PERMISSION_DENIED: the ledger already has operators; "
            "ask a senior-engineer to run `secrets auth grant`"
        )

    # -- authorisation --------------------------------------------------------------------

    def _load_operator(self, name: str) -> Operator | None:
        try:
            found: Any = self._load_authority(operator_id(name))
        except AggregateNotFoundError:
            return None
        if not isinstance(found, Operator):
            raise IntegrityFailure(
                f"operator {name!r} is recorded as another kind of record: the ledger was "
                "altered or damaged: run `secrets audit verify`"
            )
        return found

    def _record_denial(
        self, operator: str, action: str, reason: str, address: SecretAddress | None = None
    ) -> None:
        from ledger.records import Denial

        with context.acting_as(operator):
            denial = Denial(
                action,
                reason,
                address.environment if address else None,
                address.service if address else None,
                address.name if address else None,
            )
            self._save(denial)

    @contextlib.contextmanager
    def _failing_closed(self, action: str) -> Iterator[None]:
        """Damaged history read for a decision ends the command (exit 6), recorded as an
        integrity alarm where the ledger can still record one."""
        from ledger.authority import DamagedHistory
        from ledger.chain import ChainFault

        try:
            yield
        except DamagedHistory as damage:
            fault = ChainFault(
                damage.position, damage.kind, f"{damage.detail}, read to authorise {action}"
            )
            with context.acting_as(context.ANONYMOUS):  # nobody could be proven
                damage.recorded = self.record_alarm(fault)
            raise

    def _identify(
        self, cred: Credential, action: str = "a command"
    ) -> tuple[Principal | None, str, str]:
        """(principal, actor for the record, reason) — principal None when unproven."""
        with self._failing_closed(action):
            return self._identify_unchecked(cred)

    def _identify_unchecked(self, cred: Credential) -> tuple[Principal | None, str, str]:
        if cred.problem:
            return None, context.ANONYMOUS, _bounded(cred.problem, MAX_REASON)
        unusable = _unusable_credential(cred)
        if unusable:
            return None, context.ANONYMOUS, unusable
        if cred.token:
            parsed = tokens.parse(cred.token)
            if parsed is None:
                return None, context.ANONYMOUS, "malformed token"
            name, secret_part = parsed
            operator = self._load_operator(name)
            if operator is None or not operator.token_matches(tokens.digest(secret_part)):
                return None, context.ANONYMOUS, f"invalid token for operator {_shown(name)}"
            if operator.role is None:
                return None, context.ANONYMOUS, f"operator {_shown(name)} is revoked"
            return Principal(name, operator.role, None, None), name, ""
        if cred.operator and cred.session_id and cred.session_secret:
            operator = self._load_operator(cred.operator)
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
                        f"no valid session for {_shown(cred.operator)} (expired, closed or "
                        "revoked); run `secrets auth login`"
                    ),
                )
            principal = Principal(
                cred.operator, operator.role, session.session_id, session.expires_at
            )
            return principal, cred.operator, ""
        return None, context.ANONYMOUS, "no operator session; run `secrets auth login`"

    def authorize(
        self,
        cred: Credential,
        permission: Permission,
        action: str,
        address: SecretAddress | None = None,
    ) -> Principal:
        """The proven caller, if allowed; otherwise record the denial and raise."""
        with self._failing_closed(action):
            _ = self.settings  # an uninitialised ledger is "not initialised", not "denied"
        principal, actor, reason = self._identify(cred, action)
        if principal is not None and not allows(principal.role, permission):
            reason = f"role {principal.role} may not {action}"
        elif principal is not None:
            return principal
        self._record_denial(actor, action, reason, address)
        required = REQUIRED_ROLE[permission]
        why = f" ({reason})" if principal is None else ""
        raise PermissionDenied(f"PERMISSION_DENIED: {action} requires {required}{why}")

    @staticmethod
    def _stamp(principal: Principal) -> Any:
        return context.acting_as(principal.operator)

    # -- secrets: reads -------------------------------------------------------------------

    def _load_secret(self, address: SecretAddress) -> Secret | None:
        """The secret as its checked events make it (`load_secret`)."""
        return self.load_secret(address.id, str(address))

    def load_secret(self, secret_id: UUID, shown: str) -> Secret | None:
        """A secret a decision rests on (a read, a change, a prune): folded like an authority
        (each event after the sealed snapshot it starts from checked against its chain link,
        ledger/authority.py), failing closed on damage (exit 6, an alarm recorded). A
        `VersionPruned` inserted without its link would otherwise answer "pruned"."""
        with self._failing_closed(f"a decision on {shown}"):
            try:
                found: Any = self._load_authority(secret_id)
            except AggregateNotFoundError:
                return None
        if not isinstance(found, Secret):
            raise IntegrityFailure(
                f"{shown} is recorded as another kind of record: the ledger was altered or "
                "damaged: run `secrets audit verify`"
            )
        return found

    def _existing_secret(self, address: SecretAddress) -> Secret:
        found = self._load_secret(address)
        if found is None or not found.versions:
            raise NotFound(f"no secret {address}")
        return found

    def history(self, cred: Credential, address: SecretAddress) -> Secret:
        self.authorize(cred, Permission.READ, "versions", address)
        return self._existing_secret(address)

    def read(
        self, cred: Credential, address: SecretAddress, version: int | None = None
    ) -> tuple[Version, str]:
        from ledger.records import ReadReceipt

        principal = self.authorize(cred, Permission.READ, "get", address)
        _ = self.vault  # needed next; open now so that the load can use a sealed snapshot
        secret = self._existing_secret(address)
        chosen = secret.readable_version(version)
        value = self.vault.get(entry_name(address, chosen.number, chosen.fingerprint))
        if value is None:
            raise self._value_missing(address, chosen)
        # Fail closed: a read that cannot be recorded is not served.
        with self._stamp(principal):
            self._save(
                ReadReceipt(address.environment, address.service, address.name, chosen.number)
            )
        return chosen, value

    def _value_missing(self, address: SecretAddress, version: Version) -> KeychainUnavailable:
        """Why a recorded version's value is not here: another host's keychain, or lost."""
        if version.host and version.host != self.host:
            return KeychainUnavailable(
                f"{address} v{version.number}'s value is in the keychain of host "
                f"{version.host!r}, not this one ({self.host!r}): values never leave the host "
                "that wrote them; run the command there, or set a new version here"
            )
        if self.vault.get(FINGERPRINT_KEY_ENTRY) is None:
            return KeychainUnavailable(
                f"{address} v{version.number}'s value is not in {self.vault.description}, and "
                "neither is this ledger's fingerprint key: it is not the vault the value was "
                "written to (see `secrets init --vault` and SECRETS_LEDGER_VAULT in the README), "
                "or it lost everything of this ledger; run `secrets doctor`"
            )
        return KeychainUnavailable(
            f"{address} v{version.number} is recorded but its value is not in this "
            f"keychain ({self.vault.description}, host {self.host}); run `secrets doctor`"
        )

    # -- secrets: writes ------------------------------------------------------------------

    def record_rejection(self, cred: Credential, address: SecretAddress, rule: str) -> None:
        from ledger.records import Rejection

        principal, actor, _ = self._identify(cred)
        with context.acting_as(principal.operator if principal else actor):
            self._save(Rejection(address.environment, address.service, address.name, rule))

    def write(
        self,
        cred: Credential,
        address: SecretAddress,
        value: str,
        reason: str = "manual",
        action: str = "set",
        incident_id: str | None = None,
        spec_check: Callable[[str], None] | None = None,
    ) -> Version:
        principal = self.authorize(cred, Permission.MANAGE, action, address)
        self._check_value(cred, address, value, spec_check)
        with self._stamp(principal):
            return self._write_version(address, value, reason, None, incident_id)

    def _check_value(
        self,
        cred: Credential,
        address: SecretAddress,
        value: str,
        spec_check: Callable[[str], None] | None,
    ) -> None:
        from ledger.catalogue import load_catalogue
        from ledger.validation import validate_value

        try:
            if spec_check is not None:
                spec_check(value)
            else:
                spec = load_catalogue(None).lookup(address.service, address.name)
                validate_value(spec, value, address)
        except ValidationFailed as failed:
            self.record_rejection(cred, address, failed.rule)
            raise

    def _write_version(
        self,
        address: SecretAddress,
        value: str,
        reason: str,
        rolled_back_from: int | None,
        incident_id: str | None,
        refuse: Callable[[Secret, str], None] | None = None,
    ) -> Version:
        """`refuse(secret, fingerprint)` may raise to refuse the value against the secret as
        loaded for this attempt (before its value reaches the vault)."""
        fingerprint = self.fingerprint(address, value)
        retention = self.settings.retention

        def attempt() -> tuple[Version, list[Version]]:
            secret = self._load_secret(address) or Secret(
                address.environment, address.service, address.name
            )
            if refuse is not None:
                refuse(secret, fingerprint)
            number = secret.current_version + 1
            entry = entry_name(address, number, fingerprint)
            with self.intents.pending(self.namespace, entry) as intent:
                self.vault.put(entry, value)
                crashpoints.reached("after-vault-put")
                try:
                    secret.add_version(
                        fingerprint, reason, self.host, rolled_back_from, incident_id
                    )
                    pruned = secret.prune_beyond(retention)
                    self._save(secret)
                except IntegrityError:
                    # Lost the race: nothing was recorded, so the value must go.
                    self._discard(intent)
                    raise
                except BaseException:
                    # Work after the commit (snapshots, checkpoints) never raises (see
                    # `_take_snapshots`, `_auto_checkpoint`), but a connection lost during
                    # COMMIT leaves it unknown whether the events landed. Deleting the value
                    # then could leave an event without its value, so remove it only when the
                    # store proves the version absent; otherwise the intent stays and
                    # `secrets doctor` decides.
                    if self._recorded(address, number, fingerprint) is False:
                        self._discard(intent)
                    raise
                crashpoints.reached("after-append")
                self.intents.done(intent)
            return secret.versions[number], pruned

        added, pruned = self._retrying(attempt)
        if pruned:
            crashpoints.reached("after-prune-append")
        self._remove_values(address, pruned)
        return added

    def _discard(self, intent: Intent) -> None:
        """Remove a value whose event did not land; keep the intent if the keychain fails."""
        try:
            self.vault.delete(intent.entry)
        except KeychainUnavailable:
            return
        self.intents.done(intent)

    def _recorded(self, address: SecretAddress, number: int, fingerprint: str) -> bool | None:
        """Whether the store holds `number` with this fingerprint; None if it cannot say."""
        try:
            found = self._load_secret(address)
        except Exception:
            return None
        version = found.versions.get(number) if found is not None else None
        return version is not None and version.fingerprint == fingerprint

    def _remove_values(self, address: SecretAddress, versions: list[Version]) -> list[str]:
        """Delete values whose versions were pruned or destroyed; report those that failed."""
        failed: list[str] = []
        for v in versions:
            try:
                self.vault.delete(entry_name(address, v.number, v.fingerprint))
            except KeychainUnavailable:
                # The event already says the value is gone; `doctor` finds the leftover.
                failed.append(f"{address} v{v.number}")
        return failed

    def rollback(self, cred: Credential, address: SecretAddress, version: int) -> Version:
        principal = self.authorize(cred, Permission.MANAGE, "rollback", address)
        secret = self._existing_secret(address)
        target = secret.readable_version(version)
        if target.number == secret.current_version:
            raise ValidationFailed("rollback-current", f"{address} v{version} is already current")
        value = self.vault.get(entry_name(address, target.number, target.fingerprint))
        if value is None:
            raise self._value_missing(address, target)
        with self._stamp(principal):
            return self._write_version(address, value, "rollback", target.number, None)

    def _change(
        self,
        cred: Credential,
        address: SecretAddress,
        action: str,
        change: Callable[[Secret], list[Version] | None],
    ) -> tuple[Secret, list[str]]:
        principal = self.authorize(cred, Permission.MANAGE, action, address)

        def attempt() -> tuple[Secret, list[Version]]:
            secret = self._existing_secret(address)
            doomed = change(secret) or []
            self._save(secret)
            return secret, doomed

        with self._stamp(principal):
            secret, doomed = self._retrying(attempt)
        if action == "destroy":
            crashpoints.reached("after-destroy-append")
        return secret, self._remove_values(address, doomed)

    def delete(self, cred: Credential, address: SecretAddress) -> Secret:
        return self._change(cred, address, "delete", lambda s: s.delete())[0]

    def restore(self, cred: Credential, address: SecretAddress) -> Secret:
        return self._change(cred, address, "restore", lambda s: s.restore())[0]

    def destroy(self, cred: Credential, address: SecretAddress) -> tuple[Secret, list[str]]:
        def change(secret: Secret) -> list[Version]:
            secret.destroy()
            # Every version's value, not only the retained ones: a destroy or prune that was
            # interrupted before its deletes left values behind, and running destroy again is
            # how an operator finishes the job.
            return list(secret.versions.values())

        return self._change(cred, address, "destroy", change)

    # -- consistency ----------------------------------------------------------------------

    def secret_ids(self) -> Iterator[UUID]:
        for n in notifications(self.recorder, Secret, "Registered"):
            yield originator_of(n)

    def repair_indexes(self) -> list[str]:
        """Rebuild the indexes of an embedded store when they are all that is damaged and
        the rows match the hash chain (`config.repair_indexes`); the names rebuilt."""
        from ledger.chain import verify_store
        from ledger.config import DATABASE_FILE, repair_indexes
        from ledger.store_sqlite import ChainedSQLiteApplicationRecorder

        recorder = self.recorder
        if not isinstance(recorder, ChainedSQLiteApplicationRecorder):
            return []

        def rows_fault() -> str | None:
            fault = verify_store(recorder).fault
            return None if fault is None else f"{fault.kind} at position {fault.position}"

        return repair_indexes(self.home / DATABASE_FILE, rows_fault)

    def check_pages(self, deep: bool = False) -> None:
        """Read every page of an embedded (SQLite) store, and with `deep` check its indexes
        against its rows (`config.check_pages`): damage is IntegrityFailure."""
        from ledger.config import DATABASE_FILE, check_pages
        from ledger.store_sqlite import ChainedSQLiteApplicationRecorder

        if isinstance(self.recorder, ChainedSQLiteApplicationRecorder):
            check_pages(self.home / DATABASE_FILE, deep)

    def doctor(self, cred: Credential, repair: bool = False) -> DoctorReport:
        """Keychain against ledger on this host (ledger/doctor.py); senior-engineer only."""
        from ledger.doctor import examine

        self.authorize(cred, Permission.MANAGE, "doctor")
        if repair:
            self._verified_before_repair()
        return examine(self, repair)

    def _verified_before_repair(self) -> None:
        """A repair deletes keychain entries on the word of the log: a log that does not
        verify (an event inserted without its link, rows hidden for the length of the repair)
        could make it delete values that are still recorded. Nothing is repaired then."""
        found = []
        keychain = self.keychain_witness()
        if keychain is not None:
            found.append(keychain)
        fault = self.verify_history(None, found).fault
        if fault is not None:
            raise IntegrityFailure(
                f"the recorded history does not verify ({fault.kind} at position "
                f"{fault.position}): `doctor --repair` removes nothing on the word of a log "
                "it cannot trust; run `secrets audit verify`"
            )

    # -- the fingerprint key, for a ledger shared between hosts ---------------------------

    def _key_check(self, key: bytes) -> str:
        label = b"secrets-ledger fingerprint key check\x00" + self.settings.ledger_uid.encode()
        return hmac.new(key, label, hashlib.sha256).hexdigest()[:32]

    def export_key(self, cred: Credential) -> str:
        """The fingerprint key as one line (`slk1.<ledger uid>.<key>`) for another host.

        Records who exported it, from where, and the key's check value (so that an import can
        tell the right key from a wrong one). Only a senior-engineer may export.
        """
        principal = self.authorize(cred, Permission.ADMIN, "export-key")
        key = self._fingerprint_key()
        check = self._key_check(key)

        def attempt() -> None:
            self._settings = None  # reload: another host may have changed the settings
            settings = self.settings
            if settings.key_check is not None and not hmac.compare_digest(
                settings.key_check, check
            ):
                raise IntegrityFailure(
                    "the fingerprint key in this keychain is not the key this ledger's "
                    "fingerprints were made with; export it from another host"
                )
            settings.record_key_export(check, self.host)
            self._save(settings)

        with self._stamp(principal):
            self._retrying(attempt)
        return f"{KEY_EXPORT_PREFIX}.{self.settings.ledger_uid}.{key.hex()}"

    def import_key(self, cred: Credential, exported: str) -> bool:
        """Put an exported fingerprint key into this host's keychain; False if already there."""
        principal = self.authorize(cred, Permission.MANAGE, "import-key")
        parts = exported.strip().split(".")
        if (
            len(parts) != 3
            or parts[0] != KEY_EXPORT_PREFIX
            or len(parts[2]) != 64
            or any(c not in "0123456789abcdef" for c in parts[2])
        ):
            raise ValidationFailed(
                "key-format", "not an exported fingerprint key (expected slk1.<ledger>.<64 hex>)"
            )
        self._settings = None  # the export may have just been recorded by another host
        settings = self.settings
        if parts[1] != settings.ledger_uid:
            raise ValidationFailed("key-ledger", "this key belongs to another ledger")
        key = bytes.fromhex(parts[2])
        check = self._key_check(key)
        if settings.key_check is None:
            raise ValidationFailed(
                "key-check",
                "this ledger has no recorded key check yet: export the key with "
                "`secrets ledger export-key` (it records one) and import that",
            )
        if not hmac.compare_digest(check, settings.key_check):
            raise ValidationFailed("key-check", "this is not the key of this ledger")
        existing = self.vault.get(FINGERPRINT_KEY_ENTRY)
        if existing is not None:
            if hmac.compare_digest(existing, key.hex()):
                return False
            raise IntegrityFailure(
                f"this keychain ({self.vault.description}) already holds a different "
                "fingerprint key for this ledger; remove it first"
            )
        self.vault.put(FINGERPRINT_KEY_ENTRY, key.hex())
        vault = self.vault
        kind = vault.kind if isinstance(vault, KeyringVault) else KEYCHAIN

        def attempt() -> None:
            self._settings = None
            fresh = self.settings
            fresh.record_key_import(check, self.host)
            if self.host not in fresh.vaults:
                # This host joins the ledger here: its values go where its key now is.
                fresh.choose_vault(self.host, kind)
            self._save(fresh)

        with self._stamp(principal):
            self._retrying(attempt)
        return True

    # -- operators ------------------------------------------------------------------------

    def grant(self, cred: Credential, name: str, role: str) -> tokens.IssuedToken:
        principal = self.authorize(cred, Permission.ADMIN, "grant")
        try:
            validate_operator_name(name)
            check_role(role)
        except ValidationFailed as failed:
            from ledger.records import GrantRejection, escaped

            with self._stamp(principal):
                self._save(GrantRejection(escaped(name), escaped(role), failed.rule))
            raise
        issued = tokens.issue(name)

        def attempt() -> None:
            settings = self._fresh_settings()
            self._still_allowed(principal, "grant")
            operator = self._load_operator(name)
            removes_senior = operator is not None and operator.role == SENIOR and role != SENIOR
            remaining = self._refuse_losing_last_senior(name) if removes_senior else None
            if operator is None:
                operator = Operator(name, role)
            else:
                operator.grant(role)
                # A new token replaces the old one: sessions opened with the old one end too,
                # or whoever held it (the reason to re-grant, often) would keep working.
                operator.end_sessions("token reissued")
            operator.issue_token(issued.token_id, issued.digest)
            self._save_operator(operator, settings, remaining)

        with self._stamp(principal):
            self._retrying(attempt)
        return issued

    def revoke(self, cred: Credential, name: str) -> None:
        principal = self.authorize(cred, Permission.ADMIN, "revoke")

        def attempt() -> None:
            settings = self._fresh_settings()
            self._still_allowed(principal, "revoke")
            found = self._load_operator(name)
            if found is None or found.role is None:
                raise NotFound(f"no active operator {_shown(name)}")
            remaining = self._refuse_losing_last_senior(name) if found.role == SENIOR else None
            found.revoke()
            self._save_operator(found, settings, remaining)

        with self._stamp(principal):
            self._retrying(attempt)

    def _fresh_settings(self) -> LedgerSettings:
        """LedgerSettings as stored now. Loaded before any Operator a change checks: a removal
        of a senior-engineer committed after this load moves its version, so a save based
        on what was read then conflicts (`_save_operator`)."""
        self._settings = None
        return self.settings

    def _still_allowed(self, principal: Principal, action: str) -> None:
        """The caller's role as stored now: after a lost race (or since `authorize`), the
        winner may have revoked or demoted the caller."""
        actor = self._load_operator(principal.operator)
        role = actor.role if actor is not None else None
        if role is None or not allows(role, Permission.ADMIN):
            reason = f"{principal.operator} lost {principal.role} while the {action} ran"
            self._record_denial(principal.operator, action, reason)
            raise PermissionDenied(
                f"PERMISSION_DENIED: {action} requires {REQUIRED_ROLE[Permission.ADMIN]} ({reason})"
            )

    def _save_operator(
        self, operator: Operator, settings: LedgerSettings, remaining: list[str] | None
    ) -> None:
        """Save `operator`; when it loses senior-engineer (`remaining`: who keeps it), record
        them on `settings` in the same transaction (LedgerSettings.record_senior_engineers)."""
        if remaining is None:
            self._save(operator)
            return
        settings.record_senior_engineers(remaining)
        self._save(operator, settings)

    def senior_engineers(self) -> list[str]:
        names: list[str] = []
        for n in notifications(self.recorder, Operator, "Registered"):
            op: Any = self._load_authority(originator_of(n))
            assert isinstance(op, Operator)
            if op.role == SENIOR:
                names.append(op.name)
        return names

    def _refuse_losing_last_senior(self, name: str) -> list[str]:
        """The senior-engineers other than `name`; ValidationFailed if there are none."""
        remaining = [n for n in self.senior_engineers() if n != name]
        if not remaining:
            raise ValidationFailed(
                "last-senior", f"{name!r} is the last senior-engineer; grant another one first"
            )
        return remaining

    def login(self, name: str, token: str, ttl: timedelta = DEFAULT_SESSION_TTL) -> OpenedSession:
        principal, actor, reason = self._identify(Credential(token=token), "login")
        if principal is None or principal.operator != name:
            why = reason or f"token does not belong to {_shown(name)}"
            self._record_denial(actor, "login", why)
            raise PermissionDenied(f"PERMISSION_DENIED: login refused ({why})")
        if ttl <= timedelta(0) or ttl > timedelta(days=7):
            raise ValidationFailed("ttl", "session TTL must be between 1 second and 7 days")
        session_secret = tokens.new_session_secret()
        session_id = uuid.uuid4().hex
        expires = context.now() + ttl

        def attempt() -> Operator:
            operator = self._load_operator(name)
            assert operator is not None
            operator.open_session(session_id, tokens.digest(session_secret), expires, self.host)
            self._save(operator)
            return operator

        with context.acting_as(name):
            operator = self._retrying(attempt)
        assert operator.role is not None
        return OpenedSession(name, operator.role, session_id, session_secret, expires)

    def logout(self, cred: Credential) -> bool:
        principal, _, _ = self._identify(cred)
        if principal is None or principal.session_id is None:
            return False
        session_id = principal.session_id

        def attempt() -> None:
            operator = self._load_operator(principal.operator)
            assert operator is not None
            operator.close_session(session_id, "logout")
            self._save(operator)

        with self._stamp(principal):
            self._retrying(attempt)
        return True

    def whoami(self, cred: Credential) -> tuple[Principal | None, str]:
        principal, _, reason = self._identify(cred)
        return principal, reason

    # -- integrity: checkpoints and verification ------------------------------------------

    def _chained_recorder(self) -> CheckpointedRecorder:
        from ledger.chain import CheckpointedRecorder

        recorder = self.recorder
        if not isinstance(recorder, CheckpointedRecorder):
            raise LedgerUnavailable("this event store keeps no hash chain to verify")
        return recorder

    def _decode_row(self, row: StoredRow) -> dict[str, Any]:
        oid = row.originator_id
        stored = StoredEvent(
            UUID(oid) if isinstance(oid, str) else oid, row.originator_version, row.topic, row.state
        )
        return dict(vars(self.mapper.to_domain_event(stored)))

    def _undecodable(
        self, position: int, originator_id: Any, version: Any, topic: Any, state: Any
    ) -> ChainFault | None:
        """Why a stored event (whose chain link holds) is still damage: it does not decode
        through the allow-list mapper, as every load would decode it. None when it does."""
        try:
            oid = UUID(originator_id) if isinstance(originator_id, str) else originator_id
            self.mapper.to_domain_event(StoredEvent(oid, version, topic, bytes(state)))
        except Exception as exc:
            from ledger.chain import ChainFault

            # Not the mapper's message: it may quote stored bytes.
            return ChainFault(
                position, "undecodable", f"the event cannot be decoded ({type(exc).__name__})"
            )
        return None

    def latest_checkpoint(self) -> tuple[int, SignedHead] | None:
        """The newest checkpoint in the log: (its position, what it signed)."""
        from ledger import checkpoint_writer

        return checkpoint_writer.latest(self)

    def write_checkpoint(self) -> tuple[int, SignedHead]:
        """Sign the current chain head (ledger/checkpoint_writer.py); returns the
        checkpoint's position and content."""
        from ledger import checkpoint_writer

        return checkpoint_writer.write(self)

    def _auto_checkpoint(self) -> None:
        try:
            with context.acting_as(context.SYSTEM):
                self.write_checkpoint()
        except Exception as exc:
            # This runs inside the save of someone's write: an error escaping from here would
            # make that write remove its value although its event is recorded. A missing
            # keychain or a refused signature only means no checkpoint this time; the next
            # multiple of the interval tries again and `audit checkpoint` can be run by hand.
            self.post_commit_problems.append(
                f"automatic checkpoint skipped ({type(exc).__name__}); "
                "run `secrets audit checkpoint` when the keychain is back"
            )

    def checkpoint(
        self, cred: Credential, reset_witness: bool = False, action: str = "audit checkpoint"
    ) -> tuple[int, SignedHead]:
        """Sign the head now. `reset_witness` (senior-engineer) makes the keychain's note
        follow this checkpoint even if it had seen a longer log: after restoring a backup the
        shorter log is legitimate, and without a reset every verify would report it truncated.
        The reset itself is recorded as an integrity alarm, so it cannot pass unnoticed.
        `action` names the command a refusal is recorded (and reported) for."""
        from ledger import checkpoint_writer

        if not reset_witness:
            principal = self.authorize(cred, Permission.AUDIT, action)
            with self._stamp(principal):
                return self.write_checkpoint()
        principal = self.authorize(cred, Permission.ADMIN, "audit checkpoint --reset-witness")
        with self._stamp(principal):
            known = self.keychain_witness()
            at, signed = self.write_checkpoint()
            if known is not None and known.position >= at:
                from ledger.records import IntegrityAlarm

                detail = (
                    f"keychain checkpoint note reset from position {known.position} to {at} "
                    f"by {principal.operator}"
                )
                self._save(IntegrityAlarm(at, "witness-reset", detail))
            checkpoint_writer.note(self, at, signed)
        return at, signed

    def checkpoint_public_key(self, cred: Credential) -> str:
        """The checkpoint public key (hex): as recorded in the log, else this keychain's."""
        from ledger import checkpoint_writer
        from ledger.checkpoint import public_key_of

        self.authorize(cred, Permission.AUDIT, "audit pubkey")
        latest = self.latest_checkpoint()
        if latest is not None:
            return latest[1].public_key
        return public_key_of(checkpoint_writer.signing_key(self, None))

    def keychain_witness(self) -> Witness | None:
        from ledger import checkpoint_writer

        return checkpoint_writer.keychain_witness(self)

    def verify_history(
        self,
        pinned_key: str | None = None,
        witnesses: list[Witness] | None = None,
        *,
        fast: bool = True,
        decodes: RowCheck | None = None,
        pinned_by: str = "the pinned public key",
    ) -> IntegrityReport:
        """`fast=False` walks every event carefully (the fast pass hands over to that walk
        at the first fault anyway: the report is the same, which the tests check).
        `decodes` says whether each event decodes (default: through the mapper; the CLI
        passes projections/event_reader.py's check, the same answer faster)."""
        from ledger.chain import JoinedRecorder
        from ledger.integrity import verify_history

        recorder = self._chained_recorder()
        joined = recorder.iter_joined if fast and isinstance(recorder, JoinedRecorder) else None
        return verify_history(
            recorder.iter_rows,
            recorder.iter_links,
            joined=joined,
            rescan=recorder.iter_links,
            link_at=recorder.link_at,
            row_at=recorder.row_at,
            decode=self._decode_row,
            decodes=decodes or self._undecodable,
            pinned_key=pinned_key,
            pinned_by=pinned_by,
            witnesses=witnesses or [],
            consecutive_ids=getattr(recorder, "consecutive_ids", False),
        )

    def audit_verify(
        self,
        cred: Credential,
        pinned_key: str | None = None,
        witnesses: list[Witness] | None = None,
        decodes: RowCheck | None = None,
    ) -> tuple[IntegrityReport, bool]:
        """Verify, and record an alarm on a fault. Returns (report, alarm recorded).

        Damaged history read while authorising does not stop the verification: it is the
        tool for that damage, read-only, and reports only integrity facts. The alarm of the
        damage is recorded (`_failing_closed`), the report follows, and it is a fault."""
        from ledger.authority import DamagedHistory

        damage: DamagedHistory | None = None
        principal: Principal | None = None
        try:
            principal = self.authorize(cred, Permission.AUDIT, "audit verify")
        except DamagedHistory as found_damage:
            damage = found_damage
        self.check_pages()
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
                from ledger import checkpoint_writer

                pinned_key = checkpoint_writer.keychain_public_key(self)
                pinned_by = "this keychain's checkpoint key"
        report = self.verify_history(pinned_key, found, decodes=decodes, pinned_by=pinned_by)
        if report.fault is None:
            report = self.with_snapshot_check(report)
        if report.fault is None and damage is not None:
            # The chain holds (the bytes are the ones written) yet they cannot be used:
            # still damage, and the report must say so.
            from dataclasses import replace

            from ledger.chain import ChainFault

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
                recorded = self.record_alarm(report.fault)
        return report, recorded

    def with_snapshot_check(self, report: IntegrityReport) -> IntegrityReport:
        """Snapshots are outside the chain, yet loads start from them: fold and compare."""
        from dataclasses import replace

        from ledger.chain import ChainFault
        from ledger.snapshot_check import verify_snapshots

        checked = verify_snapshots(self)
        fault = None
        if checked.faults:
            first = checked.faults[0]
            try:
                at = self._chained_recorder().position_of(UUID(first.originator_id), first.version)
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

    def record_alarm(self, fault: ChainFault) -> bool:
        from ledger.records import IntegrityAlarm

        try:
            self._save(IntegrityAlarm(fault.position, fault.kind, fault.detail))
        except (LedgerError, PersistenceError):
            return False  # a ledger too damaged to append to still gets its report
        return True

    def fingerprint_for(self, cred: Credential, address: SecretAddress, value: str) -> str:
        """The fingerprint `value` would have at `address`, to compare with recorded ones."""
        self.authorize(cred, Permission.READ, "audit hash", address)
        return self.fingerprint(address, value)
