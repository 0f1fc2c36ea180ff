"""The libpq password file read for a PostgreSQL URL without a password: a pipe or a huge
file there is passed over (as libpq's own missing file), never waited on or read whole."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ledger.store.database_url import PostgresLocation, parse

URL = "postgresql://alice@db.example:5432/secrets"


def _parsed(monkeypatch: pytest.MonkeyPatch, pgpass: Path) -> PostgresLocation:
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    location = parse(URL)
    assert isinstance(location, PostgresLocation)
    return location


def test_a_password_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("db.example:5432:secrets:alice:s3cret\n")
    assert _parsed(monkeypatch, pgpass).password == "s3cret"


def test_a_huge_password_file_is_passed_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pgpass = tmp_path / "pgpass"
    with pgpass.open("wb") as f:
        f.write(b"db.example:5432:secrets:alice:s3cret\n")
        f.truncate(64 * 1024 * 1024)  # sparse, over the 1 MiB cap: not read at all
    assert _parsed(monkeypatch, pgpass).password == ""


class Hung(BaseException):
    pass


def test_a_password_file_that_is_a_pipe_does_not_hang(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipe = tmp_path / "pgpass"
    os.mkfifo(pipe, 0o600)

    def hung(signum: int, frame: object) -> None:
        raise Hung  # not an OSError: the reader passes those over

    # The code before the fix blocked in open() for ever: an alarm turns that into a failure.
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        assert _parsed(monkeypatch, pipe).password == ""
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
