"""Fakes (not mocks) for domain tests: keychains that misbehave on purpose."""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from ledger.vault.memory import MemoryKeyring


class KeychainDown(Exception):
    pass


class FlakyKeyring(MemoryKeyring):
    """A keychain that starts failing after `fail_after` successful operations of a kind."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_sets_after: int | None = None
        self.fail_deletes = False
        self.sets = 0

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.fail_sets_after is not None and self.sets >= self.fail_sets_after:
            raise KeychainDown("keychain went away")
        self.sets += 1
        super().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        if self.fail_deletes:
            raise KeychainDown("keychain went away")
        super().delete_password(service, username)


class UnlistableKeyring(KeyringBackend):
    """A keychain that stores values but cannot list them (like macOS or Windows via keyring)."""

    priority = 0.1
    viable = False

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")
