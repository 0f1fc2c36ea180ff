"""The value vault port: where secret values live, outside the event store.

Every adapter stores opaque strings under an entry name inside one namespace (one ledger).
Adapters are keyring backends wrapped by `KeyringVault`; the contract every adapter must
satisfy is in tests/vault_contract.py.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class ValueVault(Protocol):
    """Stores secret values by entry name. Entry names never contain a value."""

    @property
    def description(self) -> str:
        """Human-readable name of the backend (shown by `secrets doctor`)."""
        ...

    def put(self, entry: str, value: str) -> None:
        """Store `value` under `entry`, replacing any previous value. Raises KeychainUnavailable."""
        ...

    def get(self, entry: str) -> str | None:
        """The value under `entry`, or None. Raises KeychainUnavailable."""
        ...

    def delete(self, entry: str) -> bool:
        """Remove `entry`; True if it existed. Raises KeychainUnavailable."""
        ...


@runtime_checkable
class ListableVault(ValueVault, Protocol):
    """A vault that can also name the entries of its namespace (for `secrets doctor`).

    Optional: some keychains (macOS, Windows through keyring) cannot list, and `doctor` then
    finds orphaned entries through the intent journal only.
    """

    def entries(self) -> list[str]:
        """The entry names in this vault's namespace, sorted; never values.

        Reads no secret and never prompts: a locked keychain raises KeychainUnavailable.
        """
        ...
