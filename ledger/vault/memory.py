"""An in-memory keyring backend: fast unit tests of the domain only, never a real vault."""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    priority = 0.1
    # Never chosen by keyring's discovery: only tests construct it explicitly.
    viable = False

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("not found")

    def usernames(self, service: str) -> list[str]:
        """The entry names stored under `service` (the listing `KeyringVault.entries` uses)."""
        return sorted(u for (s, u) in self.entries if s == service)
