"""Who may do what. The policy is data, in one place (documented in docs/access-control.md)."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    READ = "read"  # read one secret: get, versions
    MANAGE = "manage"  # list all, set, delete, restore, destroy, rotate, rollback, provision
    ADMIN = "admin"  # grant and revoke roles
    AUDIT = "audit"  # audit and compliance read-outs


SENIOR = "senior-engineer"
ROLES: tuple[str, ...] = (SENIOR, "engineer", "analyst")

POLICY: dict[str, frozenset[Permission]] = {
    SENIOR: frozenset(Permission),
    "engineer": frozenset({Permission.READ, Permission.AUDIT}),
    "analyst": frozenset({Permission.READ, Permission.AUDIT}),
}

# The role named in a refusal: the least role that would have allowed the action.
REQUIRED_ROLE: dict[Permission, str] = {
    Permission.READ: "analyst",
    Permission.MANAGE: SENIOR,
    Permission.ADMIN: SENIOR,
    Permission.AUDIT: "analyst",
}


def allows(role: str | None, permission: Permission) -> bool:
    return role is not None and permission in POLICY.get(role, frozenset())
