"""The encrypted file vault: a keyring backend for hosts with no OS keychain.

One JSON file holds every entry. Service and user names are stored in the clear (they name
entries, they are not secrets); each value is sealed on its own with AES-256-GCM under a key
derived from a passphrase with scrypt. The associated data of each entry is its (service,
username), so moving ciphertext between entries is detected, and a sealed constant in the header
tells a wrong passphrase apart from a tampered entry.

Every read-modify-write holds an exclusive `flock` on a sidecar lock file and replaces the vault
with `os.replace`, so readers never see a half-written file and concurrent writers lose nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import getpass
import hashlib
import hmac
import importlib.util
import json
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError, PasswordSetError

from ledger.errors import KeychainUnavailable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Names of environment variables, not secrets.
PASSPHRASE_ENV: Final = "SECRETS_LEDGER_PASSPHRASE"  # noqa: S105
PASSPHRASE_FILE_ENV: Final = "SECRETS_LEDGER_PASSPHRASE_FILE"  # noqa: S105
HOME_ENV: Final = "SECRETS_LEDGER_HOME"
VAULT_FILE_NAME: Final = "vault.enc"

FORMAT_NAME: Final = "secrets-ledger encrypted file vault"
FORMAT_VERSION: Final = 1

SALT_BYTES: Final = 16
NONCE_BYTES: Final = 12
KEY_BYTES: Final = 32
SCRYPT_MAXMEM: Final = 64 * 1024 * 1024
# Larger is not a vault this tool wrote (about 2,900 values of the 64 KiB maximum, or some
# 500,000 of 200 bytes): refused before it is read, so a planted sparse file cannot fill memory.
VAULT_FILE_LIMIT: Final = 256 * 1024 * 1024

_CHECK_PLAINTEXT: Final = b"secrets-ledger encrypted file vault: passphrase check"
_CHECK_AAD: Final = b"secrets-ledger/vault/v1/check"
_ENTRY_AAD_TAG: Final = "secrets-ledger/vault/v1/entry"

_HOW_TO_PROVIDE = (
    f"set {PASSPHRASE_ENV}, or {PASSPHRASE_FILE_ENV} to a file only you can read "
    "(chmod 600), or run from a terminal to be prompted"
)


@dataclass(frozen=True)
class ScryptParams:
    n: int = 2**15
    r: int = 8
    p: int = 1
    length: int = KEY_BYTES

    def as_json(self) -> dict[str, Any]:
        return {"name": "scrypt", "n": self.n, "r": self.r, "p": self.p, "length": self.length}


def derive_key(passphrase: bytes, salt: bytes, params: ScryptParams) -> bytes:
    """The file key. Module-level on purpose: tests count calls to it through this seam."""
    return hashlib.scrypt(
        passphrase,
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=SCRYPT_MAXMEM,
        dklen=params.length,
    )


# scrypt costs ~0.1 s and 32 MiB by design, so each (file, salt, passphrase) is derived once
# per process however many backend instances are made (keyring, select_backend and the doctor
# each build their own).
_KEY_CACHE: dict[tuple[str, bytes, bytes], bytes] = {}
# A prompted passphrase cannot be asked for again without annoying the operator; env and file
# sources are cheap to re-read, so only prompts are remembered across instances.
_PROMPTED: dict[str, bytes] = {}
_DERIVE_LOCK = threading.Lock()


def clear_key_cache() -> None:
    """Forget every derived key and prompted passphrase of this process."""
    with _DERIVE_LOCK:
        _KEY_CACHE.clear()
        _PROMPTED.clear()


def default_vault_path() -> str:
    """`$SECRETS_LEDGER_HOME/vault.enc`, else under the XDG data directory.

    Mirrors `ledger.store.config.default_home` (keep the two in step) without importing it: that
    module reaches the application and the event store, which a backend loaded by keyring
    itself (PYTHON_KEYRING_BACKEND) has no use for.
    """
    home = os.environ.get(HOME_ENV, "").strip()
    if home:
        return os.path.join(os.path.expanduser(home), VAULT_FILE_NAME)
    data = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(data, "secrets-ledger", VAULT_FILE_NAME)


@dataclass(frozen=True)
class _Sealed:
    nonce: bytes
    ciphertext: bytes

    def as_json(self) -> dict[str, str]:
        return {"nonce": _b64(self.nonce), "ct": _b64(self.ciphertext)}


@dataclass
class _VaultDoc:
    params: ScryptParams
    salt: bytes
    check: _Sealed
    entries: dict[str, dict[str, _Sealed]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kdf": {**self.params.as_json(), "salt": _b64(self.salt)},
            "check": self.check.as_json(),
            "entries": {
                service: {user: sealed.as_json() for user, sealed in users.items()}
                for service, users in self.entries.items()
            },
        }
        return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


class _Corrupt(Exception):
    """Internal: why a vault file could not be parsed (never holds file contents)."""


class EncryptedFileKeyring(KeyringBackend):
    """A keyring backend storing AES-256-GCM sealed values in one passphrase-protected file.

    Nothing is read, derived or prompted for until the first operation, so constructing one is
    free (keyring constructs backends it never uses).
    """

    # Explicit selection only: `select_backend` and PYTHON_KEYRING_BACKEND both work, because
    # keyring's loader checks `priority` and never `viable`. If it joined keyring's automatic
    # discovery, keyring's ChainerBackend would put it behind a real keychain and every lookup
    # miss would fall through to a passphrase prompt for a file the operator never chose.
    viable = False

    @properties.classproperty
    def priority(cls) -> float:
        if not hasattr(hashlib, "scrypt"):
            raise RuntimeError("hashlib.scrypt is unavailable (Python built without OpenSSL)")
        if importlib.util.find_spec("fcntl") is None:
            raise RuntimeError("the encrypted file vault needs POSIX file locking (fcntl)")
        return 0.5

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        passphrase: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = os.path.abspath(os.fspath(path) if path is not None else default_vault_path())
        self._explicit_passphrase = passphrase
        self._passphrase: bytes | None = None
        self._key: tuple[bytes, bytes] | None = None  # (salt, key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"

    # -- keyring API ------------------------------------------------------------------------

    def get_password(self, service: str, username: str) -> str | None:
        doc = self._read()
        if doc is None:
            return None
        # The passphrase is checked even when the entry is absent: a wrong passphrase must
        # never look like "no such secret".
        key = self._key_for(doc, creating=False)
        sealed = doc.entries.get(service, {}).get(username)
        if sealed is None:
            return None
        return self._open(key, sealed, service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        try:
            plaintext = password.encode("utf-8")
        except UnicodeEncodeError:
            # The codec's message quotes the offending character: keep it out.
            raise PasswordSetError("the value is not valid Unicode text") from None
        if self._key is None:
            # Prompting and scrypt (0.1 s) happen before taking the lock, so that other
            # processes are never kept waiting on them.
            existing = self._read()
            if existing is None:
                self._resolve_passphrase(creating=True)
            else:
                self._key_for(existing, creating=False)
        with self._locked():
            doc = self._read()
            if doc is None:
                doc = self._new_doc()
            key = self._key_for(doc, creating=False)
            nonce = os.urandom(NONCE_BYTES)
            ciphertext = _aead(key).encrypt(nonce, plaintext, _entry_aad(service, username))
            doc.entries.setdefault(service, {})[username] = _Sealed(nonce, ciphertext)
            self._write(doc)

    def delete_password(self, service: str, username: str) -> None:
        with self._locked():
            doc = self._read()
            if doc is None:
                raise PasswordDeleteError("no such entry")
            # Deleting needs the passphrase too, or anyone able to run us could erase values.
            self._key_for(doc, creating=False)
            users = doc.entries.get(service, {})
            if username not in users:
                raise PasswordDeleteError("no such entry")
            del users[username]
            if not users:
                del doc.entries[service]
            self._write(doc)

    def entries(self, service: str) -> list[str]:
        """Usernames stored under `service`. Names are not secret: no passphrase needed."""
        doc = self._read()
        if doc is None:
            return []
        return sorted(doc.entries.get(service, {}))

    # -- keys and passphrases ---------------------------------------------------------------

    def _new_doc(self) -> _VaultDoc:
        params = ScryptParams()
        salt = os.urandom(SALT_BYTES)
        passphrase = self._resolve_passphrase(creating=True)
        with _DERIVE_LOCK:
            key = derive_key(passphrase, salt, params)
            _KEY_CACHE[(self.path, salt, _passphrase_id(salt, passphrase))] = key
        nonce = os.urandom(NONCE_BYTES)
        check = _Sealed(nonce, _aead(key).encrypt(nonce, _CHECK_PLAINTEXT, _CHECK_AAD))
        self._key = (salt, key)
        return _VaultDoc(params=params, salt=salt, check=check)

    def _key_for(self, doc: _VaultDoc, *, creating: bool) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == doc.salt and self._check_opens(cached[1], doc.check):
            return cached[1]
        passphrase = self._resolve_passphrase(creating=creating)
        cache_key = (self.path, doc.salt, _passphrase_id(doc.salt, passphrase))
        # Derive under the lock so that threads racing on a cold cache derive once, not twice.
        with _DERIVE_LOCK:
            key = _KEY_CACHE.get(cache_key)
            if key is None:
                try:
                    key = derive_key(passphrase, doc.salt, doc.params)
                except (ValueError, MemoryError):
                    # Only a tampered header asks for parameters scrypt refuses.
                    raise KeychainUnavailable(
                        f"the encrypted file vault at {self.path} has unusable key "
                        "derivation parameters (corrupt or tampered with)"
                    ) from None
            if not self._check_opens(key, doc.check):
                _KEY_CACHE.pop(cache_key, None)
                # Let a later attempt ask again instead of replaying the wrong answer.
                _PROMPTED.pop(self.path, None)
                self._passphrase = None
                self._key = None
                raise KeychainUnavailable(
                    f"wrong passphrase for the encrypted file vault at {self.path}"
                )
            _KEY_CACHE[cache_key] = key
        self._key = (doc.salt, key)
        return key

    @staticmethod
    def _check_opens(key: bytes, check: _Sealed) -> bool:
        from cryptography.exceptions import InvalidTag

        try:
            plain = _aead(key).decrypt(check.nonce, check.ciphertext, _CHECK_AAD)
        except InvalidTag:
            return False
        return hmac.compare_digest(plain, _CHECK_PLAINTEXT)

    def _resolve_passphrase(self, *, creating: bool) -> bytes:
        if self._passphrase is None:
            passphrase = self._find_passphrase(creating=creating)
            if not passphrase:
                raise KeychainUnavailable(
                    f"an empty passphrase is refused for the encrypted file vault at {self.path}"
                )
            self._passphrase = passphrase
        return self._passphrase

    def _find_passphrase(self, *, creating: bool) -> bytes:
        if self._explicit_passphrase is not None:
            return _text_bytes(self._explicit_passphrase)
        if PASSPHRASE_ENV in os.environ:
            # A variable that is set but empty is a mistake, not a request to prompt.
            return _text_bytes(os.environ[PASSPHRASE_ENV])
        file_name = os.environ.get(PASSPHRASE_FILE_ENV, "")
        if file_name:
            return _read_passphrase_file(file_name)
        if sys.stdin is not None and sys.stdin.isatty():
            return self._prompt(creating=creating)
        raise KeychainUnavailable(
            f"no passphrase for the encrypted file vault at {self.path}: {_HOW_TO_PROVIDE}"
        )

    def _prompt(self, *, creating: bool) -> bytes:
        with _DERIVE_LOCK:
            remembered = _PROMPTED.get(self.path)
        if remembered is not None:
            return remembered
        try:
            if creating:
                first = getpass.getpass(
                    f"New passphrase for the encrypted file vault {self.path}: "
                )
                again = getpass.getpass("Repeat the passphrase: ")
                if not hmac.compare_digest(first.encode(), again.encode()):
                    raise KeychainUnavailable("the passphrases did not match; nothing was stored")
            else:
                first = getpass.getpass(f"Passphrase for the encrypted file vault {self.path}: ")
        except EOFError:
            raise KeychainUnavailable(
                f"no passphrase entered for the encrypted file vault at {self.path}"
            ) from None
        passphrase = _text_bytes(first)
        if passphrase:
            with _DERIVE_LOCK:
                _PROMPTED[self.path] = passphrase
        return passphrase

    # -- entries ----------------------------------------------------------------------------

    def _open(self, key: bytes, sealed: _Sealed, service: str, username: str) -> str:
        from cryptography.exceptions import InvalidTag

        try:
            plain = _aead(key).decrypt(
                sealed.nonce, sealed.ciphertext, _entry_aad(service, username)
            )
            return plain.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise KeychainUnavailable(
                f"entry {username!r} of {service!r} in the encrypted file vault at {self.path} "
                "failed its integrity check (tampered with, moved or corrupt)"
            ) from None

    # -- the file ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            # Never through a link: a dangling one would create a file wherever it points.
            fd = os.open(
                self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
            )
        except OSError as exc:
            raise KeychainUnavailable(
                f"cannot use the encrypted file vault at {self.path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            # Closing the descriptor releases the flock.
            os.close(fd)

    def _read(self) -> _VaultDoc | None:
        # No lock: the file is only ever replaced whole, so a reader sees one complete version.
        from pathlib import Path

        from ledger.home_files import UnsafeFile, read_regular

        try:
            # Not followed, not waited on, capped: a pipe or a link to /dev/zero in the home
            # must not hang or exhaust the command (docs/security.md, "The home directory").
            raw = read_regular(Path(self.path), VAULT_FILE_LIMIT).data
        except FileNotFoundError:
            return None
        except UnsafeFile as exc:
            raise KeychainUnavailable(
                f"the encrypted file vault {exc}: not a vault file; remove it and restore "
                "the vault from a backup"
            ) from None
        except OSError as exc:
            raise KeychainUnavailable(
                f"cannot read the encrypted file vault at {self.path}: {exc.strerror}"
            ) from None
        try:
            return _parse(raw)
        except _Corrupt as exc:
            raise KeychainUnavailable(
                f"the encrypted file vault at {self.path} is corrupt or not a vault file "
                f"({exc}); restore it from a backup"
            ) from None

    def _write(self, doc: _VaultDoc) -> None:
        directory = os.path.dirname(self.path)
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory
            )
            with os.fdopen(fd, "wb") as f:
                f.write(doc.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
            # The rename is only durable once the directory entry is on disk.
            dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise KeychainUnavailable(
                f"cannot write the encrypted file vault at {self.path}: {exc.strerror}"
            ) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _aead(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _passphrase_id(salt: bytes, passphrase: bytes) -> bytes:
    # Cache lookups need to tell passphrases apart without keeping them as dictionary keys.
    return hashlib.sha256(b"secrets-ledger/vault/cache" + salt + passphrase).digest()


def _entry_aad(service: str, username: str) -> bytes:
    # A JSON array is an unambiguous encoding: ("a:b", "c") and ("a", "b:c") differ.
    return json.dumps([_ENTRY_AAD_TAG, service, username], ensure_ascii=True).encode()


def _text_bytes(text: str) -> bytes:
    # surrogateescape gives back the exact bytes of a non-UTF-8 environment variable.
    return text.encode("utf-8", "surrogateescape")


def _read_passphrase_file(name: str) -> bytes:
    try:
        # O_NONBLOCK so that a named pipe nobody writes to cannot hang the open.
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise KeychainUnavailable(
            f"cannot read {PASSPHRASE_FILE_ENV} {name}: {exc.strerror}"
        ) from None
    try:
        # fstat on the open descriptor: the file checked is the file read.
        st = os.fstat(fd)
        # Pipes are accepted for `<(pass show ...)`-style process substitution.
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise KeychainUnavailable(
                f"{PASSPHRASE_FILE_ENV} {name} is neither a regular file nor a pipe"
            )
        if st.st_mode & 0o077:
            raise KeychainUnavailable(
                f"refusing {PASSPHRASE_FILE_ENV} {name}: it is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {name}"
            )
        os.set_blocking(fd, True)
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except OSError as exc:
        raise KeychainUnavailable(
            f"cannot read {PASSPHRASE_FILE_ENV} {name}: {exc.strerror}"
        ) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise _Corrupt(f"{what} is not text")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _Corrupt(f"{what} is not base64") from None
    if length is not None and len(data) != length:
        raise _Corrupt(f"{what} has the wrong length")
    return data


def _sealed(value: object, what: str) -> _Sealed:
    if not isinstance(value, dict):
        raise _Corrupt(f"{what} is not an object")
    ciphertext = _unb64(value.get("ct"), f"{what} ciphertext")
    if len(ciphertext) < 16:  # shorter than a GCM tag
        raise _Corrupt(f"{what} ciphertext is truncated")
    return _Sealed(_unb64(value.get("nonce"), f"{what} nonce", NONCE_BYTES), ciphertext)


def _int(value: object, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _Corrupt(f"{what} is out of range")
    return value


def _parse(raw: bytes) -> _VaultDoc:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise _Corrupt("not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise _Corrupt("no vault header")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise _Corrupt(f"format version {version} is newer than this program understands")
        raise _Corrupt("unknown format version")
    kdf = doc.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise _Corrupt("unknown key derivation")
    n = _int(kdf.get("n"), "scrypt n", 2, 2**20)
    if n & (n - 1):
        raise _Corrupt("scrypt n is not a power of two")
    params = ScryptParams(
        n=n,
        r=_int(kdf.get("r"), "scrypt r", 1, 64),
        p=_int(kdf.get("p"), "scrypt p", 1, 16),
        length=_int(kdf.get("length"), "key length", KEY_BYTES, KEY_BYTES),
    )
    salt = _unb64(kdf.get("salt"), "salt", SALT_BYTES)
    check = _sealed(doc.get("check"), "passphrase check")
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, dict):
        raise _Corrupt("entries missing")
    entries: dict[str, dict[str, _Sealed]] = {}
    for service, users in raw_entries.items():
        if not isinstance(users, dict):
            raise _Corrupt("an entry group is not an object")
        entries[service] = {user: _sealed(sealed, "an entry") for user, sealed in users.items()}
    return _VaultDoc(params=params, salt=salt, check=check, entries=entries)
