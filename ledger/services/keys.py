"""The fingerprint key, for a ledger shared between hosts: export it here, import it there.

Both record what they did on the settings with the key's check value (an HMAC under the key,
bound to the ledger uid), so an import can tell the right key from a wrong one.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from ledger.access.policy import Permission
from ledger.errors import IntegrityFailure, ValidationFailed
from ledger.settings import KEYCHAIN

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.application import SecretsLedger
    from ledger.unit_of_work import UnitOfWork

KEY_EXPORT_PREFIX = "slk1"


class KeysService:
    def __init__(self, app: SecretsLedger, uow: UnitOfWork) -> None:
        self.app = app
        self.uow = uow

    def _key_check(self, key: bytes) -> str:
        label = b"secrets-ledger fingerprint key check\x00" + self.app.settings.ledger_uid.encode()
        return hmac.new(key, label, hashlib.sha256).hexdigest()[:32]

    def export_key(self, cred: Credential) -> str:
        """The fingerprint key as one line (`slk1.<ledger uid>.<key>`) for another host.

        Records who exported it, from where, and the key's check value (so that an import can
        tell the right key from a wrong one). Only a senior-engineer may export.
        """
        app, uow = self.app, self.uow
        principal = uow.authorize(cred, Permission.ADMIN, "export-key")
        key = app.fingerprint_key()
        check = self._key_check(key)

        def attempt() -> None:
            settings = app.fresh_settings()  # another host may have changed the settings
            if settings.key_check is not None and not hmac.compare_digest(
                settings.key_check, check
            ):
                raise IntegrityFailure(
                    "the fingerprint key in this keychain is not the key this ledger's "
                    "fingerprints were made with; export it from another host"
                )
            settings.record_key_export(check, app.host)
            uow.save(settings)

        with uow.stamp(principal):
            uow.retrying(attempt)
        return f"{KEY_EXPORT_PREFIX}.{app.settings.ledger_uid}.{key.hex()}"

    def import_key(self, cred: Credential, exported: str) -> bool:
        """Put an exported fingerprint key into this host's keychain; False if already there."""
        from ledger.vault.keyring_vault import KeyringVault

        app, uow = self.app, self.uow
        principal = uow.authorize(cred, Permission.MANAGE, "import-key")
        key, check = self._checked_export(exported)
        if not self._put_key(key):
            return False
        vault = app.vault
        kind = vault.kind if isinstance(vault, KeyringVault) else KEYCHAIN

        def attempt() -> None:
            fresh = app.fresh_settings()
            fresh.record_key_import(check, app.host)
            if app.host not in fresh.vaults:
                # This host joins the ledger here: its values go where its key now is.
                fresh.choose_vault(app.host, kind)
            uow.save(fresh)

        with uow.stamp(principal):
            uow.retrying(attempt)
        return True

    def _checked_export(self, exported: str) -> tuple[bytes, str]:
        """The key an exported line holds, and its check value; ValidationFailed unless it
        is a well-formed export of this ledger's recorded key."""
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
        settings = self.app.fresh_settings()  # the export may have just been recorded elsewhere
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
        return key, check

    def _put_key(self, key: bytes) -> bool:
        """Put `key` into this host's vault; False if it is there already. A different
        fingerprint key of this ledger there is never replaced."""
        from ledger.application import FINGERPRINT_KEY_ENTRY

        vault = self.app.vault
        existing = vault.get(FINGERPRINT_KEY_ENTRY)
        if existing is not None:
            if hmac.compare_digest(existing, key.hex()):
                return False
            raise IntegrityFailure(
                f"this keychain ({vault.description}) already holds a different "
                "fingerprint key for this ledger; remove it first"
            )
        vault.put(FINGERPRINT_KEY_ENTRY, key.hex())
        return True
