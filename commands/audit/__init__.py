"""`secrets audit`, `secrets report` and `secrets projections`: verify the history, sign
checkpoints, read the audit log, replay the past, report compliance, rebuild the views.

Each command lives in a module by concern and registers itself on `audit_app`."""

from __future__ import annotations

from commands.audit.common import audit_app
from commands.audit.reports import projections_app, report_app

# isort: off
# Imported in this order because `secrets audit --help` lists commands as they register.
from commands.audit import verify  # noqa: F401  (registers verify, checkpoint, pubkey, export)
from commands.audit import log  # noqa: F401  (registers log, codes)
from commands.audit import past  # noqa: F401  (registers replay, diff, who-can, hash)
# isort: on

__all__ = ["audit_app", "projections_app", "report_app"]
