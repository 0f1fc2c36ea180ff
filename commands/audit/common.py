"""What the audit commands share: the `audit` app, and the parsing of times and codes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from datetime import datetime


audit_app = typer.Typer(
    help="Verify the ledger's history, sign checkpoints, read and replay the audit log.",
    no_args_is_help=True,
)


def when_option(text: str | None, option: str) -> datetime | None:
    from commands.value_input import UsageProblem
    from projections.timefmt import parse_when

    if text is None:
        return None
    try:
        return parse_when(text)
    except ValueError as exc:
        raise UsageProblem(f"{option}: {exc}") from None


def as_of_option(text: str | None) -> datetime | None:
    """`report compliance --as-of`: a span ago (7d) is that instant; a date or date-time means
    the end of the period it names, as `rotate-status --as-of` does, so the Q1 report
    `--as-of 2026-03-31` includes 31 March (it used to stop at its midnight)."""
    import re

    from commands.value_input import UsageProblem
    from ledger.errors import ValidationFailed
    from projections.compliance import parse_as_of

    if text is None or re.fullmatch(r"\s*\d{1,7}[smhdw]\s*", text):
        return when_option(text, "--as-of")
    try:
        return parse_as_of(text)
    except ValidationFailed as exc:
        raise UsageProblem(str(exc)) from None


def audit_code(code: str | None) -> str | None:
    """`--code` as catalogued (case-insensitive); an unknown code is a usage error, not 0 rows."""
    from commands.value_input import UsageProblem
    from projections.audit_codes import CODES

    if code is None:
        return None
    wanted = code.strip().upper()
    if wanted not in CODES:
        raise UsageProblem(f"--code: {code!r} is not an HBSE code (see `secrets audit codes`)")
    return wanted


def shown(value: Any) -> str:
    """A field's value in a table: "-" for none (a secret that did not exist yet)."""
    return "-" if value is None else str(value)
