"""Operator tokens and session secrets: 256 random bits, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

PREFIX = "slt"


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once to the operator, never stored
    token_id: str
    digest: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(operator: str) -> IssuedToken:
    secret = secrets.token_urlsafe(32)
    token_id = secrets.token_hex(8)
    return IssuedToken(f"{PREFIX}.{operator}.{secret}", token_id, digest(secret))


def parse(token: str) -> tuple[str, str] | None:
    """(operator name, secret part) of a well-formed token, else None."""
    parts = token.strip().split(".")
    # Operator names may contain dots, the secret part never does (token_urlsafe alphabet).
    if len(parts) < 3 or parts[0] != PREFIX or not parts[-1]:
        return None
    name = ".".join(parts[1:-1])
    return (name, parts[-1]) if name else None


def new_session_secret() -> str:
    return secrets.token_urlsafe(32)
