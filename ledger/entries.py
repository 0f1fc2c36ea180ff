"""Names of the keychain entries that hold version values.

An entry name says which version it holds and a prefix of its keyed fingerprint, never
anything about the value itself (docs/security.md).
"""

from __future__ import annotations

import re

from ledger.address import SecretAddress
from ledger.errors import ValidationFailed


def entry_name(address: SecretAddress, version: int, fingerprint: str) -> str:
    return f"{address}#v{version}.{fingerprint[:12]}"


# `entry_name`'s shape. The other entries of a namespace (the fingerprint key, the checkpoint
# key and witness, automation tokens) hold no '/' and never match.
_VERSION_ENTRY = re.compile(
    r"(?P<environment>[^/#]+)/(?P<service>[^/#]+)/(?P<name>[^/#]+)"
    r"#v(?P<number>[1-9][0-9]{0,17})\.(?P<fingerprint>[0-9a-f]{12})"
)


def parse_entry_name(entry: str) -> tuple[SecretAddress, int] | None:
    """(address, version number) of a version's entry name; None for any other entry."""
    found = _VERSION_ENTRY.fullmatch(entry)
    if found is None:
        return None
    try:
        address = SecretAddress.parse(found["environment"], found["service"], found["name"])
    except ValidationFailed:
        return None
    return address, int(found["number"])
