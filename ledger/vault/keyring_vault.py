"""Adapter from the value-vault port to a `keyring` backend, and the choice of backend.

Insecure backends (fail, null, any plaintext file backend) are refused: a value must never be
written where it is readable without a key. On a host with no keychain the encrypted file vault
(ledger/vault/encrypted_file.py) is used instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

from ledger.errors import KeychainUnavailable

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

# Backends known to store values in plaintext or not at all.
_REFUSED_BACKENDS = {
    "keyring.backends.fail.Keyring": "it stores nothing (no keychain found)",
    "keyring.backends.null.Keyring": "it silently discards values",
    "keyrings.alt.file.PlaintextKeyring": "it stores values in plaintext",
    "keyrings.alt.file.EncryptedKeyring": "it has no integrity check",
}

FIX_HINT = (
    "install and unlock an OS keychain (gnome-keyring / KWallet / macOS Keychain), "
    "or use the encrypted file vault: export SECRETS_LEDGER_VAULT=file and set "
    "SECRETS_LEDGER_PASSPHRASE or SECRETS_LEDGER_PASSPHRASE_FILE"
)


def _qualname(backend: object) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def refuse_reason(backend: object) -> str | None:
    """Why `backend` may not hold values, or None when it is acceptable."""
    name = _qualname(backend)
    if name in _REFUSED_BACKENDS:
        return _REFUSED_BACKENDS[name]
    if "plaintext" in name.lower():
        return "it stores values in plaintext"
    chained = getattr(backend, "backends", None)
    if chained is not None:
        members = list(chained)
        if not members:
            return "no keychain backend is available"
        # A chain writes to its first member that accepts: every member must be acceptable.
        for member in members:
            reason = refuse_reason(member)
            if reason is not None:
                return f"it chains {_qualname(member)}, and {reason}"
    return None


def select_backend(home: str) -> KeyringBackend:
    """The best acceptable backend for this host.

    Order: `SECRETS_LEDGER_VAULT=file` forces the encrypted file vault; an explicit
    `PYTHON_KEYRING_BACKEND` is honoured (and refused if insecure); otherwise keyring's own
    choice, falling back to the encrypted file vault when keyring found no keychain.
    """
    choice = os.environ.get("SECRETS_LEDGER_VAULT", "auto").strip().lower()
    if choice not in {"auto", "keyring", "file"}:
        raise KeychainUnavailable(
            f"SECRETS_LEDGER_VAULT must be auto, keyring or file (got {choice!r})"
        )
    if choice == "file":
        return _file_backend(home)

    import keyring
    import keyring.errors

    try:
        backend = keyring.get_keyring()
    except keyring.errors.InitError as exc:
        raise KeychainUnavailable(f"keychain backend could not start: {exc}; {FIX_HINT}") from None
    except (ImportError, AttributeError, ValueError):
        # PYTHON_KEYRING_BACKEND names a module or class that does not exist.
        named = os.environ.get("PYTHON_KEYRING_BACKEND", "")
        raise KeychainUnavailable(
            f"keychain backend {named!r} (PYTHON_KEYRING_BACKEND) cannot be loaded; {FIX_HINT}"
        ) from None
    except Exception as exc:
        # Backends connect while they load (the Secret Service opens D-Bus): a missing bus or
        # daemon surfaces here as whatever the transport raised.
        named = os.environ.get("PYTHON_KEYRING_BACKEND") or "keyring's choice"
        raise KeychainUnavailable(
            f"keychain backend {named} could not start ({_first_line(exc)}); {FIX_HINT}"
        ) from None
    if _qualname(backend) == "ledger.vault.encrypted_file.EncryptedFileKeyring":
        # keyring built it without arguments; the vault file belongs in this ledger's home.
        return _file_backend(home)
    reason = refuse_reason(backend)
    if reason is None:
        return backend
    explicit = os.environ.get("PYTHON_KEYRING_BACKEND") or choice == "keyring"
    if explicit:
        raise KeychainUnavailable(
            f"refusing keychain backend {_qualname(backend)}: {reason}; {FIX_HINT}"
        )
    return _file_backend(home)


def _file_backend(home: str) -> KeyringBackend:
    from ledger.vault.encrypted_file import EncryptedFileKeyring

    return EncryptedFileKeyring(path=os.path.join(home, "vault.enc"))


class KeyringVault:
    """A `ValueVault` over any acceptable keyring backend, in the namespace of one ledger."""

    def __init__(self, backend: KeyringBackend, namespace: str) -> None:
        reason = refuse_reason(backend)
        if reason is not None:
            raise KeychainUnavailable(
                f"refusing keychain backend {_qualname(backend)}: {reason}; {FIX_HINT}"
            )
        self._backend = backend
        self._namespace = namespace

    @property
    def description(self) -> str:
        return _qualname(self._backend)

    def put(self, entry: str, value: str) -> None:
        try:
            self._backend.set_password(self._namespace, entry, value)
        except KeychainUnavailable:
            raise
        except Exception as exc:  # keyring backends raise many kinds; all mean "unavailable"
            raise KeychainUnavailable(_describe(exc)) from None

    def get(self, entry: str) -> str | None:
        try:
            value: str | None = self._backend.get_password(self._namespace, entry)
        except KeychainUnavailable:
            raise
        except Exception as exc:
            raise KeychainUnavailable(_describe(exc)) from None
        return value

    def delete(self, entry: str) -> bool:
        import keyring.errors

        try:
            self._backend.delete_password(self._namespace, entry)
        except keyring.errors.PasswordDeleteError:
            return False
        except KeychainUnavailable:
            raise
        except Exception as exc:
            raise KeychainUnavailable(_describe(exc)) from None
        return True


class ListableKeyringVault(KeyringVault):
    """A `KeyringVault` whose backend can name the entries of a namespace (`ListableVault`)."""

    def __init__(
        self, backend: KeyringBackend, namespace: str, lister: Callable[[str], list[str]]
    ) -> None:
        super().__init__(backend, namespace)
        self._lister = lister

    def entries(self) -> list[str]:
        try:
            names = self._lister(self._namespace)
        except KeychainUnavailable:
            raise
        except Exception as exc:
            raise KeychainUnavailable(_describe(exc)) from None
        return sorted(set(names))


def open_vault(backend: KeyringBackend, namespace: str) -> KeyringVault:
    """The vault over `backend` in `namespace`: a `ListableVault` when the backend can list."""
    lister = _lister(backend)
    if lister is None:
        return KeyringVault(backend, namespace)
    return ListableKeyringVault(backend, namespace, lister)


def _instance_of(backend: object, module: str, name: str) -> bool:
    # Without importing: an instance of a class exists only once its module is loaded, and
    # importing keyring's Secret Service module costs D-Bus libraries a command may not need.
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(backend, cls)


def _lister(backend: KeyringBackend) -> Callable[[str], list[str]] | None:
    """How to list a namespace of `backend`, or None (a chain, macOS, Windows, ...)."""
    found: Any = backend
    if _instance_of(backend, "ledger.vault.encrypted_file", "EncryptedFileKeyring"):
        return found.entries  # type: ignore[no-any-return]
    if _instance_of(backend, "ledger.vault.memory", "MemoryKeyring"):
        return found.usernames  # type: ignore[no-any-return]
    if _instance_of(backend, "keyring.backends.SecretService", "Keyring"):
        return lambda service: secret_service_entries(found, service)
    return None


def secret_service_entries(backend: Any, service: str) -> list[str]:
    """Usernames keyring's Secret Service `backend` stored under `service`.

    Searches the backend's collection by the attributes keyring itself writes (its scheme's
    service attribute; `application` is not matched, so entries made by other tools with the
    same attributes, e.g. `secret-tool`, are listed too). Reads attributes only, never a
    secret, and never unlocks: a locked collection would need a prompt, so it is reported as
    an unavailable keychain instead.
    """
    import secretstorage
    from secretstorage.collection import DEFAULT_COLLECTION
    from secretstorage.exceptions import ItemNotFoundException

    scheme = backend.schemes[backend.scheme]
    query: dict[str, str] = backend._query(service)
    path = getattr(backend, "preferred_collection", DEFAULT_COLLECTION)
    connection = secretstorage.dbus_init()
    with closing(connection):
        try:
            collection = secretstorage.Collection(connection, path)
        except ItemNotFoundException:
            return []  # no collection yet: nothing was ever stored
        if collection.is_locked():
            raise KeychainUnavailable(
                "the keychain collection is locked, so its entries cannot be listed without "
                f"a prompt; unlock it and run again; {FIX_HINT}"
            )
        names: list[str] = []
        for item in collection.search_items(query):
            attributes = item.get_attributes()
            name = attributes.get(scheme["username"])
            if attributes.get(scheme["service"]) == service and name is not None:
                names.append(name)
        return names


def _first_line(exc: Exception) -> str:
    # The exception text of a backend never holds the value (it is not passed in messages),
    # but keep only the type and first line to stay short.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}"


def _describe(exc: Exception) -> str:
    return f"keychain error ({_first_line(exc)}); {FIX_HINT}"
