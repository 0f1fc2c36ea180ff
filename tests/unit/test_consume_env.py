"""The consumer commands' variable names and export quoting (commands/consume_env.py): the
names of the issue, clashes and invalid names refused, and values of any text read back
exactly by python-dotenv and by bash (tests/integration/test_export_quoting.py)."""

from __future__ import annotations

import io

import pytest
from dotenv import dotenv_values
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.consume_env import assign, default_variable, dotenv_quote, shell_quote
from commands.value_input import UsageProblem
from ledger.address import SecretAddress

# Any text an environment variable can hold: no NUL, no lone surrogate.
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


def _at(service: str, name: str) -> SecretAddress:
    return SecretAddress("default", service, name)


def test_default_names() -> None:
    assert default_variable("mcp.bun.apiKey") == "MCP_BUN_APIKEY"
    assert default_variable("db-url") == "DB_URL"
    assert default_variable("caf\u00e9") == "CAF_"


def test_clashes_and_invalid_names_are_usage_problems() -> None:
    with pytest.raises(UsageProblem, match="A_B"):
        assign([_at("s", "a.b"), _at("s", "a_b")], [])
    with pytest.raises(UsageProblem, match="9LIVES"):
        assign([_at("s", "9lives")], [])
    with pytest.raises(UsageProblem, match="X"):
        assign([_at("s", "x")], [("X", _at("t", "y"))])
    # --map renames a secret --service selected too: no clash, one variable.
    pairs = assign([_at("s", "a.b"), _at("s", "a_b")], [("OTHER", _at("s", "a_b"))])
    assert sorted(v for v, _ in pairs) == ["A_B", "OTHER"]


@pytest.mark.parametrize(
    "variable", ["PATH", "LD_PRELOAD", "ld_library_path", "PYTHONPATH", "BASH_ENV", "IFS"]
)
def test_a_secret_never_chooses_what_runs(variable: str) -> None:
    # `run` execs CMD through PATH; a secret there (or in the loader's or a shell's startup
    # variables) would choose the program or inject code into it.
    with pytest.raises(UsageProblem, match="chooses what runs"):
        assign([], [(variable, _at("s", "x"))])
    with pytest.raises(UsageProblem, match="chooses what runs"):
        assign([_at("s", variable.lower())], [])
    assert assign([], [("MY_PATH", _at("s", "x"))]) == [("MY_PATH", _at("s", "x"))]


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_dotenv_reads_back_every_value(value: str) -> None:
    text = f"K={dotenv_quote(value)}\nNEXT='after'\n"
    assert dotenv_values(stream=io.StringIO(text), interpolate=False) == {
        "K": value,
        "NEXT": "after",
    }


def test_shell_quote_is_single_quotes() -> None:
    assert shell_quote("it's") == "'it'\\''s'"
