"""The encrypted file vault: the value-vault contract plus its own security properties."""

from __future__ import annotations

import base64
import getpass
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring.backends.fail
import keyring.backends.null
import keyring.core
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from ledger.errors import KeychainUnavailable
from ledger.vault import encrypted_file as ef
from ledger.vault.encrypted_file import EncryptedFileKeyring
from ledger.vault.keyring_vault import KeyringVault, open_vault, select_backend
from tests.vault_contract import ListingContract, PersistedVaultContract

PASSPHRASE = "correct horse battery staple"
SERVICE = "secrets-ledger:test"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No passphrase source leaks in from the host, and no key survives from another test."""
    for name in (ef.PASSPHRASE_ENV, ef.PASSPHRASE_FILE_ENV, "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ef.HOME_ENV, str(tmp_path / "home"))
    ef.clear_key_cache()
    yield
    ef.clear_key_cache()


class _Stdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def kdf_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts key derivations through the module's `derive_key` seam."""
    calls: list[int] = []
    real = ef.derive_key

    def counting(passphrase: bytes, salt: bytes, params: ef.ScryptParams) -> bytes:
        calls.append(1)
        return real(passphrase, salt, params)

    monkeypatch.setattr(ef, "derive_key", counting)
    return calls


def _vault_file(tmp_path: Path) -> Path:
    return tmp_path / "vaultdir" / "vault.enc"


def _backend(path: Path, passphrase: str | None = PASSPHRASE) -> EncryptedFileKeyring:
    return EncryptedFileKeyring(path=str(path), passphrase=passphrase)


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# -- the contract -------------------------------------------------------------------------


class TestEncryptedFileVault(ListingContract, PersistedVaultContract):
    @pytest.fixture(autouse=True)
    def _backend(self, tmp_path: Path) -> None:
        self.path = _vault_file(tmp_path)
        self.backend = _backend(self.path)

    def make_vault(self, namespace: str = "contract") -> KeyringVault:
        return open_vault(self.backend, namespace)

    def raw_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.path.parent.iterdir()))


# -- the keyring backend API --------------------------------------------------------------


def test_get_of_unknown_entry_is_none_and_delete_raises(tmp_path: Path) -> None:
    backend = _backend(_vault_file(tmp_path))
    assert backend.get_password(SERVICE, "nobody") is None  # no file yet
    with pytest.raises(PasswordDeleteError):
        backend.delete_password(SERVICE, "nobody")
    backend.set_password(SERVICE, "somebody", "v")
    assert backend.get_password(SERVICE, "nobody") is None
    assert backend.get_password("other-service", "somebody") is None
    with pytest.raises(PasswordDeleteError):
        backend.delete_password(SERVICE, "nobody")


def test_entries_lists_the_usernames_of_one_service(tmp_path: Path) -> None:
    backend = _backend(_vault_file(tmp_path))
    assert backend.entries(SERVICE) == []
    for name in ("b/2", "a#1", "c:3"):
        backend.set_password(SERVICE, name, "v")
    backend.set_password("another", "x", "v")
    backend.delete_password(SERVICE, "c:3")
    assert backend.entries(SERVICE) == ["a#1", "b/2"]
    assert backend.entries("another") == ["x"]
    assert backend.entries("unknown") == []
    # Names are not secret: listing them needs no passphrase.
    assert EncryptedFileKeyring(path=str(backend.path)).entries(SERVICE) == ["a#1", "b/2"]


