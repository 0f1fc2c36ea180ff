"""Per-command plumbing: open the ledger, present the caller's credential, print results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import context

if TYPE_CHECKING:
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger
    from ledger.credentials import Credential
    from projections.views import Views


def home_dir(home: Path | None) -> Path:
    from ledger.config import default_home

    return home if home is not None else default_home()


_database_url: str | None = None


def use_database_url(url: str | None) -> None:
    """The command's `--database-url` (or $SECRETS_LEDGER_DATABASE_URL), for every open."""
    global _database_url
    _database_url = url or None


def open_ledger(home: Path | None, *, create: bool = False) -> SecretsLedger:
    from ledger.config import open_ledger as _open

    context.correlation_id()  # one correlation id for every event of this command
    return _open(home_dir(home), create=create, database_url=_database_url)


def credential(ledger: SecretsLedger) -> Credential:
    from ledger.session_file import credential as _credential

    return _credential(ledger.home)


def views(ledger: SecretsLedger) -> Views:
    from projections.views import Views

    found = Views(ledger)
    found.catch_up()
    return found


def address(environment: str, service: str, name: str) -> SecretAddress:
    from ledger.address import SecretAddress

    return SecretAddress.parse(environment, service, name)


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def info(message: str) -> None:
    """Human-facing progress and confirmations go to stderr; stdout stays for data."""
    print(message, file=sys.stderr)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
