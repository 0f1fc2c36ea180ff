"""Name rules for a secret's address (environment, service, name): patterns and checks.

Kept apart from `ledger.validation` (the value rules, which build pydantic validators at import)
so that every command that only parses an address (get, versions, ...) stays light. The rules
are documented in `ledger.validation`, which re-exports everything here.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from ledger.errors import ValidationFailed

__all__ = [
    "ENVIRONMENT_PATTERN",
    "NAME_PATTERN",
    "SERVICE_PATTERN",
    "validate_address",
    "validate_environment",
    "validate_name",
    "validate_service",
]

ENVIRONMENT_PATTERN: Final = r"^[a-z][a-z0-9-]{0,62}$"
SERVICE_PATTERN: Final = r"^[a-z][a-z0-9-]{0,62}$"
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

_ENVIRONMENT_RE = re.compile(ENVIRONMENT_PATTERN, re.ASCII)
_SERVICE_RE = re.compile(SERVICE_PATTERN, re.ASCII)
_NAME_RE = re.compile(NAME_PATTERN, re.ASCII)

_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_SHOWN_NAME_LIMIT = 80


def _shown(text: str) -> str:
    """`repr(text)`, cut to 80 characters."""
    shown = repr(text)
    if len(shown) > _SHOWN_NAME_LIMIT:
        shown = shown[: _SHOWN_NAME_LIMIT - 3] + "..."
    return shown


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in _CONTROL_CATEGORIES for ch in text)


def _check_part(part: str, value: object, regex: re.Pattern[str], pattern: str) -> None:
    if not isinstance(value, str):
        raise ValidationFailed("name-pattern", f"{part} must be a string")
    if _has_control(value):
        raise ValidationFailed(
            "control-characters",
            f"{part} {_shown(value)} contains control or invisible characters",
        )
    if regex.fullmatch(value) is None:
        raise ValidationFailed(
            "name-pattern", f"{part} {_shown(value)} does not match the pattern {pattern}"
        )


def validate_environment(environment: str) -> None:
    """Check an environment name against ``ENVIRONMENT_PATTERN``."""
    _check_part("environment", environment, _ENVIRONMENT_RE, ENVIRONMENT_PATTERN)


def validate_service(service: str) -> None:
    """Check a service name against ``SERVICE_PATTERN``."""
    _check_part("service", service, _SERVICE_RE, SERVICE_PATTERN)


def validate_name(name: str) -> None:
    """Check a key name against ``NAME_PATTERN``."""
    _check_part("name", name, _NAME_RE, NAME_PATTERN)


def validate_address(environment: str, service: str, name: str) -> None:
    """Check all three parts of a secret's address; raise ValidationFailed on the first bad one."""
    validate_environment(environment)
    validate_service(service)
    validate_name(name)