def test_constructing_reads_nothing_and_asks_for_nothing(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    EncryptedFileKeyring(path=str(path))  # no passphrase anywhere: must not fail yet
    assert not path.parent.exists()


def test_default_path_is_under_secrets_ledger_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert EncryptedFileKeyring().path == str(tmp_path / "home" / "vault.enc")
    monkeypatch.delenv(ef.HOME_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert EncryptedFileKeyring().path == str(tmp_path / "xdg" / "secrets-ledger" / "vault.enc")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    expected = tmp_path / "user" / ".local" / "share" / "secrets-ledger" / "vault.enc"
    assert EncryptedFileKeyring().path == str(expected)


def test_keyring_loads_it_by_name_with_no_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ef.PASSPHRASE_ENV, PASSPHRASE)
    backend = keyring.core.load_keyring("ledger.vault.encrypted_file.EncryptedFileKeyring")
    assert isinstance(backend, EncryptedFileKeyring)
    backend.set_password(SERVICE, "user", "value")
    assert (tmp_path / "home" / "vault.enc").exists()
    assert backend.get_password(SERVICE, "user") == "value"


def test_it_never_joins_keyrings_automatic_discovery() -> None:
    # Otherwise keyring's chainer would put it behind a real keychain (see the class).
    assert EncryptedFileKeyring not in set(KeyringBackend.get_viable_backends())
    assert EncryptedFileKeyring.priority == 0.5


def test_select_backend_uses_it_when_asked_for_the_file_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRETS_LEDGER_VAULT", "file")
    backend = select_backend(str(tmp_path / "ledger-home"))
    assert isinstance(backend, EncryptedFileKeyring)
    assert backend.path == str(tmp_path / "ledger-home" / "vault.enc")


@pytest.mark.parametrize(
    "backend",
    [
        keyring.backends.fail.Keyring(),  # type: ignore[no-untyped-call]
        keyring.backends.null.Keyring(),  # type: ignore[no-untyped-call]
    ],
    ids=str,
)
def test_keyring_vault_refuses_backends_that_store_nothing(backend: KeyringBackend) -> None:
    with pytest.raises(KeychainUnavailable, match="refusing keychain backend"):
        KeyringVault(backend, "ns")


# -- passphrases --------------------------------------------------------------------------


def test_wrong_passphrase_is_one_clear_line(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    KeyringVault(_backend(path), "ns").put("entry", "value")
    before = path.read_bytes()
    wrong = KeyringVault(_backend(path, "not the passphrase"), "ns")
    for attempt in (
        lambda: wrong.get("entry"),
        lambda: wrong.get("missing"),  # must not look like "no such secret"
        lambda: wrong.put("entry", "overwritten"),
        lambda: wrong.delete("entry"),
    ):
        with pytest.raises(KeychainUnavailable) as caught:
            attempt()
        assert str(caught.value) == f"wrong passphrase for the encrypted file vault at {path}"
        # Nothing chained: a CLI printing it shows one line, not a second traceback.
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None or caught.value.__suppress_context__
    assert path.read_bytes() == before


def test_passphrase_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _vault_file(tmp_path)
    _backend(path).set_password(SERVICE, "u", "v")
    monkeypatch.setenv(ef.PASSPHRASE_ENV, PASSPHRASE)
    assert _backend(path, None).get_password(SERVICE, "u") == "v"


def test_passphrase_file_0600_with_one_trailing_newline_stripped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _vault_file(tmp_path)
    _backend(path).set_password(SERVICE, "u", "v")
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(PASSPHRASE + "\n")
    secret_file.chmod(0o600)
    monkeypatch.setenv(ef.PASSPHRASE_FILE_ENV, str(secret_file))
    assert _backend(path, None).get_password(SERVICE, "u") == "v"


def test_passphrase_file_strips_only_one_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _vault_file(tmp_path)
    _backend(path, "ends with a newline\n").set_password(SERVICE, "u", "v")
    secret_file = tmp_path / "passphrase"
    secret_file.write_text("ends with a newline\n\n")
    secret_file.chmod(0o600)
    monkeypatch.setenv(ef.PASSPHRASE_FILE_ENV, str(secret_file))
    assert _backend(path, None).get_password(SERVICE, "u") == "v"


def test_passphrase_file_may_be_a_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `SECRETS_LEDGER_PASSPHRASE_FILE=<(pass show ledger)` hands over.
    path = _vault_file(tmp_path)
    _backend(path).set_password(SERVICE, "u", "v")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, PASSPHRASE.encode() + b"\n")
        os.close(write_end)
        monkeypatch.setenv(ef.PASSPHRASE_FILE_ENV, f"/dev/fd/{read_end}")
        assert _backend(path, None).get_password(SERVICE, "u") == "v"
    finally:
        os.close(read_end)


def test_passphrase_file_that_is_a_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ef.PASSPHRASE_FILE_ENV, str(tmp_path))
    with pytest.raises(KeychainUnavailable, match="neither a regular file nor a pipe"):
        _backend(_vault_file(tmp_path), None).set_password(SERVICE, "u", "v")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_passphrase_file_readable_by_others_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(PASSPHRASE + "\n")
    secret_file.chmod(mode)
    monkeypatch.setenv(ef.PASSPHRASE_FILE_ENV, str(secret_file))
    with pytest.raises(KeychainUnavailable) as caught:
        KeyringVault(_backend(_vault_file(tmp_path), None), "ns").put("e", "v")
    message = str(caught.value)
    assert f"{mode:04o}" in message
    assert f"chmod 600 {secret_file}" in message
    assert PASSPHRASE not in message
    assert not _vault_file(tmp_path).exists()


def test_missing_passphrase_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ef.PASSPHRASE_FILE_ENV, str(tmp_path / "absent"))
    with pytest.raises(KeychainUnavailable, match="cannot read SECRETS_LEDGER_PASSPHRASE_FILE"):
        _backend(_vault_file(tmp_path), None).set_password(SERVICE, "u", "v")


