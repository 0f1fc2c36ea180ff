"""Changing how many versions keep their values (`secrets ledger retention N`) after `init`.

A `RetentionChanged` event on the settings aggregate, senior-engineers only (a refusal is
recorded as a denial). The next write of each secret prunes beyond the new figure; nothing is
pruned by the change itself, so lowering it never deletes values without a write to show for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.access.policy import Permission
from ledger.errors import ValidationFailed

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.application import SecretsLedger

ACTION = "ledger retention"


def validate_retention(retention: int) -> None:
    """The rule `init --retention` applies (`SecretsLedger.initialize`)."""
    if retention < 1:
        raise ValidationFailed("retention", "retention must keep at least 1 version")


def change_retention(ledger: SecretsLedger, cred: Credential, retention: int) -> int:
    """Record `retention` as the ledger's figure; the figure it replaces."""
    principal = ledger.authorize(cred, Permission.ADMIN, ACTION)
    validate_retention(retention)

    def attempt() -> int:
        settings = ledger.fresh_settings()  # another writer may have changed it since
        before = int(settings.retention)
        if before != retention:
            settings.change_retention(retention)
            ledger.uow.save(settings)
        return before

    with ledger.uow.stamp(principal):
        return ledger.uow.retrying(attempt)
