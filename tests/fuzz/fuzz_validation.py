"""Fuzz secret addresses and values: only ValidationFailed, and never the value in its message."""

from __future__ import annotations

import contextlib

import atheris
from _common import Finding, main

with atheris.instrument_imports():
    from ledger.errors import ValidationFailed
    from ledger.rotation.catalogue import builtin_catalogue
    from ledger.validation import validate_address, validate_value

SPECS = [None, *builtin_catalogue()]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    spec = SPECS[fdp.ConsumeIntInRange(0, len(SPECS) - 1)]
    parts = [fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80)) for _ in range(3)]
    value = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 4096))
    with contextlib.suppress(ValidationFailed):
        validate_address(*parts)
    try:
        validate_value(spec, value)
    except ValidationFailed as exc:
        if len(value) >= 8 and value in str(exc):
            raise Finding(f"the value appears in the {exc.rule} message") from None
        if exc.__context__ is not None and value in repr(exc.__context__):
            raise Finding("the value is chained to the ValidationFailed") from None


if __name__ == "__main__":
    main(test_one_input)
