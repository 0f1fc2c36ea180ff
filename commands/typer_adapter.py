"""Every use of typer's private internals, in one place.

typer promises its public names (`typer.Typer`, `typer.BadParameter`, `typer.core`...), not
these. The CLI needs them for two things:
- one-line usage errors (commands/main.py) catch click's exceptions, which typer 0.29 vendors as
  `typer._click` and does not re-export;
- start-up speed: commands/fastparams.py coerces plain values without pydantic and falls back to
  typer's own coercion (`typer._coercion`, `typer._param_types`, a parameter's
  `type_descriptor` and `_runtime_param`); commands/typerfast.py wraps
  `typer.main.get_params_from_function` so each command's signature is inspected once.

`INTERNALS` lists them; tests/unit/test_typer_adapter.py checks each against the installed
typer, so an upgrade that moves one fails there by name rather than as a CLI that misbehaves.
pyproject.toml caps typer at the newest version CI has run this against.

Nothing here imports at module level beyond the standard library: each accessor imports what
it returns when called, so importing this module costs nothing at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

# module -> the attributes of it the CLI uses.
INTERNALS: Final[dict[str, tuple[str, ...]]] = {
    "typer._click.exceptions": ("ClickException", "NoArgsIsHelpError", "UsageError"),
    "typer._coercion": ("build_runtime_param",),
    "typer._param_types": ("coerce_cli_choice", "coerce_cli_path"),
    "typer.main": ("get_params_from_function",),
    "typer.models": ("ParamMeta", "ParameterInfo"),
}
# Attributes of a typer click parameter (typer.core._TyperParameter) that fastparams reads and
# sets: the value's type description, and its lazily built coercion (None until first use).
PARAMETER_ATTRIBUTES: Final = ("type_descriptor", "_runtime_param")


def click_exceptions() -> ModuleType:
    """typer's vendored `click.exceptions` (UsageError, NoArgsIsHelpError, ClickException)."""
    return importlib.import_module("typer._click.exceptions")


def build_runtime_param(descriptor: Any) -> Any:
    """typer's own (pydantic) coercion for a parameter's type descriptor."""
    from typer._coercion import build_runtime_param as build

    return build(descriptor)


def coerce_cli_choice(value: Any, **options: Any) -> Any:
    from typer._param_types import coerce_cli_choice as coerce

    return coerce(value, **options)


def coerce_cli_path(value: Any, info: Any, **options: Any) -> Any:
    from typer._param_types import coerce_cli_path as coerce

    return coerce(value, info, **options)


def param_meta_types() -> tuple[type[Any], type[Any]]:
    """(ParamMeta, ParameterInfo): what `get_params_from_function` returns, per parameter."""
    from typer.models import ParameterInfo, ParamMeta

    return ParamMeta, ParameterInfo


def get_params_from_function() -> Callable[[Any], dict[str, Any]] | None:
    """The function typer's conversion to click calls to inspect a command; None if gone."""
    import typer.main

    found: Callable[[Any], dict[str, Any]] | None = getattr(
        typer.main, "get_params_from_function", None
    )
    return found


def replace_get_params_from_function(replacement: Callable[[Any], dict[str, Any]]) -> None:
    import typer.main

    setattr(typer.main, "get_params_from_function", replacement)  # noqa: B010


def type_descriptor(param: Any) -> Any:
    """The type description typer made for a click parameter; None if it has none."""
    return getattr(param, "type_descriptor", None)


def runtime_param(param: Any) -> Any:
    """The coercion typer built for a parameter: None until first used, False if absent."""
    return getattr(param, "_runtime_param", False)


def set_runtime_param(param: Any, coercion: Any) -> None:
    param._runtime_param = coercion
