"""The packaged Prometheus alert rules: valid for real `promtool`, covered by unit tests that pass,
and those unit tests can fail: a broken UnauthorizedSecretAccess expression is caught.

promtool comes from Debian's `prometheus` package; without it these tests fail, never skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path

import pytest

from projections.rules import RULES_FILE

TEST_FILE = "alert_rules_test.yml"
ALERTS = {
    "UnauthorizedSecretAccess",
    "SecretRotationOverdue",
    "SecretValidationErrors",
    "EmergencyRotationExecuted",
    "SecretLedgerIntegrityBroken",
}
SOURCE_DIR = Path(__file__).resolve().parents[2] / "projections"


def promtool() -> str:
    """Called inside each test (not a fixture), so a missing promtool is a FAILED test."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus), which provides /usr/bin/promtool"
        )
    return path


@pytest.fixture(scope="module")
def packaged_rules() -> Iterator[Path]:
    with as_file(files("projections").joinpath(RULES_FILE)) as path:
        yield path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def alert_block(text: str, alert: str) -> tuple[int, int]:
    """Start and end offsets of one alert's rule in the rules file."""
    start = text.index(f"- alert: {alert}\n")
    following = text.find("- alert: ", start + 1)
    return start, len(text) if following == -1 else following


def test_promtool_check_rules_accepts_the_packaged_file(packaged_rules: Path) -> None:
    result = run(promtool(), "check", "rules", str(packaged_rules))
    assert result.returncode == 0, output(result)
    assert f"SUCCESS: {len(ALERTS)} rules found" in output(result)


def test_promtool_unit_tests_pass() -> None:
    result = run(promtool(), "test", "rules", str(SOURCE_DIR / TEST_FILE))
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in output(result)


@pytest.mark.parametrize(
    ("old", "new", "count"),
    [
        # Threshold raised: the alert can never fire, so the "fires" cases must fail.
        ("> 0", "> 1000000", 2),
        # The access counter of every result instead of the denials: successes fire, so the
        # "silent" cases must fail.
        ("hyperbun_secret_access_denied_total", "hyperbun_secret_access_total", 4),  # + comment
    ],
    ids=["never-fires", "fires-on-success"],
)
def test_unit_tests_catch_a_broken_unauthorized_access_rule(
    tmp_path: Path, old: str, new: str, count: int
) -> None:
    text = (SOURCE_DIR / RULES_FILE).read_text(encoding="utf-8")
    start, end = alert_block(text, "UnauthorizedSecretAccess")
    block = text[start:end]
    assert block.count(old) == count, "the mutation no longer matches the rule: update this test"
    (tmp_path / RULES_FILE).write_text(
        text[:start] + block.replace(old, new) + text[end:], encoding="utf-8"
    )
    shutil.copy(SOURCE_DIR / TEST_FILE, tmp_path / TEST_FILE)

    # The broken rules are still valid rules: only the unit tests can notice.
    assert run(promtool(), "check", "rules", str(tmp_path / RULES_FILE)).returncode == 0
    result = run(promtool(), "test", "rules", str(tmp_path / TEST_FILE))
    assert result.returncode != 0, output(result)
    failed = set(re.findall(r"alertname: (\w+)", output(result)))
    assert failed == {"UnauthorizedSecretAccess"}, output(result)
