"""Two start-up costs of typer itself, removed without changing what typer does.

1. **Converting the app to click inspects each function twice.** For every command typer calls
   `typer.utils.get_params_from_function` once to make the click parameters and again to make
   the callback; each call runs `inspect.signature(eval_str=True)` and `get_type_hints`, which
   evaluate every (string) annotation. `install` makes the second call reuse the first one's
   inspection. Each call still returns new `ParamMeta` objects and its own copy of every
   parameter's `OptionInfo`/`ArgumentInfo`, as typer's function does: only the evaluation is
   shared. That is a third of `secrets --help`'s conversion of all 43 commands.
2. **Drawing help imports rich's Markdown and traceback modules.** typer draws help in
   `typer.rich_utils`, which imports `rich.markdown` (and with it `markdown_it`) and
   `rich.traceback` (with `pygments`) at the top, about a third of that module's import. This
   CLI uses neither: Markdown only renders help written with `rich_markup_mode="markdown"`
   (ours is typer's default, "rich"), Traceback only typer's pretty exceptions (off: see
   `commands.main._new_app`). `defer_rich_extras` imports `typer.rich_utils` with stand-ins
   for those two classes; anything done with a stand-in (calling it, reading an attribute,
   `isinstance`) loads the real class and hands over to it, so help is drawn exactly as before.
   The stand-in modules are in `sys.modules` only while `typer.rich_utils` is imported: any
   other `import rich.markdown` gets the real module.

Both rely on typer internals (`typer.main.get_params_from_function` and `ParamMeta`, reached
through commands/typer_adapter.py; the `format_help` of its commands); when they are not there,
nothing is changed and typer works as usual. tests/unit/test_cli_surface.py checks that both are
active and that help is the same.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from copy import copy
from typing import Any

# -- 1. one inspection per function ---------------------------------------------------------


def _inspect_once(original: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    from commands.typer_adapter import param_meta_types

    ParamMeta, ParameterInfo = param_meta_types()
    found: dict[Any, dict[str, Any]] = {}

    def get_params_from_function(func: Any) -> dict[str, Any]:
        params = found.get(func)
        if params is None:
            params = found[func] = original(func)
        # What typer's own function returns: new ParamMeta objects, and a copy of each
        # parameter's OptionInfo/ArgumentInfo (typer copies it on every call too).
        return {
            name: ParamMeta(
                name=meta.name,
                default=copy(meta.default)
                if isinstance(meta.default, ParameterInfo)
                else meta.default,
                annotation=meta.annotation,
            )
            for name, meta in params.items()
        }

    get_params_from_function.inspects_once = True  # type: ignore[attr-defined]
    return get_params_from_function


def install() -> bool:
    """Make typer's conversion to click inspect each function once; whether it is active."""
    from commands import typer_adapter

    original = typer_adapter.get_params_from_function()
    if original is None:
        return False
    if not getattr(original, "inspects_once", False):
        try:
            replacement = _inspect_once(original)
        except ImportError:  # typer.models without ParamMeta or ParameterInfo
            return False
        typer_adapter.replace_get_params_from_function(replacement)
    return True


# -- 2. help without rich.markdown and rich.traceback ---------------------------------------


class _Deferred(type):
    """The type of a stand-in for a rich class: any use loads the real class and hands over."""

    _source: str

    def _real(cls) -> Any:
        return getattr(importlib.import_module(cls._source), cls.__name__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._real(), name)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls._real())

    def __subclasscheck__(cls, subclass: Any) -> bool:
        return issubclass(subclass, cls._real())


# The rich classes typer.rich_utils imports and this CLI never uses (see the module docstring).
_DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def defer_rich_extras() -> None:
    """Import typer.rich_utils (typer's help drawing) with stand-ins for rich's Markdown and
    Traceback; nothing to do if it is imported already."""
    if "typer.rich_utils" in sys.modules:
        return
    stand_ins: dict[str, types.ModuleType] = {}
    for module_name, class_name in _DEFERRED.items():
        if module_name not in sys.modules:
            module = types.ModuleType(module_name, "A stand-in while typer.rich_utils loads.")
            setattr(module, class_name, _Deferred(class_name, (), {"_source": module_name}))
            stand_ins[module_name] = module
    sys.modules.update(stand_ins)
    try:
        import typer.rich_utils  # noqa: F401
    finally:
        for module_name, module in stand_ins.items():
            if sys.modules.get(module_name) is module:
                del sys.modules[module_name]


def _format_help_deferring(original: Callable[..., Any]) -> Callable[..., Any]:
    def format_help(ctx: Any, formatter: Any) -> Any:
        defer_rich_extras()
        return original(ctx, formatter)

    format_help.defers_rich = True  # type: ignore[attr-defined]
    return format_help


def defer_rich_in_help(command: Any) -> int:
    """Make every command in `command`'s tree load typer's help drawing through
    `defer_rich_extras` when it draws help; how many commands got it."""
    count = 0
    original = getattr(command, "format_help", None)
    if original is not None and not getattr(original, "defers_rich", False):
        command.format_help = _format_help_deferring(original)
        count += 1
    for sub in (getattr(command, "commands", None) or {}).values():
        count += defer_rich_in_help(sub)
    return count
