"""Fuzz a values file (`rotate --values-file`, `emergency-rotate --values-file`, `provision
--from`): `load_values` returns text by address or raises only ValidationFailed(values-file)
naming the file, with no chained exception. The first byte picks TOML, JSON or dotenv."""

from __future__ import annotations

import tempfile
from pathlib import Path

import atheris
from _common import main

with atheris.instrument_imports():
    from tests.hostile import VALUES_SUFFIXES, check_values_file

HOME = Path(tempfile.mkdtemp(prefix="fuzz-values-"))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    suffix = VALUES_SUFFIXES[data[0] % len(VALUES_SUFFIXES)]
    check_values_file(HOME / f"new{suffix}", data[1:])


if __name__ == "__main__":
    main(test_one_input)
