"""Fakes (not mocks) for domain tests: keychains that misbehave on purpose."""

from __future__ import annotations

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
