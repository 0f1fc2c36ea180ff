"""Signed checkpoints: an Ed25519 signature over the chain head at a position (HBSE-015).

The hash chain alone needs no secret, so someone who can write the database can also recompute
every link after changing history. A checkpoint signs the head with a key that lives in the
keychain, not in the database, and names the previous checkpoint's signature, so rewriting
history under a checkpoint, or dropping a checkpoint, breaks a signature that cannot be forged
without the keychain. The public key is recorded in each checkpoint so that verification needs no
keychain; `secrets audit pubkey` exports it so an auditor can pin it (`--pubkey`).

Each checkpoint is its own aggregate whose id derives from its sequence number: two processes
writing checkpoint k at once conflict in the store, and the loser retries as k + 1, so the
signature chain never forks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from ledger.stamping import LedgerAggregate

# The key entry names and the default interval are in ledger/integrity/checkpoint_names.py.

_NAMESPACE = uuid5(NAMESPACE_URL, "https://secrets-ledger.invalid/checkpoint")


def checkpoint_id(sequence: int) -> UUID:
    return uuid5(_NAMESPACE, str(sequence))


class Checkpoint(LedgerAggregate):
    @staticmethod
    def create_id(
        sequence: int,
        position: int,
        head: str,
        previous_signature: str,
        public_key: str,
        signature: str,
    ) -> UUID:
        return checkpoint_id(sequence)

    @event("CheckpointSigned")
    def __init__(
        self,
        sequence: int,
        position: int,
        head: str,
        previous_signature: str,
        public_key: str,
        signature: str,
    ) -> None:
        self.sequence = sequence
        self.position = position
        self.head = head
        self.previous_signature = previous_signature
        self.public_key = public_key
        self.signature = signature


CHECKPOINT_TOPIC = f"{Checkpoint.__module__}:{Checkpoint.__qualname__}.CheckpointSigned"


# Lengths in hex digits of a SHA-256 chain link, an Ed25519 public key and signature.
_HEAD_HEX, _KEY_HEX, _SIGNATURE_HEX = 64, 64, 128
_HEX_DIGITS = frozenset("0123456789abcdef")


def _hex(value: object, lengths: tuple[int, ...]) -> str:
    if not isinstance(value, str) or len(value) not in lengths or not set(value) <= _HEX_DIGITS:
        raise ValueError("not a hex field of the expected length")
    return value


def _counter(value: object, least: int) -> int:
    # bool is an int; a position beyond 2**63 is no row's (SQLite's rowid is 64-bit signed).
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value < 2**63:
        raise ValueError("not a counter in range")
    return value


@dataclass(frozen=True)
class SignedHead:
    """What a checkpoint claims, as decoded from the log (or from a witness)."""

    sequence: int
    position: int
    head: str
    previous_signature: str
    public_key: str
    signature: str

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SignedHead:
        """ValueError unless every field has the form a writer gives it: the fields are read
        from storage and then compared (`hmac.compare_digest` refuses non-ASCII text) and
        decoded as hex, so anything else would fail later as an internal error, not here as
        an undecodable checkpoint."""
        return cls(
            _counter(state["sequence"], 1),
            _counter(state["position"], 0),
            _hex(state["head"], (_HEAD_HEX,)),
            _hex(state["previous_signature"], (0, _SIGNATURE_HEX)),
            _hex(state["public_key"], (_KEY_HEX,)),
            _hex(state["signature"], (_SIGNATURE_HEX,)),
        )

    def message(self) -> bytes:
        return signed_message(self.sequence, self.position, self.head, self.previous_signature)

    def signature_valid(self, public_key: str | None = None) -> bool:
        return signature_valid(public_key or self.public_key, self.message(), self.signature)


@dataclass(frozen=True)
class Witness:
    """Evidence kept outside the event store that the log once reached `position`."""

    source: str
    position: int  # the witnessed checkpoint's own position in the log
    signature: str | None = None

    def dumps(self) -> str:
        return json.dumps({"position": self.position, "signature": self.signature}, sort_keys=True)

    @classmethod
    def loads(cls, source: str, text: str) -> Witness | None:
        try:
            data = json.loads(text)
            return cls(source, int(data["position"]), data.get("signature"))
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError, AttributeError):
            return None


def signed_message(sequence: int, position: int, head: str, previous_signature: str) -> bytes:
    return (
        f"secrets-ledger checkpoint v1\n{sequence}\n{position}\n{head}\n{previous_signature}\n"
    ).encode()


def new_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return raw.hex()


def public_key_of(private_hex: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def sign(private_hex: str, message: bytes) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex)).sign(message).hex()


def signature_valid(public_hex: str, message: bytes, signature_hex: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_pem(public_hex: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def key_fingerprint(public_hex: str) -> str:
    """How a checkpoint key is shown to a person comparing it with the one they expect:
    SHA-256 over the raw 32-byte Ed25519 public key (`secrets audit pubkey` prints it)."""
    import hashlib

    try:
        raw = bytes.fromhex(public_hex)
    except ValueError:
        raw = public_hex.encode()
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def public_hex_from_pem(pem: bytes) -> str:
    """The raw public key in a PEM file; ValueError if it is not an Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
