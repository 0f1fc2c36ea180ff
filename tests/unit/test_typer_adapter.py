"""commands/typer_adapter.py is the CLI's only door into typer's private internals.

When a typer release moves one of them, these tests fail by name: raise typer's upper bound in
pyproject.toml only once they pass on the new release.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import typer.main

from commands import typer_adapter
from commands.main import app

COMMANDS = Path(typer_adapter.__file__).parent

# The parameters each private function is called with (commands/fastparams.py, typerfast.py).
SIGNATURES = {
    ("typer._coercion", "build_runtime_param"): ["descriptor"],
    ("typer._param_types", "coerce_cli_choice"): ["value", "choices", "case_sensitive", "ctx"],
    ("typer._param_types", "coerce_cli_path"): [
        "value",
        "parameter_info",
        "path_type",
        "param",
        "ctx",
    ],
    ("typer.main", "get_params_from_function"): ["func"],
}


@pytest.mark.parametrize(
    ("module", "name"),
    [
        pytest.param(m, n, id=f"{m}.{n}")
        for m, names in typer_adapter.INTERNALS.items()
        for n in names
    ],
)
def test_every_private_name_the_cli_uses_is_in_this_typer(module: str, name: str) -> None:
    found = getattr(importlib.import_module(module), name, None)
    assert found is not None, f"typer {typer.__version__} has no {module}.{name}"
    expected = SIGNATURES.get((module, name))
    if expected is not None:
        assert list(inspect.signature(found).parameters) == expected, (module, name)


def test_every_private_name_is_listed_for_the_check() -> None:
    listed = {n for names in typer_adapter.INTERNALS.values() for n in names}
    assert set(SIGNATURES) <= {
        (m, n) for m, names in typer_adapter.INTERNALS.items() for n in names
    }
    assert {"ClickException", "NoArgsIsHelpError", "UsageError"} <= listed


def test_typers_click_parameters_carry_what_fastparams_uses() -> None:
    command = typer.main.get_command(app)
    versions = command.commands["versions"]  # type: ignore[attr-defined]
    assert versions.params
    for param in versions.params:
        for attribute in typer_adapter.PARAMETER_ATTRIBUTES:
            assert hasattr(param, attribute), (param.name, attribute)
        assert typer_adapter.type_descriptor(param) is not None


def test_the_click_exceptions_are_the_ones_typer_raises() -> None:
    errors = typer_adapter.click_exceptions()
    assert issubclass(errors.UsageError, errors.ClickException)
    assert issubclass(errors.NoArgsIsHelpError, errors.UsageError)
    assert issubclass(typer.BadParameter, errors.UsageError)  # public; commands/inputs.py


def _private_uses(path: Path) -> list[str]:
    """Imports of typer's private or internal modules, and the private parameter attributes."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        for module in modules:
            if module.startswith("typer.") and any(p.startswith("_") for p in module.split(".")):
                found.append(f"{path.name}:{node.lineno} imports {module}")
        through_adapter = isinstance(node, ast.Attribute) and (
            isinstance(node.value, ast.Name) and node.value.id == "typer_adapter"
        )
        if (
            isinstance(node, ast.Attribute)
            and not through_adapter
            and (
                node.attr.startswith("_click")
                or node.attr in typer_adapter.PARAMETER_ATTRIBUTES
                or node.attr == "get_params_from_function"
            )
        ):
            found.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    return found


def test_no_other_module_of_the_cli_reaches_into_typer() -> None:
    uses = [
        use
        for path in sorted(COMMANDS.rglob("*.py"))
        if path.name != "typer_adapter.py"
        for use in _private_uses(path)
    ]
    assert uses == []
    # The check finds what it looks for.
    assert _private_uses(COMMANDS / "typer_adapter.py")
