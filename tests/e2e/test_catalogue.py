"""The catalogue's size cap through the real CLI: `--catalogue /dev/zero` or a huge file, by
option or variable, is refused (exit 5) without being read."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from ledger.rotation.catalogue import MAX_CATALOGUE_BYTES
from tests.unit.test_catalogue import VALID_ENTRY


def _run_capped(ledger: Any, args: list[str], env: dict[str, str]) -> Any:
    """The real CLI with its address space capped at 2 GiB: an unbounded read of /dev/zero
    then ends in a MemoryError in seconds instead of taking the machine's memory."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [ledger.python, "-m", "commands", *args],
        env={**ledger.env, **env},
        cwd=ledger.cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=cap,  # the test process starts no threads of its own
    )


@pytest.mark.parametrize("ledger", ["file-vault"], indirect=True)
@pytest.mark.parametrize("via", ["option", "variable"])
@pytest.mark.parametrize("source", ["/dev/zero", "large-file"])
def test_a_huge_catalogue_is_refused_not_read(
    ledger: Any, tmp_path: Path, via: str, source: str
) -> None:
    path = source
    if source == "large-file":
        # Valid TOML (comments and one entry) over the cap: refused for its size alone.
        big = tmp_path / "big.toml"
        big.write_text("# padding\n" * (MAX_CATALOGUE_BYTES // 10 + 1) + VALID_ENTRY)
        path = str(big)
    args = ["rotate-status"] + (["--catalogue", path] if via == "option" else [])
    env = {"SECRETS_LEDGER_CATALOGUE": path} if via == "variable" else {}
    result = _run_capped(ledger, args, env)
    assert result.returncode == 5, (result.returncode, result.stderr)
    assert f"larger than {MAX_CATALOGUE_BYTES} bytes" in result.stderr, result.stderr
