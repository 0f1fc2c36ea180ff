"""`secrets audit`, `secrets report` and `secrets projections`: verify the history, sign
checkpoints, read the audit log, replay the past, report compliance, rebuild the views.

Each command lives in a module by concern and registers itself on `audit_app`."""

from __future__ import annotations

import importlib

from commands.audit.common import audit_app
from commands.audit.reports import projections_app, report_app

# Imported in this order because `secrets audit --help` lists commands as they register.
for _module in ("verify", "log", "past"):
    importlib.import_module(f"commands.audit.{_module}")

__all__ = ["audit_app", "projections_app", "report_app"]
