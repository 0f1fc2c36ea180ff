"""Hostile values files, time texts and export bundles: the CI gate for the atheris targets.

The same contracts (tests/hostile.py) are fuzzed by tests/fuzz/fuzz_{values_file,as_of,bundle}.py
with atheris; here hypothesis drives them on every run, and the inputs the fuzzing found are
pinned as plain regression tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile import (
    BundleFixture,
)

# -- export bundles -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle() -> Iterator[BundleFixture]:
    made = BundleFixture()
    yield made
    made.close()


def test_a_bundle_is_verified_without_being_written_to(tmp_path: Path) -> None:
    """Evidence stays byte for byte as received, whatever verify finds in it."""
    import subprocess
    import sys

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "ledger.sqlite").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "commands", "audit", "verify", "--bundle", str(bundle)],
        capture_output=True,
        text=True,
        env={**os.environ, "SECRETS_LEDGER_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 6, result.stderr
    assert (
        "is not a SQLite ledger" in result.stderr and "checkpoint.json is missing" in result.stderr
    )
    assert str(bundle) in result.stderr and "secrets-bundle-" not in result.stderr
    assert sorted(p.name for p in bundle.iterdir()) == ["ledger.sqlite"]
    assert (bundle / "ledger.sqlite").read_bytes() == b""
