"""docs/cli.md is what the Typer app says: regenerated in memory, it must equal the file.

A new command or option, or changed help, fails here until `scripts/gen-cli-doc` is run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main

from commands import clidoc
from commands.exit_codes import ExitCode
from commands.main import app


def test_docs_cli_md_is_the_generated_reference() -> None:
    assert clidoc.DOC.read_text(encoding="utf-8") == clidoc.render(), (
        "docs/cli.md differs from the CLI: run scripts/gen-cli-doc and commit the result"
    )


def _tree() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(command: Any, path: str) -> None:
        found.append((path, command))
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "secrets")
    return found


def test_every_command_option_and_exit_code_is_in_the_reference() -> None:
    text = clidoc.render()
    tree = _tree()
    leaves = [path for path, command in tree if not getattr(command, "commands", None)]
    assert len(leaves) >= 47, leaves
    for path, command in tree:
        heading = f"## `{path}`\n"
        assert heading in text, path
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            if param.name == "help":
                continue
            for opt in param.opts:
                assert f"{opt}" in section, (path, opt)
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` |" in text


def test_the_check_fails_on_a_stale_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text(clidoc.render().replace("--value-stdin", "--value-in"), encoding="utf-8")
    monkeypatch.setattr(clidoc, "DOC", stale)
    assert clidoc.main(["--check"]) == 1
    assert "scripts/gen-cli-doc" in capsys.readouterr().err
    assert clidoc.main(["--write"]) == 0
    assert clidoc.main(["--check"]) == 0
