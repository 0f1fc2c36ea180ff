"""Fuzz an export bundle for `secrets audit verify --bundle DIR` (run in-process through the
CLI's own error-to-exit mapping): a real bundle with its checkpoint.json, pubkey.pem or
ledger.sqlite replaced or patched must end in exit 0, 2, 5 or 6 with one clear line, never an
internal error or a traceback.

The first byte picks the part: checkpoint.json or pubkey.pem get the remaining bytes;
ledger.sqlite gets up to 16 single-byte patches at fuzzed offsets, then maybe a truncation."""

from __future__ import annotations

import atheris
from _common import main

with atheris.instrument_imports():
    from tests.hostile import BundleFixture, check_bundle

BUNDLE = BundleFixture()


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    part = fdp.ConsumeIntInRange(0, 3)
    if part == 0:
        check_bundle(BUNDLE, note=fdp.ConsumeBytes(fdp.remaining_bytes()))
    elif part == 1:
        check_bundle(BUNDLE, pem=fdp.ConsumeBytes(fdp.remaining_bytes()))
    else:
        raw = bytearray(BUNDLE.sqlite)
        for _ in range(fdp.ConsumeIntInRange(1, 16)):
            raw[fdp.ConsumeIntInRange(0, len(raw) - 1)] = fdp.ConsumeInt(1) & 0xFF
        if part == 3:
            del raw[fdp.ConsumeIntInRange(0, len(raw)) :]
        check_bundle(BUNDLE, sqlite_bytes=bytes(raw))


if __name__ == "__main__":
    main(test_one_input)
