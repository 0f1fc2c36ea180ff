"""The Secret Service (gnome-keyring, KWallet's bridge) through `secretstorage`, without keyring.

When `PYTHON_KEYRING_BACKEND` names keyring's own Secret Service backend
(`keyring.backends.SecretService.Keyring`), `select_backend` uses this class instead: it reads
and writes exactly the items keyring's backend does (same collection, attributes, label and
unlock rules, so either can read what the other wrote), but importing `keyring` costs more than
a whole `secrets get` should (about 150 ms: a helper of keyring pulls in http, ssl and email),
and keyring's loader opens a second D-Bus connection only to check the daemon is there.

D-Bus round trips for a read: Hello, the collection's existence and lock state, one search,
the item's lock state, one session and one GetSecret. An item is unlocked only when locked.
Errors are keyring's own exception types (imported only then), so messages stay the same.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

#: The keyring backend this class stands in for; also what `description` reports.
KEYRING_NAME = "keyring.backends.SecretService.Keyring"
APPID = "Python keyring library"  # keyring's SecretService `appid`, stored with each item


def _query(service: str, username: str, **extra: str) -> dict[str, str]:
    # keyring's "default" scheme (SchemeSelectable): the attribute names secret-tool sees.
    return {"username": username, "service": service, **extra}


class SecretServiceKeyring:
    """get/set/delete_password as keyring's SecretService backend does them."""

    #: What `KeyringVault.description` shows, as for keyring's class.
    keyring_name = KEYRING_NAME

    def _collection(self) -> Any:
        import secretstorage
        from secretstorage import exceptions

        bus: Any = None
        try:
            bus = secretstorage.dbus_init()
            collection = secretstorage.get_default_collection(bus)
        except exceptions.SecretStorageException as exc:
            if bus is not None:
                bus.close()
            # keyring's loader would have refused the backend ("Unable to initialize
            # SecretService"); here the first use says so, as a keychain error.
            from keyring.errors import InitError

            raise InitError(f"Failed to create the collection: {exc}.") from exc
        if collection.is_locked():
            collection.unlock()
            if collection.is_locked():  # the user dismissed the prompt
                bus.close()
                from keyring.errors import KeyringLocked

                raise KeyringLocked("Failed to unlock the collection!")
        return collection

    @staticmethod
    def _unlock(item: Any) -> None:
        if item.is_locked():
            item.unlock()
            if item.is_locked():  # the user dismissed the prompt
                from keyring.errors import KeyringLocked

                raise KeyringLocked("Failed to unlock the item!")

    def get_password(self, service: str, username: str) -> str | None:
        collection = self._collection()
        with closing(collection.connection):
            for item in collection.search_items(_query(service, username)):
                self._unlock(item)
                secret: bytes = item.get_secret()
                return secret.decode("utf-8")
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        collection = self._collection()
        attributes = _query(service, username, application=APPID)
        label = f"Password for '{username}' on '{service}'"
        with closing(collection.connection):
            collection.create_item(label, attributes, password, replace=True)

    def delete_password(self, service: str, username: str) -> None:
        collection = self._collection()
        with closing(collection.connection):
            for item in collection.search_items(_query(service, username)):
                item.delete()
                return
        from keyring.errors import PasswordDeleteError

        raise PasswordDeleteError("No such password!")
