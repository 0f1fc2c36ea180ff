"""The `LedgerSettings` aggregate: one per ledger, created by `secrets init`."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ledger.stamping import LedgerAggregate

DEFAULT_RETENTION = 10
# Where a host keeps this ledger's values: its OS keychain (whatever `keyring` picks there) or
# the encrypted file vault in the ledger's home (ledger/vault/keyring_vault.py).
KEYCHAIN = "keychain"
FILE_VAULT = "file"
VAULT_KINDS = (KEYCHAIN, FILE_VAULT)
SETTINGS_ID = uuid5(NAMESPACE_URL, "https://secrets-ledger.invalid/settings")


class LedgerSettings(LedgerAggregate):
    @staticmethod
    def create_id(ledger_uid: str, retention: int) -> UUID:
        return SETTINGS_ID

    @event("Initialized")
    def __init__(self, ledger_uid: str, retention: int) -> None:
        # ledger_uid names this ledger's keychain namespace; it is random so two ledgers on
        # one host never share keychain entries.
        self.ledger_uid = ledger_uid
        self.retention = retention
        # HMAC of a fixed label under the fingerprint key: tells a right key from a wrong one
        # without revealing it. Recorded by the first `secrets ledger export-key`.
        self.key_check: str | None = None
        # host -> the vault kind its values are kept in, recorded by `secrets init` (and by
        # `ledger import-key` on a host joining a shared ledger). A host with no record (a
        # ledger from before the record existed) picks a vault as it always did.
        self.vaults: dict[str, str] = {}

    @event("RetentionChanged")
    def change_retention(self, retention: int) -> None:
        self.retention = retention

    # -- the fingerprint key, shared between hosts (`secrets ledger export-key/import-key`) --

    @event("FingerprintKeyExported")
    def record_key_export(self, key_check: str, host: str) -> None:
        self.key_check = key_check

    @event("FingerprintKeyImported")
    def record_key_import(self, key_check: str, host: str) -> None:
        self.key_check = key_check

    # -- where values are kept ---------------------------------------------------------------

    @event("VaultChosen")
    def choose_vault(self, host: str, vault: str) -> None:
        self.vaults = {**self.vaults, host: vault}
