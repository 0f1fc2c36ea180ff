"""New values for many secrets from one file: TOML, JSON or dotenv, keyed by address.

Keys are addresses ``environment/service/name``. TOML and JSON may also nest them
(``[production.nexus]`` then ``"mcp.bun.apiKey" = "..."``); nested keys are joined with ``/``.
The format follows the file's suffix: ``.toml``, ``.json``, anything else is dotenv
(``address=value`` lines, ``#`` comments, optional ``export``, single or double quotes).

Errors name the file, the line or key, never a value.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ledger.address import SecretAddress
from ledger.errors import ValidationFailed

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 8  # environment/service/name and a few more levels of nesting, never more
_RULE = "values-file"


def _fail(path: Path, problem: str) -> ValidationFailed:
    return ValidationFailed(_RULE, f"values file {str(path)!r}: {problem}")


def readable_by_others(path: Path) -> bool:
    try:
        return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)
    except OSError:
        return False


def load_values(path: Path) -> dict[SecretAddress, str]:
    """The file's values by address; ValidationFailed (rule ``values-file``) on any problem."""
    from ledger.rotation.runs import parse_address

    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(path, f"is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(path, "is not UTF-8") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        pairs = _flatten(path, _toml(path, text))
    elif suffix == ".json":
        pairs = _flatten(path, _json(path, text))
    else:
        pairs = _dotenv(path, text)
    values: dict[SecretAddress, str] = {}
    for key, value in pairs:
        try:
            address = parse_address(key)
        except ValidationFailed as exc:
            raise _fail(path, str(exc)) from None
        if address in values:
            raise _fail(path, f"{key!r} is given twice")
        values[address] = value
    return values


def _toml(path: Path, text: str) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names a line and column, not the text around it.
        raise _fail(path, f"is not valid TOML ({exc})") from None
    except RecursionError:  # thousands of nested arrays or tables: the parser recurses
        raise _fail(path, "is nested too deeply") from None


def _json(path: Path, text: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _fail(path, f"key {key[:80]!r} is given twice")
            seen[key] = value
        return seen

    try:
        document = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # thousands of nested arrays or objects: the decoder recurses
        raise _fail(path, "is nested too deeply") from None
    if not isinstance(document, dict):
        raise _fail(path, "must hold one object mapping addresses to values")
    return document


def _flatten(
    path: Path, document: dict[str, Any], prefix: str = "", depth: int = 1
) -> list[tuple[str, str]]:
    if depth > MAX_DEPTH:
        raise _fail(path, f"tables are nested more than {MAX_DEPTH} deep")
    pairs: list[tuple[str, str]] = []
    for key, value in document.items():
        full = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            pairs.extend(_flatten(path, value, full, depth + 1))
        elif isinstance(value, str):
            pairs.append((full, value))
        else:
            raise _fail(path, f"the value of {full[:80]!r} must be a string")
    return pairs


def _dotenv(path: Path, text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, rest = stripped.partition("=")
        if not sep:
            raise _fail(path, f"line {number}: expected address=value")
        key = key.strip()
        rest = rest.strip()
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            end = rest.find(quote, 1)
            while quote == '"' and end > 0 and rest[end - 1] == "\\":
                end = rest.find(quote, end + 1)
            if end < 0:
                raise _fail(path, f"line {number}: unterminated quoted value")
            value = rest[1:end]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            trailing = rest[end + 1 :].strip()
            if trailing and not trailing.startswith("#"):
                raise _fail(path, f"line {number}: unexpected text after the quoted value")
        else:
            # An unquoted value ends at " #" (a comment); a '#' inside it is kept.
            comment = rest.find(" #")
            value = rest[:comment].rstrip() if comment >= 0 else rest
        pairs.append((key, value))
    return pairs


def warn_if_exposed(path: Path) -> str | None:
    if os.name == "posix" and readable_by_others(path):
        return (
            f"warning: {path} holds secret values and is readable by other users; "
            f"chmod 600 it (and delete it when done)"
        )
    return None
