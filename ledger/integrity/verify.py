"""Verifying the whole history: the hash chain, the signed checkpoints, and outside witnesses.

The chain shows that rows were changed, moved, added or removed without recomputing links; the
checkpoints show that the chain itself was not recomputed under them; witnesses (the keychain's
note of the newest checkpoint, the views' tracked position) show that the tail was not cut off,
which nothing inside the database can prove.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ledger.checkpoint import CHECKPOINT_TOPIC, SignedHead, Witness
from ledger.store.chain import (
    GENESIS,
    ChainFault,
    ChainReport,
    JoinedPage,
    RowCheck,
    StoredRow,
    verify,
    verify_fast,
)


@dataclass(frozen=True)
class IntegrityReport:
    events_checked: int
    events_valid: int
    checkpoints_checked: int
    checkpoints_valid: int
    last_position: int
    head: bytes
    fault: ChainFault | None
    public_key: str | None = None  # the key the checkpoints were checked against
    snapshots_checked: int = 0
    snapshots_valid: int = 0

    @property
    def ok(self) -> bool:
        return self.fault is None


@dataclass
class _CheckpointWalk:
    link_at: Callable[[int], bytes | None]
    decode: Callable[[StoredRow], dict[str, Any]]
    pinned_key: str | None
    pinned_by: str = "the pinned public key"
    checked: int = 0
    valid: int = 0
    last: SignedHead | None = None
    key: str | None = None
    seen: dict[int, str] = field(default_factory=dict)  # checkpoint position -> signature

    def read(self, row: StoredRow) -> SignedHead | None:
        try:
            return SignedHead.from_state(self.decode(row))
        except Exception:  # any undecodable state is a fault, reported by the caller
            return None

    def check(self, row: StoredRow, _link: bytes) -> ChainFault | None:
        if row.topic != CHECKPOINT_TOPIC:
            return None
        position = row.notification_id
        self.checked += 1
        claim = self.read(row)
        if claim is None:
            return ChainFault(position, "signature", "checkpoint cannot be decoded")
        expected_key = self.pinned_key or self.key or claim.public_key
        if not hmac.compare_digest(claim.public_key, expected_key):
            source = self.pinned_by if self.pinned_key else "earlier checkpoints"
            return ChainFault(
                position,
                "signature",
                f"checkpoint {claim.sequence} is signed with a key other than {source}",
            )
        if not claim.signature_valid(expected_key):
            return ChainFault(
                position, "signature", f"checkpoint {claim.sequence} has an invalid signature"
            )
        previous = self.last
        expected_sequence = previous.sequence + 1 if previous else 1
        expected_previous = previous.signature if previous else ""
        if claim.sequence != expected_sequence or claim.previous_signature != expected_previous:
            return ChainFault(
                position,
                "signature",
                f"checkpoint {claim.sequence} does not follow checkpoint "
                f"{expected_sequence - 1} (a checkpoint was removed or replayed)",
            )
        if not (previous.position if previous else 0) <= claim.position < position:
            return ChainFault(
                position, "signature", f"checkpoint {claim.sequence} signs a position out of order"
            )
        signed = self.link_at(claim.position) if claim.position else None
        if claim.position and signed is None:
            return ChainFault(
                claim.position,
                "deleted",
                f"the position signed by checkpoint {claim.sequence} is gone",
            )
        if signed is not None and not hmac.compare_digest(signed.hex(), claim.head):
            return ChainFault(
                claim.position,
                "edited",
                f"history up to {claim.position} was rewritten: its chain head no longer "
                f"matches signed checkpoint {claim.sequence}",
            )
        self.valid += 1
        self.last = claim
        self.key = expected_key
        self.seen[position] = claim.signature
        return None

    def explain(self, fault: ChainFault, rows: Callable[[int], StoredRow | None]) -> ChainFault:
        """A checkpoint row whose bytes changed is reported as a signature fault if its
        signature no longer holds: that is what the tampering attacked."""
        if fault.kind != "edited":
            return fault
        row = rows(fault.position)
        if row is None or row.topic != CHECKPOINT_TOPIC:
            return fault
        claim = self.read(row)
        key = self.pinned_key or self.key
        if claim is None or not claim.signature_valid(key):
            return ChainFault(fault.position, "signature", "checkpoint signature was altered")
        return fault


def verify_history(
    rows: Callable[[int], Iterable[StoredRow]],
    links: Callable[[int], Iterable[tuple[int, bytes]]],
    *,
    rescan: Callable[[], Iterable[tuple[int, bytes]]],
    link_at: Callable[[int], bytes | None],
    row_at: Callable[[int], StoredRow | None],
    decode: Callable[[StoredRow], dict[str, Any]],
    joined: Callable[[], Iterator[JoinedPage]] | None = None,
    decodes: RowCheck | None = None,
    pinned_key: str | None = None,
    pinned_by: str = "the pinned public key",
    witnesses: Iterable[Witness] = (),
    consecutive_ids: bool = False,
) -> IntegrityReport:
    """`rows(start)` and `links(start)` read the store after position `start`. With `joined`
    (events with their links, see `verify_fast`) the intact part is checked in one fast pass,
    and the careful walk takes over from the last verified event at the first thing that does
    not line up, so faults are found, classified and worded exactly as by the walk alone.
    `decodes(position, originator id, version, topic, state)` checks that each event whose
    link holds also decodes: a row whose links were recomputed over bytes that are no event
    (an unknown topic, a state of the wrong shape) is damage all the same."""
    walk = _CheckpointWalk(link_at, decode, pinned_key, pinned_by)
    last_position = 0

    def decoded_and_checked(row: StoredRow, link: bytes) -> ChainFault | None:
        if decodes is not None:
            found = decodes(
                row.notification_id, row.originator_id, row.originator_version, row.topic, row.state
            )
            if found is not None:
                return found
        return on_verified(row, link)

    def on_verified(row: StoredRow, link: bytes) -> ChainFault | None:
        nonlocal last_position
        found = walk.check(row, link)
        if found is None:
            last_position = row.notification_id
        return found

    after = (0, GENESIS)
    done = ChainReport(0, 0, GENESIS, None)
    chain: ChainReport | None = None
    if joined is not None:
        fast = verify_fast(joined(), topic=CHECKPOINT_TOPIC, on_verified=on_verified, each=decodes)
        # Only checkpoint rows went through on_verified: the last verified event is here.
        last_position = fast.position
        if fast.complete:
            chain = fast.report
        else:
            done = fast.report
            after = (fast.position, fast.report.head)
    if chain is None:
        rest, _ = verify(
            rows(after[0]),
            links(after[0]),
            rescan=rescan,
            on_verified=decoded_and_checked,
            keep_verified=False,
            after=after,
            consecutive_ids=consecutive_ids,
        )
        chain = ChainReport(
            done.events_checked + rest.events_checked,
            done.events_valid + rest.events_valid,
            rest.head,
            rest.fault,
        )
    fault = chain.fault
    if fault is not None:
        fault = walk.explain(fault, row_at)
    else:
        fault = _check_witnesses(list(witnesses), last_position, walk.seen)
    return IntegrityReport(
        events_checked=chain.events_checked,
        events_valid=chain.events_valid,
        checkpoints_checked=walk.checked,
        checkpoints_valid=walk.valid,
        last_position=last_position,
        head=chain.head,
        fault=fault,
        public_key=walk.key or pinned_key,
    )


def _check_witnesses(
    witnesses: list[Witness], last_position: int, seen: dict[int, str]
) -> ChainFault | None:
    for witness in sorted(witnesses, key=lambda w: w.position):
        if witness.position > last_position:
            return ChainFault(
                last_position + 1,
                "truncated",
                f"the log ends at {last_position} but {witness.source} saw it reach "
                f"{witness.position}",
            )
        if witness.signature is not None and seen.get(witness.position) != witness.signature:
            return ChainFault(
                witness.position,
                "truncated",
                f"the checkpoint {witness.source} recorded at {witness.position} is no longer "
                "in the log (history was cut and written again)",
            )
    return None
