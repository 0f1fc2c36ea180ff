"""`secrets inject`'s template references and its private, atomic output file."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from ledger.address import SecretAddress, default_environment
from ledger.errors import ValidationFailed

_PART = r"[^\s/{}]+"
REFERENCE = re.compile(
    r"\{\{\s*secrets://(" + _PART + r")/(" + _PART + r")(?:/(" + _PART + r"))?\s*\}\}"
)
# Anything that opens like a reference: one that does not parse is an error, never left as is.
_OPENING = re.compile(r"\{\{\s*secrets://")


def _address(found: re.Match[str]) -> SecretAddress:
    first, second, third = found.group(1), found.group(2), found.group(3)
    if third is None:
        return SecretAddress.parse(default_environment(), first, second)
    return SecretAddress.parse(first, second, third)


def references(text: str) -> list[SecretAddress]:
    """The addresses `text` refers to, in order; a malformed reference fails (exit 5)."""
    matches = list(REFERENCE.finditer(text))
    starts = {m.start() for m in matches}
    for opening in _OPENING.finditer(text):
        if opening.start() not in starts:
            line = text.count("\n", 0, opening.start()) + 1
            raise ValidationFailed(
                "template-reference",
                f"line {line}: a malformed secret reference; expected "
                "{{ secrets://ENV/SERVICE/NAME }} or {{ secrets://SERVICE/NAME }}",
            )
    return [_address(m) for m in matches]


def fill(text: str, values: dict[SecretAddress, str]) -> str:
    return REFERENCE.sub(lambda m: values[_address(m)], text)


def check_writable(path: Path) -> None:
    """Fail before anything is read if `path`'s folder cannot take the output file."""
    from commands.value_input import UsageProblem

    folder = path.parent
    if path.is_dir():
        raise UsageProblem(f"--out {path}: is a directory")
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageProblem(f"--out {path}: cannot create a file in {folder}")


def write_private(path: Path, text: str) -> None:
    """`text` in `path`, mode 0600, replaced atomically: a reader sees the old file or the
    whole new one, and the value is never in a file anyone else may read."""
    folder = path.parent
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