@pytest.mark.parametrize("source", ["argument", "environment", "file"])
def test_empty_passphrase_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    passphrase: str | None = None
    if source == "argument":
        passphrase = ""
    elif source == "environment":
        monkeypatch.setenv(ef.PASSPHRASE_ENV, "")
    else:
        secret_file = tmp_path / "passphrase"
        secret_file.write_text("\n")
        secret_file.chmod(0o600)
        monkeypatch.setenv(ef.PASSPHRASE_FILE_ENV, str(secret_file))
    with pytest.raises(KeychainUnavailable, match="empty passphrase is refused"):
        _backend(_vault_file(tmp_path), passphrase).set_password(SERVICE, "u", "v")


def test_no_passphrase_and_no_terminal_says_how_to_provide_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=False))
    monkeypatch.setattr(getpass, "getpass", pytest.fail)
    with pytest.raises(KeychainUnavailable) as caught:
        KeyringVault(_backend(_vault_file(tmp_path), None), "ns").put("e", "v")
    message = str(caught.value)
    assert "\n" not in message
    assert ef.PASSPHRASE_ENV in message
    assert ef.PASSPHRASE_FILE_ENV in message


def test_terminal_prompt_confirms_a_new_passphrase_and_asks_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kdf_calls: list[int]
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSPHRASE

    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True))
    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    path = _vault_file(tmp_path)
    _backend(path, None).set_password(SERVICE, "u", "v")
    assert len(prompts) == 2  # a new passphrase is typed twice
    assert _backend(path, None).get_password(SERVICE, "u") == "v"
    assert len(prompts) == 2
    assert len(kdf_calls) == 1
    assert _backend(path).get_password(SERVICE, "u") == "v"  # the same passphrase given


def test_terminal_prompt_mismatch_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["one passphrase", "another passphrase"])
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    with pytest.raises(KeychainUnavailable, match="did not match"):
        _backend(_vault_file(tmp_path), None).set_password(SERVICE, "u", "v")
    assert not _vault_file(tmp_path).exists()


def test_a_wrong_prompted_passphrase_is_asked_again_not_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _vault_file(tmp_path)
    _backend(path).set_password(SERVICE, "u", "v")
    answers = iter(["typo", PASSPHRASE])
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    backend = _backend(path, None)
    with pytest.raises(KeychainUnavailable, match="wrong passphrase"):
        backend.get_password(SERVICE, "u")
    assert backend.get_password(SERVICE, "u") == "v"


# -- key derivation -----------------------------------------------------------------------


def test_key_is_derived_once_per_process_per_file(tmp_path: Path, kdf_calls: list[int]) -> None:
    path = _vault_file(tmp_path)
    first = _backend(path)
    made_before_the_file = _backend(path)
    first.set_password(SERVICE, "a", "1")
    first.set_password(SERVICE, "b", "2")
    assert first.get_password(SERVICE, "a") == "1"
    first.delete_password(SERVICE, "b")
    assert len(kdf_calls) == 1
    # Other instances over the same file share the derived key.
    assert made_before_the_file.get_password(SERVICE, "a") == "1"
    later = _backend(path)
    later.set_password(SERVICE, "c", "3")
    assert later.get_password(SERVICE, "c") == "3"
    assert len(kdf_calls) == 1
    # Another file has its own salt, hence its own key.
    _backend(tmp_path / "elsewhere" / "vault.enc").set_password(SERVICE, "a", "1")
    assert len(kdf_calls) == 2


