"""Fuzz the session file and token text: `credential` never raises, `parse` never raises."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import atheris
from _common import Finding, main

with atheris.instrument_imports():
    from ledger.access import tokens
    from ledger.access.credentials import Credential
    from ledger.access.session_file import SESSION_FILE_VARIABLE, TOKEN_VARIABLE, credential

HOME = Path(tempfile.mkdtemp(prefix="fuzz-session-"))
os.environ.pop(TOKEN_VARIABLE, None)
os.environ.pop(SESSION_FILE_VARIABLE, None)


def test_one_input(data: bytes) -> None:
    path = HOME / "session.json"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    found = credential(HOME)
    if not isinstance(found, Credential):
        raise Finding("credential() returned something else")
    fields = (found.operator, found.session_id, found.session_secret, found.token, found.problem)
    if not all(f is None or isinstance(f, str) for f in fields):
        raise Finding("a credential field is not text")
    parsed = tokens.parse(data.decode("utf-8", "replace"))
    if parsed is not None and not all(isinstance(p, str) for p in parsed):
        raise Finding("tokens.parse returned non-text parts")


if __name__ == "__main__":
    main(test_one_input)
