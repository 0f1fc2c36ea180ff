"""The Prometheus alert rules shipped with the package (`secrets metrics rules` prints them)."""

from __future__ import annotations

from importlib.resources import files

RULES_FILE = "alert_rules.yml"


def alert_rules_text() -> str:
    """The packaged `alert_rules.yml`, exactly as shipped (documented in docs/metrics.md)."""
    return files("projections").joinpath(RULES_FILE).read_text(encoding="utf-8")
