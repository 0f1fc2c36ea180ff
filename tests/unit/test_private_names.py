"""No module reaches into another module's private names.

What one module needs of another is its public API: the unit of work's operations
(ledger/unit_of_work.py) for the services and the jobs beside them, not `SecretsLedger`'s
internals. A use of `obj._name` (other than `self._x` / `cls._x`) or an import of `_name`
counts when `_name` is not defined in the module that uses it. The few uses below are of
libraries' internals, each behind a single door (tests/unit/test_typer_adapter.py checks
typer's); a new one fails here until it is made public or listed with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "projections", "commands")

# (module, name): where a library leaves no public way.
KNOWN: dict[tuple[str, str], str] = {
    ("commands/typer_adapter.py", "typer._coercion"): "typer: the CLI's one door into it",
    ("commands/typer_adapter.py", "typer._param_types"): "typer: the CLI's one door into it",
    ("commands/typer_adapter.py", "_runtime_param"): "typer: the CLI's one door into it",
    ("commands/agent/client.py", "_xoptions"): "sys._xoptions: the interpreter's -X options",
    ("commands/agent/server.py", "_exit"): "os._exit: a forked child ends without cleanup",
    ("projections/rebuild_feed.py", "_exit"): "os._exit: the feed's child process",
    ("ledger/vault/keyring_vault.py", "_query"): "keyring: the Secret Service's attributes",
    (
        "projections/event_reader.py",
        "_decode_obj",
    ): "eventsourcing: the shortcut only for its own transcoder",
    # Within the views (projections/views*.py); to be made public with the views' own work.
    ("projections/audit_check.py", "_unreadable"): "Views._unreadable",
    ("projections/views.py", "_open"): "views_schema._open",
}


def _defined(tree: ast.Module) -> set[str]:
    """Private names the module itself defines: functions, classes, names and `self.`
    attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)  # `other._x = ...` sets another module's private: a use
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_")}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path) -> set[str]:
    """Private names of other modules that `path` uses."""
    tree = ast.parse(path.read_text(), str(path))
    own = _defined(tree)
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if node.attr not in own:
                used.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            used.update(a.name for a in node.names if _private(a.name))
            if node.module and any(_private(part) for part in node.module.split(".")):
                used.add(node.module)
    return used


def _all_uses() -> set[tuple[str, str]]:
    return {
        (str(path.relative_to(ROOT)), name)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in private_uses(path)
    }


def test_no_module_uses_another_modules_private_names() -> None:
    unexpected = sorted(_all_uses() - KNOWN.keys())
    assert not unexpected, (
        "private names of another module used (make them public, e.g. an operation of "
        f"ledger/unit_of_work.py): {unexpected}"
    )


def test_every_known_use_is_still_there() -> None:
    assert not sorted(KNOWN.keys() - _all_uses()), "remove the stale entries from KNOWN"


def test_the_check_sees_a_use_of_the_ledgers_internals(tmp_path: Path) -> None:
    module = tmp_path / "job.py"
    module.write_text(
        "def run(app):\n"
        "    self = app\n"
        "    app._retrying(lambda: app.uow.save())\n"
        "    return self._save()\n"
    )
    assert private_uses(module) == {"_retrying"}  # `self` names the module's own object
    module.write_text("from ledger.application import _shown\n\nclass A:\n    _x = 1\n")
    assert private_uses(module) == {"_shown"}
