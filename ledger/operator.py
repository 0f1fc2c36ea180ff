"""The `Operator` aggregate: a person or automation, its role, token and sessions.

Roles are granted by events, so who could do what at any past instant is a projection.
Tokens and session secrets are stored only as SHA-256 digests: they are 256 random bits, so a
slow password hash adds nothing.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ledger.access.policy import ROLES
from ledger.errors import ValidationFailed
from ledger.stamping import LedgerAggregate

_OPERATOR_NAMESPACE = uuid5(NAMESPACE_URL, "https://secrets-ledger.invalid/operator")


def operator_id(name: str) -> UUID:
    return uuid5(_OPERATOR_NAMESPACE, name)


@dataclass(frozen=True)
class Session:
    session_id: str
    secret_digest: str
    opened_at: datetime
    expires_at: datetime
    host: str


OPERATOR_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")


def validate_operator_name(name: str) -> None:
    """Operator names: lower-case letter first, then letters, digits, '.', '_', '-' (<= 64)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationFailed("control-characters", "operator name contains control characters")
    if not OPERATOR_NAME.fullmatch(name):
        raise ValidationFailed(
            "operator-name",
            f"operator name {name[:80]!r} must match {OPERATOR_NAME.pattern}",
        )


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationFailed("role", f"unknown role {role!r}; one of {', '.join(ROLES)}")


class Operator(LedgerAggregate):
    @staticmethod
    def create_id(name: str, role: str) -> UUID:
        return operator_id(name)

    @event("Registered")
    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role: str | None = role
        self.token_digest: str | None = None
        self.sessions: dict[str, Session] = {}

    @property
    def active(self) -> bool:
        return self.role is not None

    def grant(self, role: str) -> None:
        check_role(role)
        self._role_granted(role)

    @event("RoleGranted")
    def _role_granted(self, role: str) -> None:
        self.role = role

    def revoke(self) -> None:
        self.end_sessions("revoked")
        self._revoked()

    def end_sessions(self, reason: str) -> None:
        for session_id in list(self.sessions):
            self.close_session(session_id, reason)

    @event("Revoked")
    def _revoked(self) -> None:
        self.role = None
        self.token_digest = None

    @event("TokenIssued")
    def issue_token(self, token_id: str, token_digest: str) -> None:
        self.token_digest = token_digest

    def token_matches(self, digest: str) -> bool:
        if self.token_digest is None:
            return False
        return hmac.compare_digest(self.token_digest, digest)

    class SessionOpened(LedgerAggregate.Event):
        session_id: str
        secret_digest: str
        expires_at: datetime
        host: str

        def apply(self, aggregate: Any) -> None:
            assert isinstance(aggregate, Operator)
            aggregate.sessions[self.session_id] = Session(
                self.session_id, self.secret_digest, self.timestamp, self.expires_at, self.host
            )

    def open_session(
        self, session_id: str, secret_digest: str, expires_at: datetime, host: str
    ) -> None:
        self.trigger_event(
            self.SessionOpened,
            session_id=session_id,
            secret_digest=secret_digest,
            expires_at=expires_at,
            host=host,
        )

    def close_session(self, session_id: str, reason: str) -> None:
        if session_id in self.sessions:
            self._session_closed(session_id, reason)

    @event("SessionClosed")
    def _session_closed(self, session_id: str, reason: str) -> None:
        self.sessions.pop(session_id, None)

    def valid_session(self, session_id: str, secret_digest: str, at: datetime) -> Session | None:
        session = self.sessions.get(session_id)
        if session is None or not hmac.compare_digest(session.secret_digest, secret_digest):
            return None
        if session.expires_at <= at:
            return None
        return session
