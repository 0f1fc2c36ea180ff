"""`SecretsLedger`: the entry point of every use case, and the event store it runs on.

A thin facade. The use cases live in ledger/services/, one concern per module (`secrets`,
`operators`, `integrity`, `keys`, `maintenance`), each made of the unit of work's operations
(ledger/unit_of_work.py: load chain-checked, authorise, stamp, save, retry). This module keeps
what the `eventsourcing` `Application` owns: the allow-list mapper, the sealed snapshot store,
the settings, the vault and the fingerprint key, creating a ledger, and the save hook that
writes automatic checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    PersistenceError,
    Recording,
)

from ledger import context
from ledger.access import tokens
from ledger.access.credentials import Credential, Principal
from ledger.access.policy import SENIOR, Permission
from ledger.address import SecretAddress
from ledger.entries import entry_name
from ledger.errors import (
    IntegrityFailure,
    KeychainUnavailable,
    LedgerError,
    NotInitialized,
    PermissionDenied,
    ValidationFailed,
)
from ledger.integrity.checkpoint_names import DEFAULT_INTERVAL
from ledger.operator import Operator, validate_operator_name
from ledger.secret import Secret, Version
from ledger.settings import (
    DEFAULT_RETENTION,
    SETTINGS_ID,
    VAULT_KINDS,
    LedgerSettings,
)
from ledger.unit_of_work import UnitOfWork, shown_name
from ledger.vault.intents import IntentJournal
from ledger.vault.keyring_vault import open_vault

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from ledger.checkpoint import SignedHead, Witness
    from ledger.integrity.doctor import DoctorReport
    from ledger.integrity.seen_heads import SeenHeads
    from ledger.integrity.verify import IntegrityReport
    from ledger.services.integrity import IntegrityService
    from ledger.services.keys import KeysService
    from ledger.services.maintenance import MaintenanceService
    from ledger.services.operators import OperatorsService
    from ledger.services.secrets import SecretsService
    from ledger.store.chain import ChainFault, RowCheck
    from ledger.vault.port import ValueVault

# Names other modules and the tests import from here.
__all__ = ["FINGERPRINT_KEY_ENTRY", "OpenedSession", "SecretsLedger", "entry_name"]

FINGERPRINT_KEY_ENTRY = "ledger.fingerprint-key"
DEFAULT_SESSION_TTL = timedelta(hours=8)


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
    # this host's read-model cache in `home` (one per store: see ledger/store/config_postgres.py).
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
        # Work after a commit that failed without undoing it (a snapshot, an automatic
        # checkpoint): the command succeeded; the edge reports these as warnings.
        self.post_commit_problems: list[str] = []
        self._seen_heads: SeenHeads | None = None
        # Load, authorise, stamp, save, retry: what every use case is made of.
        self.uow = UnitOfWork(self)

    @property
    def seen_heads(self) -> SeenHeads | None:
        """This host's witness of the heads it has seen of this store
        (ledger/integrity/seen_heads.py);
        None for a store with no chain."""
        if self._seen_heads is None:
            from ledger.access import authority
            from ledger.integrity import seen_heads

            if not isinstance(self.recorder, authority.LinkedRecorder):
                return None
            path = self.home / seen_heads.file_name(self.views_file)
            self._seen_heads = seen_heads.SeenHeads(path, self.recorder, self.warnings.append)
        return self._seen_heads

    # -- the use cases, one concern each (imported on first use: start-up stays small) ----

    @cached_property
    def secrets(self) -> SecretsService:
        from ledger.services.secrets import SecretsService

        return SecretsService(self, self.uow)

    @cached_property
    def operators(self) -> OperatorsService:
        from ledger.services.operators import OperatorsService

        return OperatorsService(self, self.uow)

    @cached_property
    def integrity(self) -> IntegrityService:
        from ledger.services.integrity import IntegrityService

        return IntegrityService(self, self.uow)

    @cached_property
    def keys(self) -> KeysService:
        from ledger.services.keys import KeysService

        return KeysService(self, self.uow)

    @cached_property
    def maintenance(self) -> MaintenanceService:
        from ledger.services.maintenance import MaintenanceService

        return MaintenanceService(self)

    def construct_mapper(self) -> Mapper[UUID]:
        from ledger.codec.decoding import AllowListMapper

        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=AllowListMapper
        )

    def construct_snapshot_store(self) -> EventStore[UUID]:
        from ledger.codec.decoding import SealedSnapshotStore

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
            from ledger.codec.decoding import seal_key

            self._seal_key_state = "reading"
            try:
                self._seal_key = seal_key(self.fingerprint_key(), self.settings.ledger_uid)
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
            from ledger.codec.decoding import derive_key

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
        from ledger.codec.transcodings import ALL

        super().register_transcodings(transcoder)
        for transcoding in ALL:
            transcoder.register(transcoding)

    # -- infrastructure -------------------------------------------------------------------

    def holds_events(self) -> bool:
        try:
            return bool(self.recorder.max_notification_id())
        except PersistenceError:
            return False  # a store that cannot answer has not shown damage

    @property
    def settings(self) -> LedgerSettings:
        if self._settings is None:
            try:
                found: Any = self.uow.load_authority(SETTINGS_ID)
            except AggregateNotFoundError:
                if self.holds_events():
                    from ledger.access.authority import DamagedHistory

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

    def fingerprint_key(self) -> bytes:
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
            self.fingerprint_key(), message + value.encode(), hashlib.sha256
        ).hexdigest()

    def fresh_settings(self) -> LedgerSettings:
        """LedgerSettings as stored now (read again). Loaded before any Operator a change
        checks: a removal of a senior-engineer committed after this load moves its version,
        so a save based on what was read then conflicts (ledger/services/operators.py)."""
        self._settings = None
        return self.settings

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's save, then an automatic checkpoint where this save crossed a
        multiple of `checkpoint_every`. Use cases save through `uow.save`."""
        recordings = super().save(*objs, **kwargs)
        if recordings and self.seen_heads is not None:
            try:  # after the commit: never turn a recorded write into an exception
                self.seen_heads.saved(objs, recordings)
            except Exception as exc:
                self.post_commit_problems.append(
                    f"this host's record of seen heads was not advanced ({type(exc).__name__})"
                )
        every = self.checkpoint_every
        if recordings and every > 0 and not self.uow.checkpointing:
            first = recordings[0].notification.id
            last = recordings[-1].notification.id
            # Exactly one save crosses each multiple of `every`, so concurrent writers do not
            # all sign the same stretch of log.
            if last // every > (first - 1) // every:
                self.integrity.auto_checkpoint()
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
            self.vault.put(FINGERPRINT_KEY_ENTRY, token_hex(32))
            operator = Operator(first_operator, SENIOR)
            issued = tokens.issue(first_operator)
            operator.issue_token(issued.token_id, issued.digest)
            if self.seen_heads is not None:  # heads of a ledger no longer in this store
                self.seen_heads.forget()
            try:
                self.uow.save(settings, operator)
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
        self.uow.record_denial(
            context.ANONYMOUS, "init", f"ledger exists; {shown_name(claimed)} not created"
        )
        return PermissionDenied(
            "PERMISSION_DENIED: the ledger already has operators; "
            "ask a senior-engineer to run `secrets auth grant`"
        )

    # -- secrets (ledger/services/secrets.py) ---------------------------------------------

    def load_secret(self, secret_id: UUID, shown: str) -> Secret | None:
        return self.uow.load_secret_by_id(secret_id, shown)

    def history(self, cred: Credential, address: SecretAddress) -> Secret:
        return self.secrets.history(cred, address)

    def read(
        self, cred: Credential, address: SecretAddress, version: int | None = None
    ) -> tuple[Version, str]:
        return self.secrets.read(cred, address, version)

    def record_rejection(self, cred: Credential, address: SecretAddress, rule: str) -> None:
        self.secrets.record_rejection(cred, address, rule)

    def write(
        self,
        cred: Credential,
        address: SecretAddress,
        value: str,
        reason: str = "manual",
        action: str = "set",
        incident_id: str | None = None,
        spec_check: Callable[[str], None] | None = None,
        expected: int | None = None,
    ) -> Version:
        return self.secrets.write(
            cred, address, value, reason, action, incident_id, spec_check, expected
        )

    def rollback(
        self, cred: Credential, address: SecretAddress, version: int, expected: int | None = None
    ) -> Version:
        return self.secrets.rollback(cred, address, version, expected)

    def delete(self, cred: Credential, address: SecretAddress) -> Secret:
        return self.secrets.delete(cred, address)

    def restore(self, cred: Credential, address: SecretAddress) -> Secret:
        return self.secrets.restore(cred, address)

    def destroy(self, cred: Credential, address: SecretAddress) -> tuple[Secret, list[str]]:
        return self.secrets.destroy(cred, address)

    def fingerprint_for(self, cred: Credential, address: SecretAddress, value: str) -> str:
        return self.secrets.fingerprint_for(cred, address, value)

    # -- operators (ledger/services/operators.py) -----------------------------------------

    def authorize(
        self,
        cred: Credential,
        permission: Permission,
        action: str,
        address: SecretAddress | None = None,
    ) -> Principal:
        return self.uow.authorize(cred, permission, action, address)

    def grant(self, cred: Credential, name: str, role: str) -> tokens.IssuedToken:
        return self.operators.grant(cred, name, role)

    def revoke(self, cred: Credential, name: str) -> None:
        self.operators.revoke(cred, name)

    def senior_engineers(self) -> list[str]:
        return self.operators.senior_engineers()

    def login(self, name: str, token: str, ttl: timedelta = DEFAULT_SESSION_TTL) -> OpenedSession:
        return self.operators.login(name, token, ttl)

    def logout(self, cred: Credential) -> bool:
        return self.operators.logout(cred)

    def whoami(self, cred: Credential) -> tuple[Principal | None, str]:
        return self.operators.whoami(cred)

    # -- the fingerprint key between hosts (ledger/services/keys.py) ----------------------

    def export_key(self, cred: Credential) -> str:
        return self.keys.export_key(cred)

    def import_key(self, cred: Credential, exported: str) -> bool:
        return self.keys.import_key(cred, exported)

    # -- store care (ledger/services/maintenance.py) --------------------------------------

    def secret_ids(self) -> Iterator[UUID]:
        return self.maintenance.secret_ids()

    def repair_indexes(self) -> list[str]:
        return self.maintenance.repair_indexes()

    def check_pages(self, deep: bool = False) -> None:
        self.maintenance.check_pages(deep)

    # -- integrity (ledger/services/integrity.py) -----------------------------------------

    def doctor(self, cred: Credential, repair: bool = False) -> DoctorReport:
        return self.integrity.doctor(cred, repair)

    def latest_checkpoint(self) -> tuple[int, SignedHead] | None:
        return self.integrity.latest_checkpoint()

    def write_checkpoint(self) -> tuple[int, SignedHead]:
        return self.integrity.write_checkpoint()

    def checkpoint(
        self, cred: Credential, reset_witness: bool = False, action: str = "audit checkpoint"
    ) -> tuple[int, SignedHead]:
        return self.integrity.checkpoint(cred, reset_witness, action)

    def checkpoint_public_key(self, cred: Credential) -> str:
        return self.integrity.checkpoint_public_key(cred)

    def keychain_witness(self) -> Witness | None:
        return self.integrity.keychain_witness()

    def verify_history(
        self,
        pinned_key: str | None = None,
        witnesses: list[Witness] | None = None,
        *,
        fast: bool = True,
        decodes: RowCheck | None = None,
        pinned_by: str = "the pinned public key",
    ) -> IntegrityReport:
        return self.integrity.verify_history(
            pinned_key, witnesses, fast=fast, decodes=decodes, pinned_by=pinned_by
        )

    def audit_verify(
        self,
        cred: Credential,
        pinned_key: str | None = None,
        witnesses: list[Witness] | None = None,
        decodes: RowCheck | None = None,
    ) -> tuple[IntegrityReport, bool]:
        return self.integrity.audit_verify(cred, pinned_key, witnesses, decodes)

    def with_snapshot_check(self, report: IntegrityReport) -> IntegrityReport:
        return self.integrity.with_snapshot_check(report)

    def record_alarm(self, fault: ChainFault) -> bool:
        return self.uow.record_alarm(fault)
