"""The contracts for hostile input that the hypothesis tests and the atheris targets share.

Each `check_*` function feeds one input to the real code and raises `Finding` (or lets an
undocumented exception escape) when the code breaks its documented promise; a documented
rejection returns normally. tests/unit/test_hostile_inputs.py drives them with hypothesis (the CI
gate); tests/fuzz/fuzz_{values_file,as_of,bundle}.py drive them with atheris.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from commands.values_file import load_values
from ledger.address import SecretAddress
from ledger.errors import ValidationFailed
from projections.compliance import parse_as_of
from projections.timefmt import iso, parse_when


class Finding(AssertionError):
    """An input made the code break its contract (not merely get rejected)."""


# -- values files (`rotate --values-file`, `emergency-rotate --values-file`, `provision --from`)

VALUES_SUFFIXES = (".toml", ".json", ".env")


def check_values_file(path: Path, data: bytes, secrets: tuple[str, ...] = ()) -> None:
    """`load_values` returns {address: text} or raises ValidationFailed(rule values-file)
    naming the file; `secrets` (values known to be in `data`) never appear in the message."""
    path.write_bytes(data)
    try:
        found = load_values(path)
    except ValidationFailed as exc:
        if exc.rule != "values-file":
            raise Finding(f"values file error with rule {exc.rule!r}") from None
        message = str(exc)
        if not message.startswith(f"values file {str(path)!r}"):
            raise Finding(f"the error does not name the file: {message[:120]!r}") from None
        for secret in secrets:
            if secret in message:
                raise Finding("a value appears in the error message") from None
        if exc.__cause__ is not None or (
            exc.__context__ is not None and not exc.__suppress_context__
        ):
            raise Finding("the error chains another exception (which may hold a value)") from None
        return
    if not isinstance(found, dict):
        raise Finding("load_values returned something else than a dict")
    for address, value in found.items():
        if not isinstance(address, SecretAddress) or not isinstance(value, str):
            raise Finding("load_values returned a non-address key or a non-text value")


# -- `--as-of`, `--at`, `--since`, `--until` ---------------------------------------------------


def check_time_text(text: str) -> None:
    """`parse_as_of` (rotate-status --as-of) gives an aware instant that exists in UTC or
    ValidationFailed(rule as-of); `parse_when` (audit --at/--since/--until, report --as-of)
    gives the same or ValueError. Messages quote at most 40 characters of the input."""
    for parse, allowed in ((parse_as_of, ValidationFailed), (parse_when, ValueError)):
        try:
            when = parse(text)
        except allowed as exc:
            if isinstance(exc, ValidationFailed) and exc.rule != "as-of":
                raise Finding(f"--as-of error with rule {exc.rule!r}") from None
            # 40 characters, each at most 10 once repr() escapes it, plus the explanation
            if len(str(exc)) > 600:
                raise Finding(f"{parse.__name__}: the message quotes too much input") from None
            continue
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise Finding(f"{parse.__name__} returned a naive or non-datetime value")
        iso(when)  # what every report prints: must not overflow
        if when.astimezone(UTC).tzinfo is not UTC:
            raise Finding(f"{parse.__name__} returned an instant with no UTC form")


# -- export bundles (`secrets audit verify --bundle DIR`) -------------------------------------

#: Exit codes `audit verify --bundle` may end with: ok, usage (no ledger.sqlite, a bad PEM),
#: validation, integrity failure. Never 1 (an internal error or a store failure).
BUNDLE_EXITS = frozenset({0, 2, 5, 6})


@dataclass
class BundleResult:
    code: int
    stderr: str


class BundleFixture:
    """A real bundle made once (a few secrets, a checkpoint), rewritten for every case."""

    def __init__(self) -> None:
        from ledger.access.credentials import Credential
        from ledger.checkpoint import Witness, public_pem
        from ledger.store.opening import open_ledger
        from ledger.vault.memory import MemoryKeyring

        self.tmp = Path(tempfile.mkdtemp(prefix="hostile-bundle-"))
        app = open_ledger(self.tmp / "home", create=True, backend=MemoryKeyring())
        try:
            issued = app.initialize("alice", retention=3)
            assert issued is not None
            cred = Credential(token=issued.token)
            for n in range(5):
                address = SecretAddress("production", "nexus", f"bundle.k{n % 2}")
                app.write(cred, address, f"val-bundle-{n}-" + "x" * 20)
            app.grant(cred, "bob", "analyst")
            at, signed = app.checkpoint(cred)
            source = sqlite3.connect(app.home / "ledger.sqlite")
            copy = sqlite3.connect(self.tmp / "ledger.sqlite")
            try:
                source.backup(copy)
            finally:
                copy.close()
                source.close()
        finally:
            app.close()
        self.sqlite = (self.tmp / "ledger.sqlite").read_bytes()
        self.pem = public_pem(signed.public_key).encode()
        self.note = (Witness("bundle", at, signed.signature).dumps() + "\n").encode()
        self.dir = self.tmp / "bundle"

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def verify(
        self,
        *,
        sqlite_bytes: bytes | None = None,
        pem: bytes | None = None,
        note: bytes | None = None,
    ) -> BundleResult:
        """Write the bundle (the real files unless replaced; b"" for a part means absent)
        and run `secrets audit verify --bundle DIR` in this process, as the CLI's entry
        point does (the same error-to-exit mapping)."""
        from commands.main import _invoke, app_for

        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir()
        for name, data in (
            ("ledger.sqlite", self.sqlite if sqlite_bytes is None else sqlite_bytes),
            ("pubkey.pem", self.pem if pem is None else pem),
            ("checkpoint.json", self.note if note is None else note),
        ):
            if data:
                (self.dir / name).write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        argv = sys.argv
        sys.argv = ["secrets", "audit", "verify", "--bundle", str(self.dir)]
        failure: list[str] = []
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = int(_invoke(app_for(sys.argv[1:]), failure))
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = argv
        return BundleResult(code, err.getvalue())


def check_bundle(
    fixture: BundleFixture,
    *,
    sqlite_bytes: bytes | None = None,
    pem: bytes | None = None,
    note: bytes | None = None,
) -> BundleResult:
    """Whatever the bundle holds: exit 0, 2, 5 or 6 with one clear line, never an internal
    error or a traceback; an untouched ledger.sqlite with a bad note still verifies."""
    result = fixture.verify(sqlite_bytes=sqlite_bytes, pem=pem, note=note)
    if result.code not in BUNDLE_EXITS:
        raise Finding(f"exit {result.code}: {result.stderr.strip()[:300]}")
    if "Traceback" in result.stderr or "internal error" in result.stderr:
        raise Finding(f"not a clear error: {result.stderr.strip()[:300]}")
    if result.code != 0 and not result.stderr.strip():
        raise Finding(f"exit {result.code} without a message")
    return result
