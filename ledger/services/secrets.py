"""Reading and changing secrets: read, write, rollback, delete, restore, destroy.

The write path is `write_version`: the value goes to the vault under a journaled intent, then
the events are appended; on a lost race the value is removed and the write reloads and
retries; on any other failure the value is removed only when the store proves the version
absent. Values never reach the event store, only their keyed fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError

from ledger import context
from ledger.access.policy import Permission
from ledger.entries import entry_name
from ledger.errors import KeychainUnavailable, ValidationFailed
from ledger.secret import Secret, Version
from ledger.store import crashpoints

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger
    from ledger.unit_of_work import UnitOfWork
    from ledger.vault.intents import Intent


class SecretsService:
    def __init__(self, app: SecretsLedger, uow: UnitOfWork) -> None:
        self.app = app
        self.uow = uow

    # -- reads --------------------------------------------------------------------------

    def history(self, cred: Credential, address: SecretAddress) -> Secret:
        self.uow.authorize(cred, Permission.READ, "versions", address)
        return self.uow.existing_secret(address)

    def read(
        self, cred: Credential, address: SecretAddress, version: int | None = None
    ) -> tuple[Version, str]:
        from ledger.records import ReadReceipt

        uow = self.uow
        principal = uow.authorize(cred, Permission.READ, "get", address)
        vault = self.app.vault  # needed next; open now so that the load can use a sealed snapshot
        secret = uow.existing_secret(address)
        chosen = secret.readable_version(version)
        value = vault.get(entry_name(address, chosen.number, chosen.fingerprint))
        if value is None:
            raise self.value_missing(address, chosen)
        # Fail closed: a read that cannot be recorded is not served.
        with uow.stamp(principal):
            uow.save(ReadReceipt(address.environment, address.service, address.name, chosen.number))
        return chosen, value

    def value_missing(self, address: SecretAddress, version: Version) -> KeychainUnavailable:
        """Why a recorded version's value is not here: another host's keychain, or lost."""
        from ledger.application import FINGERPRINT_KEY_ENTRY

        app = self.app
        if version.host and version.host != app.host:
            return KeychainUnavailable(
                f"{address} v{version.number}'s value is in the keychain of host "
                f"{version.host!r}, not this one ({app.host!r}): values never leave the host "
                "that wrote them; run the command there, or set a new version here"
            )
        if app.vault.get(FINGERPRINT_KEY_ENTRY) is None:
            return KeychainUnavailable(
                f"{address} v{version.number}'s value is not in {app.vault.description}, and "
                "neither is this ledger's fingerprint key: it is not the vault the value was "
                "written to (see `secrets init --vault` and SECRETS_LEDGER_VAULT in the README), "
                "or it lost everything of this ledger; run `secrets doctor`"
            )
        return KeychainUnavailable(
            f"{address} v{version.number} is recorded but its value is not in this "
            f"keychain ({app.vault.description}, host {app.host}); run `secrets doctor`"
        )

    def fingerprint_for(self, cred: Credential, address: SecretAddress, value: str) -> str:
        """The fingerprint `value` would have at `address`, to compare with recorded ones."""
        self.uow.authorize(cred, Permission.READ, "audit hash", address)
        return self.app.fingerprint(address, value)

    # -- writes -------------------------------------------------------------------------

    def record_rejection(self, cred: Credential, address: SecretAddress, rule: str) -> None:
        from ledger.records import Rejection

        principal, actor, _ = self.uow.identify(cred)
        with context.acting_as(principal.operator if principal else actor):
            self.uow.save(Rejection(address.environment, address.service, address.name, rule))

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
        principal = self.uow.authorize(cred, Permission.MANAGE, action, address)
        self._check_value(cred, address, value, spec_check)
        with self.uow.stamp(principal):
            return self.write_version(address, value, reason, None, incident_id, expected=expected)

    def _check_value(
        self,
        cred: Credential,
        address: SecretAddress,
        value: str,
        spec_check: Callable[[str], None] | None,
    ) -> None:
        from ledger.rotation.catalogue import load_catalogue
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

    def write_version(
        self,
        address: SecretAddress,
        value: str,
        reason: str,
        rolled_back_from: int | None,
        incident_id: str | None,
        refuse: Callable[[Secret, str], None] | None = None,
        expected: int | None = None,
    ) -> Version:
        """The write path: a new version of `address` holding `value`, stamped by the caller
        (`UnitOfWork.stamp`). `refuse(secret, fingerprint)` may raise to refuse the value
        against the secret as loaded for this attempt (before its value reaches the vault);
        so does `expected`, the current version a check-and-set requires
        (`Secret.expect_version`), checked again on every retry."""
        app, uow = self.app, self.uow
        fingerprint = app.fingerprint(address, value)
        retention = app.settings.retention

        def attempt() -> tuple[Version, list[Version]]:
            secret = uow.load_secret(address) or Secret(
                address.environment, address.service, address.name
            )
            secret.expect_version(expected)
            if refuse is not None:
                refuse(secret, fingerprint)
            number = secret.current_version + 1
            entry = entry_name(address, number, fingerprint)
            with app.intents.pending(app.namespace, entry) as intent:
                app.vault.put(entry, value)
                crashpoints.reached("after-vault-put")
                try:
                    secret.add_version(fingerprint, reason, app.host, rolled_back_from, incident_id)
                    pruned = secret.prune_beyond(retention)
                    uow.save(secret)
                except IntegrityError:
                    # Lost the race: nothing was recorded, so the value must go.
                    self._discard(intent)
                    raise
                except BaseException:
                    # Work after the commit (snapshots, checkpoints) never raises (see
                    # `SecretsLedger._take_snapshots`, `auto_checkpoint`), but a connection
                    # lost during COMMIT leaves it unknown whether the events landed.
                    # Deleting the value then could leave an event without its value, so
                    # remove it only when the store proves the version absent; otherwise the
                    # intent stays and `secrets doctor` decides.
                    if self._recorded(address, number, fingerprint) is False:
                        self._discard(intent)
                    raise
                crashpoints.reached("after-append")
                app.intents.done(intent)
            return secret.versions[number], pruned

        added, pruned = uow.retrying(attempt)
        if pruned:
            crashpoints.reached("after-prune-append")
        self.remove_values(address, pruned)
        return added

    def _discard(self, intent: Intent) -> None:
        """Remove a value whose event did not land; keep the intent if the keychain fails."""
        try:
            self.app.vault.delete(intent.entry)
        except KeychainUnavailable:
            return
        self.app.intents.done(intent)

    def _recorded(self, address: SecretAddress, number: int, fingerprint: str) -> bool | None:
        """Whether the store holds `number` with this fingerprint; None if it cannot say."""
        try:
            found = self.uow.load_secret(address)
        except Exception:
            return None
        version = found.versions.get(number) if found is not None else None
        return version is not None and version.fingerprint == fingerprint

    def remove_values(self, address: SecretAddress, versions: list[Version]) -> list[str]:
        """Delete values whose versions were pruned or destroyed; report those that failed."""
        failed: list[str] = []
        for v in versions:
            try:
                self.app.vault.delete(entry_name(address, v.number, v.fingerprint))
            except KeychainUnavailable:
                # The event already says the value is gone; `doctor` finds the leftover.
                failed.append(f"{address} v{v.number}")
        return failed

    def rollback(
        self, cred: Credential, address: SecretAddress, version: int, expected: int | None = None
    ) -> Version:
        principal = self.uow.authorize(cred, Permission.MANAGE, "rollback", address)
        secret = self.uow.existing_secret(address)
        secret.expect_version(expected)
        target = secret.readable_version(version)
        if target.number == secret.current_version:
            raise ValidationFailed("rollback-current", f"{address} v{version} is already current")
        value = self.app.vault.get(entry_name(address, target.number, target.fingerprint))
        if value is None:
            raise self.value_missing(address, target)
        with self.uow.stamp(principal):
            return self.write_version(
                address, value, "rollback", target.number, None, expected=expected
            )

    def _change(
        self,
        cred: Credential,
        address: SecretAddress,
        action: str,
        change: Callable[[Secret], list[Version] | None],
    ) -> tuple[Secret, list[str]]:
        uow = self.uow
        principal = uow.authorize(cred, Permission.MANAGE, action, address)

        def attempt() -> tuple[Secret, list[Version]]:
            secret = uow.existing_secret(address)
            doomed = change(secret) or []
            uow.save(secret)
            return secret, doomed

        with uow.stamp(principal):
            secret, doomed = uow.retrying(attempt)
        if action == "destroy":
            crashpoints.reached("after-destroy-append")
        return secret, self.remove_values(address, doomed)

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
