"""`secrets doctor`: this host's keychain against the ledger.

Values recorded but missing, keychain entries with no event (orphans, found through the intent
journal and, where the keychain can list, by listing it), values of pruned or destroyed versions
still present, and stored snapshots that differ from their events. `--repair` removes what is
provably safe to remove; a write still running in another process is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.entries import entry_name, parse_entry_name
from ledger.errors import IntegrityFailure, KeychainUnavailable
from ledger.secret import Secret
from ledger.vault.intents import writer_running
from ledger.vault.port import ListableVault

if TYPE_CHECKING:
    from ledger.application import SecretsLedger


@dataclass(frozen=True)
class DoctorReport:
    vault: str
    checked_versions: int
    missing_values: list[str]  # events whose value is gone from this host's keychain
    orphans: list[str]  # keychain entries with no event
    leftovers: list[str]  # values of pruned/destroyed versions still in the keychain
    repaired: list[str]
    # Retained versions written on other hosts (their values are in those hosts' keychains),
    # per host: not checked here, since no host can see another's keychain.
    on_other_hosts: dict[str, int] = field(default_factory=dict)
    # Stored snapshots whose state differs from their events ("<aggregate id>@<version>").
    bad_snapshots: list[str] = field(default_factory=list)
    # Whether the keychain could list its entries. When it cannot (macOS or Windows through
    # keyring, a chain of backends), orphans are found only through the intent journal.
    keychain_listed: bool = True
    # Entries whose write is still running in another process (its intent names a live
    # writer): not orphans yet, so neither reported as such nor repaired.
    in_progress: list[str] = field(default_factory=list)
    # Intent files no writer wrote ("<file>: <why>"), left for `--repair` to remove.
    damaged_intents: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not (
            self.missing_values
            or self.orphans
            or self.leftovers
            or self.bad_snapshots
            or self.damaged_intents
        )


def examine(app: SecretsLedger, repair: bool) -> DoctorReport:
    """The checks behind `secrets doctor` (the caller has authorised it)."""
    # Its secrets come from the topic index (`secret_ids`): a damaged entry would hide one.
    if repair:
        reindexed = [f"index {name}" for name in app.repair_indexes()]
    else:
        reindexed = []
        app.check_pages(deep=True)
    # First: the scan below loads aggregates, which starts from their snapshots.
    bad_snapshots, repaired = _check_snapshots(app, repair)
    # The keychain is listed first, then the events, then the intent journal: the order
    # that lets the orphan check at the end tell a finished or failed write from a running
    # one (see there). Only version entries are kept: the ledger's keys, the checkpoint
    # witness and automation tokens are never orphans.
    vault = app.vault
    listed: list[str] | None = None
    if isinstance(vault, ListableVault):
        listed = [e for e in vault.entries() if parse_entry_name(e) is not None]
    recorded: set[str] = set()
    known: set[str] = set()  # every version's entry, retained or not, from any host
    missing: list[str] = []
    leftovers: list[str] = []
    elsewhere: dict[str, int] = {}
    checked = 0
    for sid in app.secret_ids():
        # Checked against the chain (exit 6 on damage, an alarm recorded): what is missing,
        # left over or orphaned, and so what a repair deletes, rests on these versions.
        secret: Any = app.load_secret(sid, f"secret {sid.hex}")
        if not isinstance(secret, Secret):
            raise IntegrityFailure(
                f"secret {sid.hex} is registered in the log but its history is missing: the "
                "ledger was altered or damaged; run `secrets audit verify`"
            )
        for v in secret.versions.values():
            entry = entry_name(secret.address, v.number, v.fingerprint)
            known.add(entry)
            present = vault.get(entry) is not None
            if v.host != app.host and not present:
                # Written on another host: its value (or its removal) is that host's.
                if v.retained:
                    recorded.add(entry)
                    elsewhere[v.host] = elsewhere.get(v.host, 0) + 1
                continue
            checked += 1
            if v.retained:
                recorded.add(entry)
                if not present:
                    missing.append(entry)
            elif present:
                leftovers.append(entry)
    if missing:
        _refuse_foreign_vault(app, len(missing))
    for entry in leftovers if repair else []:
        if vault.delete(entry):
            repaired.append(entry)
    orphans: list[str] = []
    in_progress: list[str] = []
    journaled: set[str] = set()
    damaged_intents: list[str] = []
    for intent in app.intents.outstanding(app.namespace):
        if intent.damage is not None:
            # Not believed for anything, the entry it names included: only removed on repair.
            if repair:
                app.intents.done(intent)
                repaired.append(f"intent {intent.path.name}")
            else:
                damaged_intents.append(f"{intent.path.name}: {intent.damage}")
            continue
        journaled.add(intent.entry)
        if not intent.entry or intent.entry in recorded:
            app.intents.done(intent)
            continue
        if writer_running(intent):
            # Its writer may be committing the event right now: leave value and intent.
            in_progress.append(intent.entry)
            continue
        if vault.get(intent.entry) is None:
            app.intents.done(intent)
            continue
        orphans.append(intent.entry)
        if repair:
            vault.delete(intent.entry)
            app.intents.done(intent)
            repaired.append(intent.entry)
    for entry in listed or []:
        if entry in known or entry in journaled:
            continue  # checked above, as a version or through its intent
        # Every write on this host journals its intent before its value, and the journal
        # was read after the listing: an entry with no intent is not being written here,
        # unless its event was committed (and its intent resolved) since the scan.
        if _entry_recorded(app, entry) or vault.get(entry) is None:
            continue
        orphans.append(entry)
        if repair and vault.delete(entry):
            repaired.append(entry)
    return DoctorReport(
        vault.description,
        checked,
        missing,
        orphans,
        leftovers,
        reindexed + repaired,
        elsewhere,
        bad_snapshots,
        keychain_listed=listed is not None,
        in_progress=in_progress,
        damaged_intents=damaged_intents,
    )


def _refuse_foreign_vault(app: SecretsLedger, missing: int) -> None:
    """Values this host wrote are missing: if the vault lacks the ledger's fingerprint key as
    well, it is another vault than the one they were written to (or one that lost all of
    them), and calling them missing would read as data loss: say which vault was looked in."""
    from ledger.application import FINGERPRINT_KEY_ENTRY

    vault = app.vault
    if vault.get(FINGERPRINT_KEY_ENTRY) is not None:
        return
    raise KeychainUnavailable(
        f"{missing} value(s) recorded on host {app.host} are not in {vault.description}, and "
        "neither is this ledger's fingerprint key: it is not the vault they were written to "
        "(see `secrets init --vault` and SECRETS_LEDGER_VAULT in the README), or it lost "
        "everything of this ledger; nothing was changed"
    )


def _entry_recorded(app: SecretsLedger, entry: str) -> bool:
    """Whether the store (read now) holds the version `entry` names, with its fingerprint."""
    parsed = parse_entry_name(entry)
    if parsed is None:
        return False
    address, number = parsed
    found = app.uow.load_secret(address)
    version = found.versions.get(number) if found is not None else None
    return version is not None and entry_name(address, number, version.fingerprint) == entry


def _check_snapshots(app: SecretsLedger, repair: bool) -> tuple[list[str], list[str]]:
    from ledger.integrity.snapshot_check import verify_snapshots

    # The events each snapshot is compared with are chain-checked: a snapshot is removed
    # only on the word of events that verify.
    checked = verify_snapshots(app, chain_checked=True)
    bad = [f"{f.originator_id}@{f.version}" for f in checked.faults]
    # Unsealed snapshots that match their events are no fault (loads never use them), but a
    # repair clears them out with the bad ones.
    drop = bad + [f"{f.originator_id}@{f.version}" for f in checked.unsealed]
    if not repair or not drop:
        return bad, []
    recorder = app.uow.chained_recorder()
    removed = []
    for item in drop:
        oid, _, version = item.rpartition("@")
        try:
            recorder.delete_snapshot(UUID(oid), int(version))
        except ValueError:
            continue  # a forged row no load can reach (no aggregate id): reported, kept
        removed.append(f"snapshot {item}")
    return bad, removed
