"""Writing signed checkpoints into the log (ledger/checkpoint.py says what they are): the
signing key and the keychain's note of the newest checkpoint, the check that the chain is
intact before it is signed, and the write itself, retried as the next sequence number when
another process signed first. `SecretsLedger` authorises and stamps; this does the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.checkpoint import (
    CHECKPOINT_TOPIC,
    Checkpoint,
    SignedHead,
    Witness,
    new_private_key,
    public_key_of,
    sign,
    signed_message,
)
from ledger.errors import IntegrityFailure, KeychainUnavailable, LedgerError
from ledger.integrity.checkpoint_names import CHECKPOINT_KEY_ENTRY, WITNESS_ENTRY

if TYPE_CHECKING:
    from ledger.application import SecretsLedger


def latest(app: SecretsLedger) -> tuple[int, SignedHead] | None:
    """The newest checkpoint in the log: (its position, what it signed)."""
    row = app.uow.chained_recorder().last_with_topic(CHECKPOINT_TOPIC)
    if row is None:
        return None
    try:
        return row.notification_id, SignedHead.from_state(app.uow.decode_row(row))
    except (ValueError, KeyError) as exc:
        # Not the message: it may quote stored bytes.
        raise IntegrityFailure(
            f"the checkpoint at position {row.notification_id} cannot be decoded "
            f"({type(exc).__name__}); run `secrets audit verify`"
        ) from None


def signing_key(app: SecretsLedger, expected_public: str | None) -> str:
    """This keychain's private key (hex), created on the first checkpoint; refused when it
    is not the key `expected_public` (the log's checkpoints) names."""
    private = app.vault.get(CHECKPOINT_KEY_ENTRY)
    if private is None and expected_public is None:
        app.vault.put(CHECKPOINT_KEY_ENTRY, new_private_key())
        # Read back: of two first checkpoints racing, both then sign with the stored key.
        private = app.vault.get(CHECKPOINT_KEY_ENTRY)
    if private is None:
        raise KeychainUnavailable(
            f"the checkpoint signing key is not in this keychain ({app.vault.description})"
        )
    if expected_public is not None and public_key_of(private) != expected_public:
        raise IntegrityFailure(
            "the checkpoint key in this keychain is not the key this ledger's checkpoints "
            "were signed with"
        )
    return private


def write(app: SecretsLedger) -> tuple[int, SignedHead]:
    """Sign the current chain head; returns the checkpoint's position and content."""
    recorder = app.uow.chained_recorder()

    def attempt() -> tuple[int, SignedHead]:
        found = latest(app)
        previous = found[1] if found else None
        private = signing_key(app, previous.public_key if previous else None)
        position, head = recorder.chain_head()
        verify_since(app, previous)
        sequence = previous.sequence + 1 if previous else 1
        previous_signature = previous.signature if previous else ""
        message = signed_message(sequence, position, head.hex(), previous_signature)
        signature = sign(private, message)
        signed = SignedHead(
            sequence,
            position,
            head.hex(),
            previous_signature,
            public_key_of(private),
            signature,
        )
        checkpoint = Checkpoint(
            signed.sequence,
            signed.position,
            signed.head,
            signed.previous_signature,
            signed.public_key,
            signed.signature,
        )
        recordings = app.uow.save(checkpoint)
        return recordings[-1].notification.id, signed

    with app.uow.saving_checkpoint():
        at, signed = app.uow.retrying(attempt)
    remember(app, at, signed)
    return at, signed


def verify_since(app: SecretsLedger, previous: SignedHead | None) -> None:
    """Refuse to sign a chain that does not verify: a signature must never vouch for tampered
    history. The whole chain is walked, not only what follows the previous checkpoint: an
    edit before it (its link left as it was) would otherwise be signed over anew, as if
    the log still held. One hash per event: seconds for a million events."""
    from ledger.store.chain import GENESIS, verify

    recorder = app.uow.chained_recorder()
    if previous is not None and previous.position:
        stored = recorder.link_at(previous.position)
        if stored is None or stored.hex() != previous.head:
            raise IntegrityFailure(
                f"the chain no longer matches checkpoint {previous.sequence}; "
                "run `secrets audit verify`"
            )
    report, _ = verify(
        recorder.iter_rows(0),
        recorder.iter_links(0),
        keep_verified=False,
        after=(0, GENESIS),
    )
    if report.fault is not None:
        raise IntegrityFailure(
            f"refusing to sign: {report.fault.kind} at position {report.fault.position}; "
            "run `secrets audit verify`"
        )


def remember(app: SecretsLedger, at: int, signed: SignedHead) -> None:
    """Move the keychain's note of the newest checkpoint forward (never back)."""
    try:
        known = keychain_witness(app)
        if known is None or known.position < at:
            note(app, at, signed)
    except LedgerError:
        pass  # the checkpoint stands in the log; the witness is extra evidence only


def note(app: SecretsLedger, at: int, signed: SignedHead) -> None:
    """Make the keychain's note name this checkpoint."""
    app.vault.put(WITNESS_ENTRY, Witness("keychain", at, signed.signature).dumps())


def keychain_public_key(app: SecretsLedger) -> str | None:
    """The public half of this keychain's checkpoint key when this keychain has signed a
    checkpoint of this ledger (its note exists: `signing_key` refuses a key other than the
    log's, and the note is written only after a signature): the key `audit verify` pins.
    None where it cannot vouch (no note, no key, no keychain)."""
    try:
        if keychain_witness(app) is None:
            return None
        private = app.vault.get(CHECKPOINT_KEY_ENTRY)
        return public_key_of(private) if private else None
    except (LedgerError, ValueError):
        return None


def keychain_witness(app: SecretsLedger) -> Witness | None:
    """The keychain's note of the newest checkpoint it has seen; None if none or unreadable."""
    try:
        text = app.vault.get(WITNESS_ENTRY)
    except LedgerError:
        return None
    return Witness.loads("this keychain", text) if text else None
