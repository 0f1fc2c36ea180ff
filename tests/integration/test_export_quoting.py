"""`secrets export`'s quoting read back by a real bash (`set -a`): every value of the shell
form, and every value of the dotenv form but those with both a quote or backslash and a `$`
or backtick (commands/consume_env.py says why)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.consume_env import render

# Any text an environment variable can hold: no NUL, no lone surrogate.
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@settings(max_examples=20, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=20))
def test_bash_reads_back_every_shell_value_and_dotenv_values_it_can(values: list[str]) -> None:
    pairs = [(f"V{i}", v) for i, v in enumerate(values)]
    both = [("'" in v or "\\" in v) and ("$" in v or "`" in v) for v in values]
    shell = render(pairs, "shell")
    dotenv = render([p for p, b in zip(pairs, both, strict=True) if not b], "dotenv")
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    for text, expected in [
        (shell, pairs),
        (dotenv, [p for p, b in zip(pairs, both, strict=True) if not b]),
    ]:
        done = subprocess.run(
            ["bash", "-c", f'set -a; eval "$TEXT"; set +a; unset TEXT; {dump}'],
            env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "TEXT": text},
            capture_output=True,
            text=True,
            check=True,
        )
        seen = json.loads(done.stdout)
        assert {k: seen.get(k) for k, _ in expected} == dict(expected)
