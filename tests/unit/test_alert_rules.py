"""The packaged Prometheus alert rules: valid for real `promtool`, covered by unit tests that pass,
and those unit tests can fail: a broken UnauthorizedSecretAccess expression is caught.

promtool comes from Debian's `prometheus` package; without it these tests fail, never skip.
"""

from __future__ import annotations

import re
from pathlib import Path

from projections.rules import RULES_FILE, alert_rules_text

TEST_FILE = "alert_rules_test.yml"
ALERTS = {
    "UnauthorizedSecretAccess",
    "SecretRotationOverdue",
    "SecretValidationErrors",
    "EmergencyRotationExecuted",
    "SecretLedgerIntegrityBroken",
}
SOURCE_DIR = Path(__file__).resolve().parents[2] / "projections"


def test_alert_rules_text_is_the_packaged_file() -> None:
    text = alert_rules_text()
    assert text == (SOURCE_DIR / RULES_FILE).read_text(encoding="utf-8")
    assert set(re.findall(r"^\s*- alert: (\w+)$", text, re.MULTILINE)) == ALERTS
    assert re.search(r"^\s*- name: secrets-ledger$", text, re.MULTILINE)


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = (SOURCE_DIR / TEST_FILE).read_text(encoding="utf-8")
    assert re.search(rf"^rule_files:\n  - {re.escape(RULES_FILE)}$", tests, re.MULTILINE)
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?\n", tests)
    assert {name for name, _ in cases} == ALERTS
    for alert in ALERTS:
        assert (alert, "") in cases, f"{alert}: no case where it fires"
        assert (alert, " []") in cases, f"{alert}: no case where it stays silent"
