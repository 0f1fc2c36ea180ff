"""A secret address whose environment, service or key name broke its rule, recorded as a
`Rejection` (HBSE-007) like a rejected value.

What is stored is bounded and never the rejected text: a part that breaks its rule may be
anything the caller typed or pasted, a secret value included, and the caller may be anyone
(an unauthenticated one is recorded as `anonymous`, as a denial is). A part that passes its
own rule is kept as typed (its pattern bounds it); a rejected part becomes `REJECTED_PART`
with its length, which no valid part can look like (`<` is in no name pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ledger.address import SecretAddress
from ledger.errors import ValidationFailed
from ledger.names import validate_environment, validate_name, validate_service

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.application import SecretsLedger

REJECTED_PART = "<rejected, {length} characters>"
# A name's length is shown only up to this: the caller's text is capped before it gets here,
# but the record must stay bounded whatever reaches it.
_MAX_SHOWN_LENGTH = 99_999


def _kept(check: Callable[[str], None], part: object) -> str:
    try:
        check(part)  # type: ignore[arg-type]
    except ValidationFailed:
        length = len(part) if isinstance(part, str) else 0
        return REJECTED_PART.format(length=min(length, _MAX_SHOWN_LENGTH))
    return str(part)


def recorded_target(environment: object, service: object, name: object) -> SecretAddress:
    """The address as it is stored for a rejection: valid parts as typed, others replaced."""
    return SecretAddress(
        _kept(validate_environment, environment),
        _kept(validate_service, service),
        _kept(validate_name, name),
    )


def record_rejected_name(
    ledger: SecretsLedger,
    cred: Credential,
    environment: object,
    service: object,
    name: object,
    rule: str,
) -> None:
    ledger.record_rejection(cred, recorded_target(environment, service, name), rule)
