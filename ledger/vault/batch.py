"""Many values from a vault in one opening (`bulk_read`): keyring opens a new D-Bus
connection and Secret Service session for every `get` (about 20 ms each), which would make a
run of 20 secrets cost 20 of them."""

from __future__ import annotations

from contextlib import closing
from typing import Any

from ledger.errors import KeychainUnavailable
from ledger.vault.port import ValueVault


def get_many(vault: ValueVault, entries: list[str]) -> dict[str, str | None]:
    """The value under each of `entries` (None where there is none), as `vault.get` gives it."""
    from ledger.vault.keyring_vault import KeyringVault, _describe, _instance_of

    if isinstance(vault, KeyringVault) and _instance_of(
        vault._backend, "keyring.backends.SecretService", "Keyring"
    ):
        try:
            return secret_service_values(vault._backend, vault._namespace, entries)
        except KeychainUnavailable:
            raise
        except Exception as exc:  # keyring and secretstorage raise many kinds
            raise KeychainUnavailable(_describe(exc)) from None
    return {entry: vault.get(entry) for entry in entries}


def secret_service_values(backend: Any, service: str, entries: list[str]) -> dict[str, str | None]:
    """What keyring's Secret Service `backend.get_password(service, entry)` gives for each
    entry (the same collection, unlocking, search and choice of the first item found), over
    one D-Bus connection and one session."""
    from secretstorage.util import open_session

    collection = backend.get_preferred_collection()
    found: dict[str, str | None] = {}
    with closing(collection.connection):
        collection.session = open_session(collection.connection)
        for entry in entries:
            found[entry] = None
            for item in collection.search_items(backend._query(service, entry)):
                backend.unlock(item)
                found[entry] = item.get_secret().decode("utf-8")
                break
    return found
