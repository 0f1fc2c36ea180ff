"""The contract every value-vault adapter satisfies (see ledger/vault/port.py).

Use it as a mixin: `class TestXVault(VaultContract)` implementing `make_vault`, and `raw_bytes`
when the adapter persists to disk. The class name has no `Test` prefix so pytest collects the
contract only through its subclasses.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from ledger.vault.keyring_vault import KeyringVault
from ledger.vault.port import ListableVault

UNICODE_VALUES = [
    pytest.param("pâss wörd", id="latin-accents"),
    pytest.param("🔑🎉👩‍👩‍👧‍👦 emoji with ZWJ sequences", id="emoji"),
    pytest.param("秘密の値 — 비밀 — секрет", id="cjk-cyrillic"),
    pytest.param("שלום مرحبا mixed RTL", id="rtl"),
    pytest.param("e\u0301 combining vs é precomposed", id="combining"),
]

AWKWARD_VALUES = [
    pytest.param("line one\nline two\r\nline three\n", id="newlines"),
    pytest.param('she said "it\'s" `fine`', id="quotes"),
    pytest.param("C:\\path\\to\\n\\x00\\\\", id="backslashes"),
    pytest.param('{"json": "looking", "value": [1, 2]}', id="json-like"),
    pytest.param("  \tleading and trailing whitespace\t  ", id="whitespace"),
    pytest.param("$(rm -rf /); `id`; ${HOME} %s %n", id="shell-and-format"),
]

ENTRY_NAMES = [
    "prod/db/password",
    "prod#3",
    "svc:key:v2",
    "a/b#c:d",
    "/leading-and-trailing/",
    "::",
]


class VaultContract:
    """Contract cases for any `KeyringVault` adapter.

    Within one test, every `make_vault` call must return a vault over the same backend
    (pytest makes a fresh test-class instance per test, so per-test state fits on `self`).
    Implementations may rewrite `namespace` (for example with a per-test prefix on a shared
    keychain) as long as distinct names stay distinct.
    """

    def make_vault(self, namespace: str = "contract") -> KeyringVault:
        raise NotImplementedError

    # -- basic behaviour -------------------------------------------------------------------

    def test_put_then_get_returns_the_value(self) -> None:
        vault = self.make_vault()
        vault.put("entry", "s3cr3t")
        assert vault.get("entry") == "s3cr3t"

    def test_put_overwrites_the_previous_value(self) -> None:
        vault = self.make_vault()
        vault.put("entry", "first")
        vault.put("entry", "second")
        assert vault.get("entry") == "second"

    def test_get_of_a_missing_entry_is_none(self) -> None:
        vault = self.make_vault()
        assert vault.get("never-written") is None

    def test_delete_is_true_once_then_false(self) -> None:
        vault = self.make_vault()
        vault.put("entry", "value")
        assert vault.delete("entry") is True
        assert vault.get("entry") is None
        assert vault.delete("entry") is False

    def test_delete_of_a_never_written_entry_is_false(self) -> None:
        assert self.make_vault().delete("never-written") is False

    def test_entries_are_independent(self) -> None:
        vault = self.make_vault()
        vault.put("one", "1")
        vault.put("two", "2")
        vault.delete("one")
        assert vault.get("one") is None
        assert vault.get("two") == "2"

    def test_many_values_in_one_opening_are_what_get_gives(self) -> None:
        from ledger.vault.batch import get_many

        vault = self.make_vault()
        vault.put("one", "1")
        vault.put("two", "zwei \u00e9 $x")
        vault.put("empty", "")
        entries = ["two", "missing", "one", "empty"]
        assert get_many(vault, entries) == {e: vault.get(e) for e in entries}
        assert get_many(vault, entries) == {
            "two": "zwei \u00e9 $x",
            "missing": None,
            "one": "1",
            "empty": "",
        }

    def test_empty_value_is_stored_not_missing(self) -> None:
        vault = self.make_vault()
        vault.put("empty", "")
        assert vault.get("empty") == ""

    def test_description_names_the_backend(self) -> None:
        assert self.make_vault().description.strip()

    # -- namespaces ------------------------------------------------------------------------

    def test_namespaces_over_one_backend_are_isolated(self) -> None:
        first = self.make_vault("ledger-one")
        second = self.make_vault("ledger-two")
        first.put("shared-name", "from one")
        assert second.get("shared-name") is None
        second.put("shared-name", "from two")
        assert first.get("shared-name") == "from one"
        assert second.get("shared-name") == "from two"
        assert first.delete("shared-name") is True
        assert second.get("shared-name") == "from two"
        assert second.delete("shared-name") is True

    # -- values ----------------------------------------------------------------------------

    @pytest.mark.parametrize("value", UNICODE_VALUES)
    def test_unicode_values_round_trip(self, value: str) -> None:
        vault = self.make_vault()
        vault.put("unicode", value)
        assert vault.get("unicode") == value

    @pytest.mark.parametrize("value", AWKWARD_VALUES)
    def test_awkward_values_round_trip_exactly(self, value: str) -> None:
        vault = self.make_vault()
        vault.put("awkward", value)
        assert vault.get("awkward") == value

    def test_a_64_kib_value_round_trips(self) -> None:
        chunk = "0123456789abcdef🙂\n"  # multi-byte characters spread through the value
        value = (chunk * (64 * 1024 // len(chunk) + 1))[: 64 * 1024]
        vault = self.make_vault()
        vault.put("large", value)
        assert vault.get("large") == value

    # -- entry names -----------------------------------------------------------------------

    def test_entry_names_with_separator_characters_are_distinct(self) -> None:
        vault = self.make_vault()
        for name in ENTRY_NAMES:
            vault.put(name, f"value of {name}")
        for name in ENTRY_NAMES:
            assert vault.get(name) == f"value of {name}"
        assert vault.delete("a/b#c:d") is True
        assert vault.get("a/b#c:d") is None
        assert vault.get("prod#3") == "value of prod#3"

    def test_listing_capability_is_as_declared(self) -> None:
        # Declared by inheriting ListingContract, not detected, so that an adapter that loses
        # the capability fails here instead of quietly dropping the listing cases.
        assert isinstance(self.make_vault(), ListableVault) is isinstance(self, ListingContract)


class PersistedVaultContract(VaultContract):
    """The contract plus the at-rest case, for adapters that write to disk."""

    def raw_bytes(self) -> bytes:
        """Everything the adapter has persisted."""
        raise NotImplementedError

    def test_values_are_not_readable_in_the_persisted_bytes(self) -> None:
        value = f"plaintext-canary-{uuid.uuid4().hex} ünïcode 🐤"
        vault = self.make_vault()
        vault.put("canary", value)
        raw = self.raw_bytes()
        encoded = value.encode()
        forms = {
            "utf-8": encoded,
            "utf-16": value.encode("utf-16-le"),
            "base64": base64.b64encode(encoded),
            "hex": encoded.hex().encode(),
            "ascii prefix": b"plaintext-canary-",
        }
        leaked = [name for name, form in forms.items() if form in raw]
        assert leaked == [], f"value readable in persisted bytes as {leaked}"


class ListingContract:
    """The listing cases, for adapters that can name their entries (`ListableVault`): a test
    class inherits this beside `VaultContract` (or `PersistedVaultContract`)."""

    def make_vault(self, namespace: str = "contract") -> KeyringVault:
        raise NotImplementedError

    def _listable(self, namespace: str = "contract") -> ListableVault:
        vault = self.make_vault(namespace)
        assert isinstance(vault, ListableVault)
        return vault

    def test_entries_of_an_empty_namespace_is_empty(self) -> None:
        assert self._listable().entries() == []

    def test_entries_names_what_was_put_and_not_what_was_deleted(self) -> None:
        vault = self._listable()
        for name in ENTRY_NAMES:
            vault.put(name, f"value of {name}")
        vault.put("prod#3", "overwritten once")
        assert vault.delete("a/b#c:d") is True
        assert vault.entries() == sorted(n for n in ENTRY_NAMES if n != "a/b#c:d")

    def test_entries_are_only_this_namespace(self) -> None:
        first = self._listable("ledger-one")
        second = self._listable("ledger-two")
        first.put("mine", "1")
        second.put("theirs", "2")
        assert first.entries() == ["mine"]
        assert second.entries() == ["theirs"]

    def test_entries_hold_names_never_values(self) -> None:
        vault = self._listable()
        value = f"listing-canary-{uuid.uuid4().hex}"
        vault.put("entry", value)
        names = vault.entries()
        assert names == ["entry"]
        assert not [n for n in names if value in n]
