"""The `LedgerSettings` aggregate: one per ledger, created by `secrets init`."""

from __future__ import annotations

from typing import Any
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
    def create_id(ledger_uid: str, retention: int, vaults: Any = None) -> UUID:
        return SETTINGS_ID

    @event("Initialized")
    def __init__(self, ledger_uid: str, retention: int, vaults: Any = None) -> None:
        # ledger_uid names this ledger's keychain namespace; it is random so two ledgers on
        # one host never share keychain entries.
        self.ledger_uid = ledger_uid
        self.retention = retention
        # HMAC of a fixed label under the fingerprint key: tells a right key from a wrong one
        # without revealing it. Recorded by the first `secrets ledger export-key`.
        self.key_check: str | None = None
        # host -> the vault kind its values are kept in, recorded by `secrets init` (in this
        # event: no extra event, so positions stay as they were) and by `ledger import-key` on
        # a host joining a shared ledger (`VaultChosen`). Absent from events written before the
        # record existed: such a ledger picks a vault as it always did. Kept as stored; the
        # application checks it before use (`SecretsLedger.recorded_vault`).
        self.vaults: Any = {} if vaults is None else vaults

    @event("RetentionChanged")
    def change_retention(self, retention: int) -> None:
        self.retention = retention

    # -- the senior-engineers, as a version every removal of one must move ------------------

    @event("SeniorEngineersChanged")
    def record_senior_engineers(self, senior_engineers: list[str]) -> None:
        """Who is still senior-engineer after one of them was revoked or demoted. Saved with
        that Operator's events, so two removals checked against the same state conflict in
        the store (one aggregate version, two writers): the loser reloads and checks again,
        and the ledger is never left without anyone who can administer it."""

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
        self.vaults = {**(self.vaults if isinstance(self.vaults, dict) else {}), host: vault}
