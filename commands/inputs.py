"""Rules every command's parameters follow, whatever their type: what no command can use is
refused while the command line is parsed, before anything is opened or recorded.

- Text that is not UTF-8 (bytes the shell passed through as surrogate escapes, or lone
  surrogates): a usage error (exit 2). It could not be stored, hashed or printed later.
- Integers beyond SQLite's range, floats that are not finite: a usage error (exit 2). Such a
  number only ends in an OverflowError somewhere deeper.
- An `environment` (every command's -e/--environment, filters too) that breaks the name
  rule: ValidationFailed (exit 5), never an empty answer for a name no secret can have.

Messages never quote the value: it may be a secret given with `--value`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

# SQLite's integer range; PostgreSQL's bigint is the same.
INT_LIMIT = 2**63 - 1


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _refuse_raw(value: Any, param: Any, ctx: Any) -> None:
    from typer import BadParameter

    for item in _items(value):
        if isinstance(item, (str, Path)):
            try:
                str(item).encode("utf-8")
            except UnicodeEncodeError:
                raise BadParameter("is not valid UTF-8 text", ctx=ctx, param=param) from None
    if param.name == "environment" and isinstance(value, str):
        from ledger.names import validate_environment

        validate_environment(value)


def _refuse_converted(value: Any, param: Any, ctx: Any) -> None:
    from typer import BadParameter

    for item in _items(value):
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not -INT_LIMIT <= item <= INT_LIMIT:
            raise BadParameter("is out of range", ctx=ctx, param=param)
        if isinstance(item, float) and not math.isfinite(item):
            raise BadParameter("is not a finite number", ctx=ctx, param=param)


def _checked(param: Any) -> bool:
    original: Callable[[Any, Any], Any] | None = getattr(param, "process_value", None)
    if original is None or getattr(original, "checked", False):
        return False

    def process_value(ctx: Any, value: Any) -> Any:
        if value is not None:
            _refuse_raw(value, param, ctx)
        converted = original(ctx, value)
        if converted is not None:
            _refuse_converted(converted, param, ctx)
        return converted

    process_value.checked = True  # type: ignore[attr-defined]
    param.process_value = process_value
    return True


def install(command: Any) -> int:
    """Give every parameter in `command`'s tree the checks above; how many got them."""
    count = sum(_checked(param) for param in getattr(command, "params", ()))
    for sub in (getattr(command, "commands", None) or {}).values():
        count += install(sub)
    return count
