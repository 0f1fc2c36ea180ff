"""Reading a secret value from exactly one source, never echoing it."""

from __future__ import annotations

import sys
from pathlib import Path

from ledger.errors import ValidationFailed

MAX_VALUE_BYTES = 64 * 1024


class UsageProblem(Exception):
    """The caller combined value sources wrongly (exit code 2)."""


def _decode(raw: bytes, source: str, address: str | None) -> str:
    where = f"{address}: " if address else ""
    if len(raw) > MAX_VALUE_BYTES:
        raise ValidationFailed("too-large", f"{where}the value from {source} is over 64 KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(
            "encoding", f"{where}the value from {source} is not valid UTF-8"
        ) from None
    # One trailing newline is what `echo` and editors add; it is never part of a credential.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text


def read_value(
    value: str | None,
    value_file: Path | None,
    value_stdin: bool,
    *,
    prompt: str,
    address: str | None = None,
) -> str:
    """The value from exactly one source; a rejection names `address` (env/service/name)."""
    given = [value is not None, value_file is not None, value_stdin]
    if sum(given) > 1:
        raise UsageProblem("give the value from only one of --value, --value-file, --value-stdin")
    if value is not None:
        print(
            "warning: --value puts the secret in your shell history and process list; "
            "prefer --value-stdin or --value-file",
            file=sys.stderr,
        )
        return value
    if value_file is not None:
        try:
            with value_file.open("rb") as f:
                raw = f.read(MAX_VALUE_BYTES + 1)
        except OSError as exc:
            raise UsageProblem(f"cannot read --value-file {value_file}: {exc.strerror}") from None
        return _decode(raw, "--value-file", address)
    if value_stdin:
        raw = sys.stdin.buffer.read(MAX_VALUE_BYTES + 3)
        return _decode(raw, "stdin", address)
    if not sys.stdin.isatty():
        raise UsageProblem(
            "no value given: use --value-stdin, --value-file or run on a terminal for a prompt"
        )
    import getpass

    first = getpass.getpass(f"{prompt}: ")
    second = getpass.getpass("Repeat to confirm: ")
    if first != second:
        raise UsageProblem("the two entries differ; nothing was written")
    return first
