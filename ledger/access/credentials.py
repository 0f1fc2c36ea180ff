"""What a caller presents to prove who it is, and who it turned out to be."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Credential:
    token: str | None = None  # SECRETS_LEDGER_TOKEN, one command without a session
    operator: str | None = None  # the session file's claim; proven by session_secret
    session_id: str | None = None
    session_secret: str | None = None
    problem: str | None = None  # why the presented credential is unusable before any check


@dataclass(frozen=True)
class Principal:
    operator: str
    role: str
    session_id: str | None
    expires_at: datetime | None