def test_kdf_parameters_and_salt_are_recorded_in_the_file(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    _backend(path).set_password(SERVICE, "u", "v")
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert {k: doc["kdf"][k] for k in ("name", "n", "r", "p", "length")} == {
        "name": "scrypt",
        "n": 2**15,
        "r": 8,
        "p": 1,
        "length": 32,
    }
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 16
    assert len(base64.b64decode(doc["entries"][SERVICE]["u"]["nonce"])) == 12


def test_each_write_uses_a_fresh_nonce(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    backend = _backend(path)
    nonces = set()
    for _ in range(5):
        backend.set_password(SERVICE, "u", "same value")
        nonces.add(json.loads(path.read_text())["entries"][SERVICE]["u"]["nonce"])
    assert len(nonces) == 5


# -- integrity ----------------------------------------------------------------------------


def test_tampered_ciphertext_is_detected_not_none(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    vault = KeyringVault(_backend(path), SERVICE)
    vault.put("entry", "value")
    vault.put("untouched", "fine")

    def flip(doc: dict[str, Any]) -> None:
        sealed = doc["entries"][SERVICE]["entry"]
        ct = bytearray(base64.b64decode(sealed["ct"]))
        ct[0] ^= 0x01
        sealed["ct"] = base64.b64encode(bytes(ct)).decode()

    _edit(path, flip)
    fresh = KeyringVault(_backend(path), SERVICE)
    with pytest.raises(KeychainUnavailable, match="failed its integrity check"):
        fresh.get("entry")
    assert fresh.get("untouched") == "fine"


def test_swapped_entries_are_detected_by_their_associated_data(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    vault = KeyringVault(_backend(path), SERVICE)
    vault.put("alice", "alice's value")
    vault.put("bob", "bob's value")

    def swap(doc: dict[str, Any]) -> None:
        users = doc["entries"][SERVICE]
        users["alice"], users["bob"] = users["bob"], users["alice"]

    _edit(path, swap)
    for entry in ("alice", "bob"):
        with pytest.raises(KeychainUnavailable, match=f"entry '{entry}'.*integrity"):
            vault.get(entry)


def test_entry_moved_to_another_service_is_detected(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    _backend(path).set_password("ledger-a", "key", "a's value")
    _edit(path, lambda doc: doc["entries"].update({"ledger-b": doc["entries"]["ledger-a"]}))
    with pytest.raises(KeychainUnavailable, match="integrity"):
        _backend(path).get_password("ledger-b", "key")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not valid JSON"),
        (b"\x00\xff garbage", "not valid JSON"),
        (b'{"format": "something else"}', "no vault header"),
        (b"[]", "no vault header"),
    ],
)
def test_corrupt_file_is_a_clear_error_and_is_not_overwritten(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = _vault_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    backend = _backend(path)
    attempts: list[Callable[[], object]] = [
        lambda: backend.get_password(SERVICE, "u"),
        lambda: backend.set_password(SERVICE, "u", "v"),
    ]
    for attempt in attempts:
        with pytest.raises(KeychainUnavailable, match=f"is corrupt.*{expected}"):
            attempt()
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(version=2), "newer than this program"),
        (lambda d: d["kdf"].update(salt="not base64!"), "salt is not base64"),
        (lambda d: d["kdf"].update(n=2**30), "scrypt n is out of range"),
        (lambda d: d["kdf"].update(n=1000), "not a power of two"),
        (lambda d: d.pop("entries"), "entries missing"),
        (lambda d: d["entries"]["s"]["u"].update(nonce="AAAA"), "nonce has the wrong length"),
        (lambda d: d["entries"]["s"]["u"].update(ct="AAAA"), "ciphertext is truncated"),
    ],
)
def test_damaged_header_or_entry_is_a_clear_error(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    path = _vault_file(tmp_path)
    _backend(path).set_password("s", "u", "v")
    _edit(path, change)
    with pytest.raises(KeychainUnavailable, match=expected):
        _backend(path).get_password("s", "u")


def test_tampered_passphrase_check_reads_as_wrong_passphrase(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    _backend(path).set_password(SERVICE, "u", "v")
    _edit(path, lambda d: d["check"].update(nonce=base64.b64encode(b"\x00" * 12).decode()))
    with pytest.raises(KeychainUnavailable, match="wrong passphrase"):
        _backend(path).get_password(SERVICE, "u")


# -- at rest ------------------------------------------------------------------------------


def test_raw_bytes_never_contain_the_value_or_the_passphrase(tmp_path: Path) -> None:
    path = _vault_file(tmp_path)
    value = "hunter2-very-distinctive-value"
    backend = _backend(path)
    backend.set_password(SERVICE, "u", value)
    backend.set_password(SERVICE, "other", "x")
    backend.set_password(SERVICE, "u", value)
    for file in path.parent.iterdir():
        raw = file.read_bytes()
        for needle in (value, PASSPHRASE):
            assert needle.encode() not in raw
            assert base64.b64encode(needle.encode()) not in raw
    assert backend.get_password(SERVICE, "u") == value


def test_file_is_private_and_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "vault.enc"
    backend = _backend(path)
    backend.set_password(SERVICE, "u", "v")
    backend.set_password(SERVICE, "w", "v")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["vault.enc", "vault.enc.lock"]


def test_an_invalid_value_is_refused_without_quoting_it(tmp_path: Path) -> None:
    vault = KeyringVault(_backend(_vault_file(tmp_path)), "ns")
    with pytest.raises(KeychainUnavailable) as caught:
        vault.put("e", "secret\ud800part")
    assert "secret" not in str(caught.value)
    assert "\ud800" not in str(caught.value)
