"""What the dashboard shows, as data: who the caller is, rotation status, recent audit rows.

Opening the dashboard is a read of metadata: it reads the event store (to prove the caller's
session, as `secrets auth status` does) and the read models, never the keychain, and records
nothing. It shows no value, so anyone may look; the access section says what they may do.

Rotation policy: `ledger.rotation.policy.spec_status`, the function `projections.compliance` applies
too, fed from the read model: the value in use is as old as its `secrets_view.last_rotation` (a
rollback keeps the restored value's age); it is due `rotation_days` later (catalogue, default
90); ``emergency-pending`` when an emergency rotation started after that value was written,
``overdue`` from the due instant, ``due-soon`` from `warning_days` before it (default 14), else
``ok``; rotation kind ``none`` is ``exempt``. Uncatalogued keys get the defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ledger.access.policy import POLICY, SENIOR, Permission
from projections.timefmt import iso, parse_iso

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.application import SecretsLedger
    from ledger.rotation.catalogue import Catalogue
    from projections.views import AuditRow, SecretRow, Views

# One source for the statuses and the policy defaults: the rotation use cases own them.
from ledger.rotation.runs import (
    DUE_SOON,
    EMERGENCY_PENDING,
    EXEMPT,
    NON_COMPLIANT,
    OVERDUE,
    STATUSES,
    emergency_since,
    spec_status,
)

RECENT_ROWS: Final = 5
# "Recent Access Logs": what was done to secrets or refused, as the operating guide has it
# ("secret-related access log entries"): reads, sets, rotations, rollbacks, deletes, denials,
# rejected values, provisioning. Not checkpoints, sessions, operators or settings, and not the
# register row that goes with a secret's first set (the set row says it).
ACCESS_CODES: Final = (
    "HBSE-001",
    "HBSE-002",
    "HBSE-003",
    "HBSE-004",
    "HBSE-005",
    "HBSE-006",
    "HBSE-007",
    "HBSE-009",
)

DENIED_HEADLINE: Final = f"Access denied - {SENIOR} role required"

# What each permission lets a role do, in the words of docs/access-control.md.
PERMISSION_TEXT: Final[dict[Permission, str]] = {
    Permission.READ: "read one secret (get, versions)",
    Permission.MANAGE: "manage secrets (list, set, delete, restore, destroy, rotate, rollback, "
    "doctor)",
    Permission.ADMIN: "administer operators (auth grant, auth revoke)",
    Permission.AUDIT: "audit and compliance read-outs",
}


# -- rotation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretRotation:
    environment: str
    service: str
    name: str
    kind: str  # external | generated | none
    last_rotation: datetime | None
    due: datetime | None
    status: str

    @property
    def address(self) -> str:
        return f"{self.environment}/{self.service}/{self.name}"


@dataclass(frozen=True)
class RotationStatus:
    as_of: datetime
    secrets: list[SecretRotation]

    def count(self, status: str) -> int:
        return sum(1 for s in self.secrets if s.status == status)

    @property
    def last_rotation(self) -> datetime | None:
        # Exempt keys count too, as in `projections.compliance`: both screens must agree.
        return max((s.last_rotation for s in self.secrets if s.last_rotation), default=None)

    @property
    def next_due(self) -> datetime | None:
        return min((s.due for s in self.secrets if s.due is not None), default=None)

    @property
    def compliant(self) -> bool:
        return not any(self.count(status) for status in NON_COMPLIANT)

    @property
    def status_line(self) -> str:
        rotating = [s for s in self.secrets if s.status != EXEMPT]
        if not rotating:
            return "Compliant (no secrets that need rotation)"
        pending = self.count(EMERGENCY_PENDING)
        overdue, soon = self.count(OVERDUE), self.count(DUE_SOON)
        if pending or overdue:
            parts = []
            if pending:
                parts.append(f"{pending} of {len(rotating)} awaiting emergency rotation")
            if overdue:
                parts.append(f"{overdue} of {len(rotating)} overdue")
            if soon:
                parts.append(f"{soon} due soon")
            return "Non-compliant: " + ", ".join(parts)
        if soon:
            return f"Compliant, {soon} of {len(rotating)} due within the warning period"
        return f"Compliant ({len(rotating)} of {len(rotating)} within policy)"

    def worst(self, limit: int = 5) -> list[SecretRotation]:
        """The secrets most in need of rotation: awaiting emergency rotation, then overdue or
        due soon, soonest first."""
        urgent = [
            s
            for s in self.secrets
            if s.status in (EMERGENCY_PENDING, OVERDUE, DUE_SOON) and s.due is not None
        ]
        return sorted(urgent, key=lambda s: (s.status != EMERGENCY_PENDING, s.due, s.address))[
            :limit
        ]

    def as_json(self) -> dict[str, Any]:
        last, due = self.last_rotation, self.next_due
        return {
            "as_of": iso(self.as_of),
            "last_rotation": iso(last) if last else None,
            "next_rotation_due": iso(due) if due else None,
            "compliance_status": self.status_line,
            "compliant": self.compliant,
            "counts": {s: self.count(s) for s in STATUSES},
            "attention": [
                {
                    "secret": s.address,
                    "due": iso(s.due) if s.due else None,
                    "status": s.status,
                }
                for s in self.worst()
            ],
        }


def assess(
    row: SecretRow, catalogue: Catalogue, as_of: datetime, emergency: datetime | None = None
) -> SecretRotation:
    spec = catalogue.lookup(row.service, row.name)
    last = parse_iso(row.last_rotation) if row.last_rotation else None
    kind, _, _, due, status = spec_status(spec, last, as_of, emergency)
    return SecretRotation(row.environment, row.service, row.name, kind, last, due, status)


def rotation_status(
    rows: Iterable[SecretRow],
    catalogue: Catalogue,
    as_of: datetime,
    emergency: datetime | None = None,
) -> RotationStatus:
    """Rotation status of the live secrets in `rows` (from `Views.secrets()`) at `as_of`;
    `emergency`: when the newest emergency rotation up to `as_of` started (None: none)."""
    return RotationStatus(
        as_of,
        [
            assess(r, catalogue, as_of, emergency)
            for r in rows
            if not r.deleted and r.current_version
        ],
    )


# -- access ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessStatus:
    operator: str | None
    role: str | None
    via: str | None  # session | token
    expires_at: datetime | None
    permissions: list[Permission] = field(default_factory=list)
    reason: str = ""  # why the caller is not a senior-engineer, when it is not

    @property
    def granted(self) -> bool:
        return self.role == SENIOR

    @property
    def headline(self) -> str:
        if self.granted:
            return f"Access granted - {self.operator} ({self.role})"
        return DENIED_HEADLINE

    @property
    def may(self) -> list[str]:
        return [PERMISSION_TEXT[p] for p in Permission if p in self.permissions]

    def as_json(self) -> dict[str, Any]:
        return {
            "granted": self.granted,
            "headline": self.headline,
            "operator": self.operator,
            "role": self.role,
            "via": self.via,
            "expires_at": iso(self.expires_at) if self.expires_at else None,
            "permissions": [p.value for p in Permission if p in self.permissions],
            "may": self.may,
            "reason": self.reason or None,
        }


def access_status(ledger: SecretsLedger, cred: Credential) -> AccessStatus:
    """Who the caller is and what it may do. Proves the session without recording anything."""
    principal, reason = ledger.whoami(cred)
    if principal is None:
        return AccessStatus(None, None, None, None, [], reason)
    allowed = sorted(POLICY.get(principal.role, frozenset()), key=list(Permission).index)
    why = "" if principal.role == SENIOR else f"role {principal.role} is read-only"
    return AccessStatus(
        principal.operator,
        principal.role,
        "session" if principal.session_id else "token",
        principal.expires_at,
        allowed,
        why,
    )


# -- the whole screen --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    generated_at: datetime
    access: AccessStatus
    rotation: RotationStatus
    recent: list[AuditRow]

    def as_json(self) -> dict[str, Any]:
        return {
            "generated_at": iso(self.generated_at),
            "access": self.access.as_json(),
            "rotation": self.rotation.as_json(),
            "recent": [
                {
                    "timestamp": r.timestamp,
                    "code": r.code,
                    "operator": r.operator,
                    "action": r.action,
                    "target": r.target or None,
                    "outcome": r.outcome,
                }
                for r in self.recent
            ],
        }


def snapshot(
    ledger: SecretsLedger,
    cred: Credential,
    views: Views,
    catalogue: Catalogue,
    as_of: datetime,
    recent: int = RECENT_ROWS,
) -> Dashboard:
    """One consistent look: views caught up first, so rotation and logs agree with the log."""
    views.catch_up()
    return Dashboard(
        generated_at=as_of,
        access=access_status(ledger, cred),
        rotation=rotation_status(views.secrets(), catalogue, as_of, emergency_since(ledger, as_of)),
        recent=views.audit(
            limit=recent, newest_first=True, codes=ACCESS_CODES, without_actions=("register",)
        ),
    )
