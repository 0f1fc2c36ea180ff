"""The value-vault contract over the in-memory keyring used by domain tests."""

from __future__ import annotations

import pytest

from ledger.vault.keyring_vault import KeyringVault, open_vault
from ledger.vault.memory import MemoryKeyring
from tests.vault_contract import ListingContract, VaultContract


class TestMemoryVault(ListingContract, VaultContract):
    @pytest.fixture(autouse=True)
    def _backend(self) -> None:
        self.backend = MemoryKeyring()

    def make_vault(self, namespace: str = "contract") -> KeyringVault:
        return open_vault(self.backend, namespace)
