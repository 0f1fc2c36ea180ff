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

FILE_VAULT_CLASS = "ledger.vault.encrypted_file.EncryptedFileKeyring"
# For a ledger whose values are in the keychain: the file vault would not hold them.
KEYCHAIN_HINT = (
    "run it where that keychain is reachable (a desktop session, or the Secret Service "
    "started and unlocked); the encrypted file vault does not hold this ledger's values"
)
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


def select_backend(home: str, recorded: str | None = None) -> KeyringBackend:
    """The backend that holds (or will hold) this ledger's values on this host.

    `recorded` is the vault kind the ledger records for this host (`keychain` or `file`,
    chosen at `secrets init`), or None for a ledger without the record. With a record, that
    vault or a clear error: never the other one. `SECRETS_LEDGER_VAULT` naming the other kind
    is a conflict (KeychainUnavailable); a keychain ledger never falls back to the file vault;
    a file-vault ledger ignores `PYTHON_KEYRING_BACKEND`.

    Without a record (today's choice): `SECRETS_LEDGER_VAULT=file` forces the encrypted file
    vault; an explicit `PYTHON_KEYRING_BACKEND` is honoured (and refused if insecure);
    otherwise keyring's own choice, falling back to the encrypted file vault when keyring found
    no keychain.
    """
    choice = os.environ.get("SECRETS_LEDGER_VAULT", "auto").strip().lower()
    if choice not in {"auto", "keyring", "file"}:
        raise KeychainUnavailable(
            f"SECRETS_LEDGER_VAULT must be auto, keyring or file (got {choice!r})"
        )
    if recorded is not None:
        return _recorded_backend(home, recorded, choice)
    if choice == "file":
        return _file_backend(home)
    backend = _keyring_backend(FIX_HINT)
    if _qualname(backend) == FILE_VAULT_CLASS:
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


def vault_kind(backend: object) -> str:
    """`file` for the encrypted file vault, `keychain` for any other (acceptable) backend."""
    return "file" if _qualname(backend) == FILE_VAULT_CLASS else "keychain"


def _recorded_backend(home: str, recorded: str, choice: str) -> KeyringBackend:
    if recorded == "file":
        if choice == "keyring":
            raise KeychainUnavailable(_conflict("the encrypted file vault", choice, "file"))
        return _file_backend(home)
    if choice == "file":
        raise KeychainUnavailable(_conflict("the keychain", choice, "keyring"))
    try:
        backend = _keyring_backend(KEYCHAIN_HINT)
    except KeychainUnavailable as exc:
        raise KeychainUnavailable(f"{_IN_KEYCHAIN}, and it cannot be reached here: {exc}") from None
    if _qualname(backend) == FILE_VAULT_CLASS:
        raise KeychainUnavailable(
            f"{_IN_KEYCHAIN}, but PYTHON_KEYRING_BACKEND names the encrypted file vault; unset it"
        )
    reason = refuse_reason(backend)
    if reason is not None:
        raise KeychainUnavailable(
            f"{_IN_KEYCHAIN}, and none usable is reachable here: {_qualname(backend)} is "
            f"refused, {reason}; {KEYCHAIN_HINT}"
        )
    return backend


_IN_KEYCHAIN = "the ledger records that this host keeps its values in the keychain"


def _conflict(where: str, choice: str, wanted: str) -> str:
    return (
        f"the ledger records that this host keeps its values in {where}, but "
        f"SECRETS_LEDGER_VAULT={choice} asks for the other vault; unset SECRETS_LEDGER_VAULT "
        f"(or set it to {wanted}) to use the ledger's own"
    )


def _keyring_backend(hint: str) -> KeyringBackend:
    """keyring's backend for this host (its choice, or PYTHON_KEYRING_BACKEND's)."""
    import keyring
    import keyring.errors

    try:
        return keyring.get_keyring()
    except keyring.errors.InitError as exc:
        raise KeychainUnavailable(f"keychain backend could not start: {exc}; {hint}") from None
    except (ImportError, AttributeError, ValueError):
        # PYTHON_KEYRING_BACKEND names a module or class that does not exist.
        named = os.environ.get("PYTHON_KEYRING_BACKEND", "")
        raise KeychainUnavailable(
            f"keychain backend {named!r} (PYTHON_KEYRING_BACKEND) cannot be loaded; {hint}"
        ) from None
    except Exception as exc:
        # Backends connect while they load (the Secret Service opens D-Bus): a missing bus or
        # daemon surfaces here as whatever the transport raised.
        named = os.environ.get("PYTHON_KEYRING_BACKEND") or "keyring's choice"
        raise KeychainUnavailable(
            f"keychain backend {named} could not start ({_first_line(exc)}); {hint}"
        ) from None


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

    @property
    def kind(self) -> str:
        return vault_kind(self._backend)

    def put(self, entry: str, value: str) -> None:
        try:
            self._backend.set_password(self._namespace, entry, value)
        except KeychainUnavailable:
            raise
        except Exception as exc:  # keyring backends raise many kinds; all mean "unavailable"
            raise KeychainUnavailable(_describe(exc)) from None

    def get_many(self, entries: list[str]) -> dict[str, str | None]:
        """The value under each of `entries` (None where there is none), as `get` gives it:
        on the Secret Service over one D-Bus connection and session (keyring opens a new
        pair for every `get`, about 20 ms each), elsewhere one `get` at a time."""
        if not _instance_of(self._backend, "keyring.backends.SecretService", "Keyring"):
            return {entry: self.get(entry) for entry in entries}
        try:
            return _secret_service_values(self._backend, self._namespace, entries)
        except KeychainUnavailable:
            raise
        except Exception as exc:  # keyring and secretstorage raise many kinds
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


def _secret_service_values(backend: Any, service: str, entries: list[str]) -> dict[str, str | None]:
    """What keyring's Secret Service `backend.get_password(service, entry)` gives for each
    entry (the same collection, unlocking, search and choice of the first item found), over
    one D-Bus connection and one session."""
    from contextlib import closing

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
