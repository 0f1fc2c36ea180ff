"""Coerce the plain command-line values without pydantic.

Typer 0.29 coerces every parameter through a pydantic `TypeAdapter` built when the parameter is
first processed (`build_runtime_param`, commands/typer_adapter.py). Importing pydantic and
building about ten adapters is most of a short command's own start-up (docs/performance.md),
although our parameters are only strings, paths, small integers, flags and enums.

`install` gives each parameter of a command tree a coercion that handles those plain cases
itself and hands everything else to typer's own (pydantic) coercion, unchanged: a value the fast
path does not accept, or any error, goes through typer exactly as before, so results and error
messages are typer's. It relies on typer internals (`_TyperParameter._runtime_param`,
`type_descriptor`, reached through commands/typer_adapter.py); when they are not there,
`install` changes nothing and typer works as usual. tests/unit/test_cli_surface.py checks that it is
active and agrees with typer.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

from commands import typer_adapter

# Plainly written numbers only (no sign on zero, no leading zeros, no spaces or underscores):
# whatever else pydantic accepts or refuses, it decides.
_INT = re.compile(r"0|-?[1-9][0-9]{0,17}", re.ASCII)
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?", re.ASCII)


class _Fallback(Exception):
    """The fast path does not decide this value: typer's own coercion does."""


class FastParam:
    """A stand-in for typer's RuntimeParam with a pydantic-free path for plain values."""

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self._typer: Any = None

    def typer_runtime_param(self) -> Any:
        if self._typer is None:
            from commands.typer_adapter import build_runtime_param

            self._typer = build_runtime_param(self.descriptor)
        return self._typer

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        is_multi_value = param.multiple or param.nargs == -1
        if value is None:  # as typer's RuntimeParam.coerce, without building an adapter
            return () if is_multi_value else None
        if not is_multi_value and param.nargs == 1:
            try:
                return self._fast(value, param, ctx)
            except Exception:  # noqa: S110  (typer decides, and raises its own error)
                pass
        return self.typer_runtime_param().coerce(value, param=param, ctx=ctx)

    def _fast(self, value: Any, param: Any, ctx: Any) -> Any:
        annotation = self.descriptor.annotation
        info = self.descriptor.parameter_info
        if annotation is str:
            if isinstance(value, str):
                return value
        elif annotation is int or annotation is float:
            number = _number(annotation, value)
            if not info.clamp and _within(number, info.min, info.max):
                return number
        elif isinstance(annotation, type) and issubclass(annotation, Enum):
            from commands.typer_adapter import coerce_cli_choice

            if isinstance(value, (annotation, str)):
                return coerce_cli_choice(
                    value,
                    choices=tuple(annotation),
                    case_sensitive=info.case_sensitive,
                    ctx=ctx,
                )
        elif isinstance(annotation, type) and issubclass(annotation, Path):
            from commands.typer_adapter import coerce_cli_path

            path_type = info.path_type or annotation
            if isinstance(path_type, type) and issubclass(path_type, Path):
                if isinstance(value, str) and value:
                    value = path_type(value)
                if isinstance(value, path_type):
                    return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)
        raise _Fallback


def _number(kind: type[int] | type[float], value: Any) -> int | float:
    """`value` as an int or float when it is one already or plainly written; else fall back."""
    if type(value) is kind:
        return value
    if isinstance(value, str):
        if kind is int and _INT.fullmatch(value):
            return int(value)
        if kind is float and _FLOAT.fullmatch(value):
            return float(value)
    raise _Fallback


def _within(number: float, low: float | None, high: float | None) -> bool:
    if (low is not None and number < low) or (high is not None and number > high):
        raise _Fallback  # typer says why
    return True


def _plain(descriptor: Any) -> bool:
    info = descriptor.parameter_info
    return (
        descriptor.file_annotation is None
        and getattr(info, "parser", None) is None
        and getattr(info, "click_type", None) is None
    )


def _give(param: Any) -> bool:
    descriptor = typer_adapter.type_descriptor(param)
    if (
        descriptor is None
        or typer_adapter.runtime_param(param) is not None
        or not _plain(descriptor)
    ):
        return False
    typer_adapter.set_runtime_param(param, FastParam(descriptor))
    return True


def install(command: Any) -> int:
    """Give every plain parameter in `command`'s tree the fast coercion; how many got it."""
    count = sum(_give(param) for param in getattr(command, "params", ()))
    original = getattr(command, "get_help_option", None)
    if original is not None and not getattr(original, "fast", False):
        # --help is made on first use (click caches it): give it the fast coercion then.
        def get_help_option(ctx: Any) -> Any:
            option = original(ctx)
            if option is not None:
                _give(option)
            return option

        get_help_option.fast = True  # type: ignore[attr-defined]
        command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        count += install(sub)
    return count
