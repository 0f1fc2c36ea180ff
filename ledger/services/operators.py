"""Operators: grant, revoke, login, logout, whoami, and who holds senior-engineer.

A removal of a senior-engineer records the remaining ones on the settings in the same
transaction (`LedgerSettings.record_senior_engineers`), so that two removals conflict and the
ledger never loses its last senior-engineer to a race (docs/security.md).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ledger import context
from ledger.access import tokens
from ledger.access.credentials import Credential, Principal
from ledger.access.policy import REQUIRED_ROLE, SENIOR, Permission, allows
from ledger.errors import NotFound, PermissionDenied, ValidationFailed
from ledger.operator import Operator, check_role, validate_operator_name
from ledger.store.notifications import notifications, originator_of
from ledger.unit_of_work import shown_name

if TYPE_CHECKING:
    from ledger.application import OpenedSession, SecretsLedger
    from ledger.settings import LedgerSettings
    from ledger.unit_of_work import UnitOfWork


class OperatorsService:
    def __init__(self, app: SecretsLedger, uow: UnitOfWork) -> None:
        self.app = app
        self.uow = uow

    def grant(self, cred: Credential, name: str, role: str) -> tokens.IssuedToken:
        uow = self.uow
        principal = uow.authorize(cred, Permission.ADMIN, "grant")
        try:
            validate_operator_name(name)
            check_role(role)
        except ValidationFailed as failed:
            from ledger.records import GrantRejection, escaped

            with uow.stamp(principal):
                uow.save(GrantRejection(escaped(name), escaped(role), failed.rule))
            raise
        issued = tokens.issue(name)

        def attempt() -> None:
            settings = self.app.fresh_settings()
            self._still_allowed(principal, "grant")
            operator = uow.load_operator(name)
            removes_senior = operator is not None and operator.role == SENIOR and role != SENIOR
            remaining = self._refuse_losing_last_senior(name) if removes_senior else None
            if operator is None:
                operator = Operator(name, role)
            else:
                operator.grant(role)
                # A new token replaces the old one: sessions opened with the old one end too,
                # or whoever held it (the reason to re-grant, often) would keep working.
                operator.end_sessions("token reissued")
            operator.issue_token(issued.token_id, issued.digest)
            self._save_operator(operator, settings, remaining)

        with uow.stamp(principal):
            uow.retrying(attempt)
        return issued

    def revoke(self, cred: Credential, name: str) -> None:
        uow = self.uow
        principal = uow.authorize(cred, Permission.ADMIN, "revoke")

        def attempt() -> None:
            settings = self.app.fresh_settings()
            self._still_allowed(principal, "revoke")
            found = uow.load_operator(name)
            if found is None or found.role is None:
                raise NotFound(f"no active operator {shown_name(name)}")
            remaining = self._refuse_losing_last_senior(name) if found.role == SENIOR else None
            found.revoke()
            self._save_operator(found, settings, remaining)

        with uow.stamp(principal):
            uow.retrying(attempt)

    def _still_allowed(self, principal: Principal, action: str) -> None:
        """The caller's role as stored now: after a lost race (or since `authorize`), the
        winner may have revoked or demoted the caller."""
        actor = self.uow.load_operator(principal.operator)
        role = actor.role if actor is not None else None
        if role is None or not allows(role, Permission.ADMIN):
            reason = f"{principal.operator} lost {principal.role} while the {action} ran"
            self.uow.record_denial(principal.operator, action, reason)
            raise PermissionDenied(
                f"PERMISSION_DENIED: {action} requires {REQUIRED_ROLE[Permission.ADMIN]} ({reason})"
            )

    def _save_operator(
        self, operator: Operator, settings: LedgerSettings, remaining: list[str] | None
    ) -> None:
        """Save `operator`; when it loses senior-engineer (`remaining`: who keeps it), record
        them on `settings` (loaded by `fresh_settings` before the operator) in the same
        transaction (LedgerSettings.record_senior_engineers)."""
        if remaining is None:
            self.uow.save(operator)
            return
        settings.record_senior_engineers(remaining)
        self.uow.save(operator, settings)

    def senior_engineers(self) -> list[str]:
        names: list[str] = []
        for n in notifications(self.app.recorder, Operator, "Registered"):
            op: Any = self.uow.load_authority(originator_of(n))
            assert isinstance(op, Operator)
            if op.role == SENIOR:
                names.append(op.name)
        return names

    def _refuse_losing_last_senior(self, name: str) -> list[str]:
        """The senior-engineers other than `name`; ValidationFailed if there are none."""
        remaining = [n for n in self.senior_engineers() if n != name]
        if not remaining:
            raise ValidationFailed(
                "last-senior", f"{name!r} is the last senior-engineer; grant another one first"
            )
        return remaining

    def login(self, name: str, token: str, ttl: timedelta) -> OpenedSession:
        from ledger.application import OpenedSession

        uow = self.uow
        principal, actor, reason = uow.identify(Credential(token=token), "login")
        if principal is None or principal.operator != name:
            why = reason or f"token does not belong to {shown_name(name)}"
            uow.record_denial(actor, "login", why)
            raise PermissionDenied(f"PERMISSION_DENIED: login refused ({why})")
        if ttl <= timedelta(0) or ttl > timedelta(days=7):
            raise ValidationFailed("ttl", "session TTL must be between 1 second and 7 days")
        session_secret = tokens.new_session_secret()
        session_id = uuid.uuid4().hex
        expires = context.now() + ttl

        def attempt() -> Operator:
            operator = uow.load_operator(name)
            assert operator is not None
            operator.open_session(session_id, tokens.digest(session_secret), expires, self.app.host)
            uow.save(operator)
            return operator

        with context.acting_as(name):
            operator = uow.retrying(attempt)
        assert operator.role is not None
        return OpenedSession(name, operator.role, session_id, session_secret, expires)

    def logout(self, cred: Credential) -> bool:
        uow = self.uow
        principal, _, _ = uow.identify(cred)
        if principal is None or principal.session_id is None:
            return False
        session_id = principal.session_id

        def attempt() -> None:
            operator = uow.load_operator(principal.operator)
            assert operator is not None
            operator.close_session(session_id, "logout")
            uow.save(operator)

        with uow.stamp(principal):
            uow.retrying(attempt)
        return True

    def whoami(self, cred: Credential) -> tuple[Principal | None, str]:
        principal, _, reason = self.uow.identify(cred)
        return principal, reason
