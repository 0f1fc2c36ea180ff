"""Fuzz a team catalogue TOML file: load_catalogue raises only ValidationFailed(rule=catalogue)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import atheris
from _common import Finding, main

with atheris.instrument_imports():
    from ledger.errors import ValidationFailed
    from ledger.rotation.catalogue import load_catalogue

PATH = Path(tempfile.mkdtemp(prefix="fuzz-catalogue-")) / "catalogue.toml"


def test_one_input(data: bytes) -> None:
    PATH.write_bytes(data)
    try:
        load_catalogue(PATH)
    except ValidationFailed as exc:
        if exc.rule != "catalogue":
            raise Finding(f"catalogue error with rule {exc.rule!r}") from None


if __name__ == "__main__":
    main(test_one_input)
