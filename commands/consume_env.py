"""What the consumer commands (`run`, `export`) hand over: which secrets, under which
environment variable names, and how each output format quotes a value."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, NamedTuple

from commands.value_input import UsageProblem

if TYPE_CHECKING:
    from ledger.address import SecretAddress

_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_KEPT = re.compile(r"[^A-Z0-9]")
# Variables that choose which program runs or what it loads: a secret put there would take
# over the command (`run` looks CMD up on PATH; the loader honours LD_PRELOAD), so no secret
# is handed over under these names.
_RESERVED = re.compile(
    r"PATH|IFS|ENV|BASH_ENV|SHELLOPTS|PS4|LD_[A-Z0-9_]*|DYLD_[A-Z0-9_]*|PYTHON[A-Z0-9_]*"
)


def default_variable(name: str) -> str:
    """`mcp.bun.apiKey` -> `MCP_BUN_APIKEY`: uppercased, every character outside A-Z 0-9 an
    underscore."""
    return _NOT_KEPT.sub("_", name.upper())


class Mapping(NamedTuple):
    variable: str
    service: str
    name: str


def parse_map(text: str) -> Mapping:
    """`VAR=SERVICE/NAME` of a `--map` option."""
    variable, sep, target = text.partition("=")
    service, slash, name = target.partition("/")
    if not sep or not slash or not service or not name or "/" in name:
        raise UsageProblem(f"--map {text!r}: expected VAR=SERVICE/NAME")
    return Mapping(variable, service, name)


def assign(
    selected: list[SecretAddress], mapped: list[tuple[str, SecretAddress]]
) -> list[tuple[str, SecretAddress]]:
    """(variable, address) for every secret: each of `mapped` under its own variable, each
    of `selected` not also mapped under its default one. A variable that is not a valid
    name, or two secrets under one variable, is a usage problem (before anything is read)."""
    named = {address for _, address in mapped}
    pairs = list(mapped) + [(default_variable(a.name), a) for a in selected if a not in named]
    bad = [f"{v!r} ({a})" for v, a in pairs if _VARIABLE.fullmatch(v) is None]
    if bad:
        raise UsageProblem(
            "not a valid environment variable name: "
            + ", ".join(bad)
            + "; name it with --map VAR=SERVICE/NAME"
        )
    taken = [f"{v} ({a})" for v, a in pairs if _RESERVED.fullmatch(v.upper())]
    if taken:
        raise UsageProblem(
            "not handed to a program, it chooses what runs or what it loads: "
            + ", ".join(taken)
            + "; give the secret another name with --map VAR=SERVICE/NAME"
        )
    by_variable: dict[str, list[str]] = {}
    for variable, address in pairs:
        by_variable.setdefault(variable, []).append(str(address))
    clashes = [
        f"{v} <- {' and '.join(sorted(set(a)))}" for v, a in by_variable.items() if len(a) > 1
    ]
    if clashes:
        raise UsageProblem(
            "two secrets for one environment variable: "
            + "; ".join(sorted(clashes))
            + "; name one of them with --map VAR=SERVICE/NAME"
        )
    return pairs


def shell_quote(value: str) -> str:
    """POSIX shell single quotes: nothing is special inside them but the quote itself."""
    return "'" + value.replace("'", "'\\''") + "'"


def dotenv_quote(value: str) -> str:
    """A quoted dotenv value that python-dotenv reads back exactly. Also what a POSIX shell
    reads back (`set -a; . file`) unless the value holds both a quote or backslash and a `$`
    or backtick: no one quoting means the same to both there (docs/consumers.md)."""
    if "'" not in value and "\\" not in value:
        return "'" + value + "'"  # literal in both
    if "$" not in value and "`" not in value:
        # Both decode \\ and \" alike in double quotes; nothing else is escaped.
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # python-dotenv's single quotes decode \\ and \' only, and never expand ${...}.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render(values: list[tuple[str, str]], form: str) -> str:
    """`values` ((variable, value), in order) as the text of an export format."""
    if form == "json":
        return json.dumps(dict(values), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if form == "shell":
        return "".join(f"export {v}={shell_quote(x)}\n" for v, x in values)
    return "".join(f"{v}={dotenv_quote(x)}\n" for v, x in values)
