"""Fuzz the encrypted vault file: parsing raises only its internal _Corrupt, and the backend
turns every bad file into KeychainUnavailable (never a traceback, never file contents)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import atheris
from _common import Finding, main

with atheris.instrument_imports():
    from ledger.errors import KeychainUnavailable
    from ledger.vault import encrypted_file
    from ledger.vault.encrypted_file import EncryptedFileKeyring

PATH = Path(tempfile.mkdtemp(prefix="fuzz-vault-")) / "vault.enc"
CHEAP = 2**12  # scrypt work above this per input would starve the fuzzer


def test_one_input(data: bytes) -> None:
    PATH.write_bytes(data)
    doc = None
    with contextlib.suppress(encrypted_file._Corrupt):
        doc = encrypted_file._parse(data)
    backend = EncryptedFileKeyring(path=PATH, passphrase="fuzz passphrase")
    try:
        names = backend.entries("secrets-ledger:fuzz")
    except KeychainUnavailable as exc:
        if doc is not None:
            raise Finding("a file that parses was refused by entries()") from None
        if len(data) >= 16 and data.decode("latin-1") in str(exc):
            raise Finding("the file's contents appear in the error") from None
        return
    if not all(isinstance(n, str) for n in names):
        raise Finding("entry names are not text")
    if doc is not None and doc.params.n * doc.params.r <= CHEAP:
        with contextlib.suppress(KeychainUnavailable):
            backend.get_password("secrets-ledger:fuzz", names[0] if names else "x")


if __name__ == "__main__":
    main(test_one_input)
