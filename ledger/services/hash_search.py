"""`secrets audit hash` without an address: which secrets and versions ever held a value.

Fingerprints are HMACs over the address and the value (ledger.application, invariant 1), so a
value has a different fingerprint at every address: the search computes it once per secret
and compares it with every version that secret ever recorded, pruned and destroyed ones
included (their fingerprints stay in the history). Each secret is loaded as a decision's
secret is (`SecretsLedger.load_secret`: chain-checked, failing closed on damage), so a
forged or edited event cannot hide a match or invent one unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledger.access.policy import Permission

if TYPE_CHECKING:
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger

ACTION = "audit hash"


@dataclass(frozen=True)
class HashMatch:
    address: SecretAddress
    fingerprint: str
    versions: list[int]


def search_ledger(
    ledger: SecretsLedger, cred: Credential, value: str
) -> tuple[int, list[HashMatch]]:
    """How many secrets were searched, and each one with a version that held `value`."""
    ledger.authorize(cred, Permission.READ, ACTION)
    searched = 0
    found: list[HashMatch] = []
    for secret_id in ledger.secret_ids():
        secret = ledger.load_secret(secret_id, f"secret {secret_id}")
        if secret is None:
            continue
        searched += 1
        fingerprint = ledger.fingerprint(secret.address, value)
        versions = sorted(n for n, v in secret.versions.items() if v.fingerprint == fingerprint)
        if versions:
            found.append(HashMatch(secret.address, fingerprint, versions))
    return searched, sorted(found, key=lambda m: m.address)
