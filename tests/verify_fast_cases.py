# ruff: noqa: S608  (table names come from this file, never from input)
"""The tampering cases that `audit verify`'s fast pass and its careful walk must report alike,
shared by tests/unit/test_verify_fast.py (SQLite) and tests/integration/test_verify_fast.py
(PostgreSQL): each case edits the store through `sql(statement, params)`, with `%s` for a
parameter and the table names in `t` (`E` events, `C` links, `id` the position column)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.checkpoint import CHECKPOINT_TOPIC
from ledger.integrity.verify import IntegrityReport
from ledger.store.chain import GENESIS, link
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring

Sql = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def _no_spec(value: str) -> None:
    return None


def _build(home: Path, database_url: str | None = None) -> tuple[Any, Credential]:
    ledger = open_ledger(home, create=True, backend=MemoryKeyring(), database_url=database_url)
    ledger.checkpoint_every = 7
    issued = ledger.initialize("alice")
    cred = Credential(token=issued.token)
    for n in range(16):
        address = SecretAddress("default", "svc", f"key{n}")
        ledger.write(cred, address, f"value-{n}-" + "z" * 24, spec_check=_no_spec)
    ledger.checkpoint(cred)  # the keychain's witness of how far the log reached
    return ledger, cred


def _both(ledger: Any) -> tuple[IntegrityReport, IntegrityReport]:
    witnesses = [w for w in [ledger.keychain_witness()] if w]
    fast = ledger.verify_history(witnesses=witnesses)
    careful = ledger.verify_history(witnesses=witnesses, fast=False)
    return fast, careful


# -- tampering, written once for both stores (table names: E events, C chain) -------------


def _relink(sql: Sql, tables: dict[str, str]) -> None:
    sql(f"DELETE FROM {tables['C']}", ())
    previous = GENESIS
    for nid, oid, version, topic, state in sql(
        f"SELECT {tables['id']}, originator_id, originator_version, topic, state "
        f"FROM {tables['E']} ORDER BY {tables['id']}",
        (),
    ):
        previous = link(previous, nid, oid, version, topic, bytes(state))
        sql(f"INSERT INTO {tables['C']} (notification_id, link) VALUES (%s, %s)", (nid, previous))


def _flip(sql: Sql, t: dict[str, str], position: int) -> None:
    (state,) = sql(f"SELECT state FROM {t['E']} WHERE {t['id']} = %s", (position,))[0]
    state = bytes(state)
    flipped = state[:-2] + bytes([state[-2] ^ 0x01]) + state[-1:]
    sql(f"UPDATE {t['E']} SET state = %s WHERE {t['id']} = %s", (flipped, position))


def _swap(sql: Sql, t: dict[str, str], a: int, b: int) -> None:
    """Two whole events trade places (their links stay)."""
    columns = "originator_id, originator_version, topic, state"
    ra = sql(f"SELECT {columns} FROM {t['E']} WHERE {t['id']} = %s", (a,))[0]
    rb = sql(f"SELECT {columns} FROM {t['E']} WHERE {t['id']} = %s", (b,))[0]
    update = (
        f"UPDATE {t['E']} SET originator_id = %s, originator_version = %s, topic = %s, "
        f"state = %s WHERE {t['id']} = %s"
    )
    sql(update, (ra[0], -1, ra[2], ra[3], a))  # (originator, version) is unique
    sql(update, (*ra, b))
    sql(update, (*rb, a))


def _checkpoints(sql: Sql, t: dict[str, str]) -> list[int]:
    return [
        int(r[0])
        for r in sql(
            f"SELECT {t['id']} FROM {t['E']} WHERE topic = %s ORDER BY {t['id']}",
            (CHECKPOINT_TOPIC,),
        )
    ]


def _forge_signature(sql: Sql, t: dict[str, str]) -> None:
    target = _checkpoints(sql, t)[1]
    (raw,) = sql(f"SELECT state FROM {t['E']} WHERE {t['id']} = %s", (target,))[0]
    raw = bytes(raw)
    signature = json.loads(raw)["signature"]
    forged = raw.replace(signature.encode(), signature[::-1].encode())
    sql(f"UPDATE {t['E']} SET state = %s WHERE {t['id']} = %s", (forged, target))


def _last(sql: Sql, t: dict[str, str]) -> int:
    return int(sql(f"SELECT max({t['id']}) FROM {t['E']}", ())[0][0])


def _cut(sql: Sql, t: dict[str, str], after: int) -> None:
    sql(f"DELETE FROM {t['E']} WHERE {t['id']} > %s", (after,))
    sql(f"DELETE FROM {t['C']} WHERE notification_id > %s", (after,))


def _orphan_link(sql: Sql, t: dict[str, str]) -> None:
    """An event removed and the chain recomputed, but its link left behind."""
    sql(f"DELETE FROM {t['E']} WHERE {t['id']} = 15", ())
    _relink(sql, t)
    sql(f"INSERT INTO {t['C']} (notification_id, link) VALUES (15, %s)", (bytes(32),))


# (name, tamper(sql, tables), the fault's kind or None for a ledger that verifies)
CASES: list[tuple[str, Callable[[Sql, dict[str, str]], None], str | None]] = [
    ("untouched", lambda sql, t: None, None),
    *[
        (f"edit state of event {p}", lambda sql, t, p=p: _flip(sql, t, p), "edited")
        for p in (1, 4, 5, 9, 30)
    ],
    (
        "edit the topic",
        lambda sql, t: sql(f"UPDATE {t['E']} SET topic = topic || 'x' WHERE {t['id']} = 7", ()),
        "edited",
    ),
    (
        "edit the originator version",
        lambda sql, t: sql(f"UPDATE {t['E']} SET originator_version = 999 WHERE {t['id']} = 9", ()),
        "edited",
    ),
    (
        "delete an event",
        lambda sql, t: sql(f"DELETE FROM {t['E']} WHERE {t['id']} = 11", ()),
        "deleted",
    ),
    (
        "delete an event and its link",
        lambda sql, t: (
            sql(f"DELETE FROM {t['E']} WHERE {t['id']} = 12", ()),
            sql(f"DELETE FROM {t['C']} WHERE notification_id = 12", ()),
        ),
        "deleted|edited",  # PostgreSQL ids have gaps anyway: the next link no longer fits
    ),
    (
        "delete a link",
        lambda sql, t: sql(f"DELETE FROM {t['C']} WHERE notification_id = 13", ()),
        "inserted",
    ),
    (
        "edit a link",
        lambda sql, t: sql(
            f"UPDATE {t['C']} SET link = %s WHERE notification_id = 3", (bytes(32),)
        ),
        "edited",
    ),
    ("swap two events", lambda sql, t: _swap(sql, t, 20, 21), "reordered"),
    (
        "insert a forged event",
        lambda sql, t: sql(
            f"INSERT INTO {t['E']} (originator_id, originator_version, topic, state) "
            f"SELECT originator_id, originator_version + 100, topic, state FROM {t['E']} "
            f"WHERE {t['id']} = 5",
            (),
        ),
        "inserted",
    ),
    (
        "cut off events leaving their links",
        lambda sql, t: sql(f"DELETE FROM {t['E']} WHERE {t['id']} > %s", (_last(sql, t) - 3,)),
        "truncated",
    ),
    (
        "cut off the newest events and their links (the keychain's witness)",
        lambda sql, t: _cut(sql, t, _last(sql, t) - 2),
        "truncated",
    ),
    ("an event removed, its link left, the chain recomputed", _orphan_link, "deleted"),
    (
        # The flip breaks the state's JSON: the event itself no longer decodes, found before
        # the later checkpoint that no longer signs the head.
        "edit an event and recompute the chain (the event undecodable)",
        lambda sql, t: (_flip(sql, t, 5), _relink(sql, t)),
        "undecodable",
    ),
    ("forge a checkpoint signature", _forge_signature, "signature"),
    (
        "forge a checkpoint signature and recompute the chain",
        lambda sql, t: (_forge_signature(sql, t), _relink(sql, t)),
        "signature",
    ),
]


def _check(fast: IntegrityReport, careful: IntegrityReport, kind: str | None) -> None:
    assert fast == careful
    if kind is None:
        assert fast.fault is None, fast
    else:
        assert fast.fault is not None and fast.fault.kind in kind.split("|"), fast
