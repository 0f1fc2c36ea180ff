"""Many values from a vault in one opening (`bulk_read`)."""

from __future__ import annotations

from ledger.vault.port import ValueVault


def get_many(vault: ValueVault, entries: list[str]) -> dict[str, str | None]:
    """The value under each of `entries` (None where there is none), as `vault.get` gives it;
    in one keychain session where the vault can (`KeyringVault.get_many`)."""
    from ledger.vault.keyring_vault import KeyringVault

    if isinstance(vault, KeyringVault):
        return vault.get_many(entries)
    return {entry: vault.get(entry) for entry in entries}
