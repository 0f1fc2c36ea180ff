"""Many values read in one process for one consumer run (`secrets run`, `export`, `inject`).

One authorisation, one keychain opening (`get_many`), one transaction for the read records:
every value is its own `SecretRead` event naming the run (`purpose`), and either every read
is recorded or none is and no value is returned. All secrets are loaded and all values
fetched before anything is recorded, so a missing one (not found, deleted, a value not in
this keychain) fails the whole run with nothing recorded as read and nothing served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ledger.access.policy import Permission
from ledger.entries import entry_name

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger
    from ledger.secret import Version


class ReadValue(NamedTuple):
    address: SecretAddress
    version: Version
    value: str


def read_many(
    ledger: SecretsLedger,
    cred: Credential,
    addresses: list[SecretAddress],
    action: str,
    purpose: str,
) -> list[ReadValue]:
    """The current value of each of `addresses` (in that order), each read recorded with
    `purpose`; raises PermissionDenied (the denial recorded), NotFound, KeychainUnavailable
    or IntegrityFailure before anything is recorded as read."""
    from ledger.records import ReadReceipt
    from ledger.vault.batch import get_many

    principal = ledger.authorize(cred, Permission.READ, action)
    vault = ledger.vault  # opened before the loads, so that they can use sealed snapshots
    chosen: list[tuple[SecretAddress, Version, str]] = []
    for address in addresses:
        version = ledger.uow.existing_secret(address).readable_version()
        chosen.append((address, version, entry_name(address, version.number, version.fingerprint)))
    values = get_many(vault, [entry for _, _, entry in chosen])
    found: list[ReadValue] = []
    for address, version, entry in chosen:
        value = values.get(entry)
        if value is None:
            raise ledger.secrets.value_missing(address, version)
        found.append(ReadValue(address, version, value))
    receipts = [
        ReadReceipt(a.environment, a.service, a.name, v.number, purpose) for a, v, _ in found
    ]
    if receipts:  # a template without references reads nothing
        # Fail closed: reads that cannot be recorded are not served.
        with ledger.uow.stamp(principal):
            ledger.uow.save(*receipts)
    return found
