"""Storage is hostile: forged rows in the event store never run code or import a module.

Each test writes rows as an attacker with write access to the store would (a file edit on
SQLite, the writer role on PostgreSQL), then runs the real CLI as its victim would. The payloads
are real: `os:system` with a command that leaves a marker file, and `this:s`, a standard module
whose import prints the Zen of Python. Neither may happen; damage is exit 6 naming the row,
and a forged snapshot is ignored (the aggregate is folded from its events) and reported.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from ledger.operator import operator_id
from ledger.settings import SETTINGS_ID
from tests.clikit import Ledger

ZEN = "Beautiful is better than ugly"
STAMP = {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"}


def _system_payload(marker: Path) -> dict[str, object]:
    """The review's recipe: a packed map whose class topic is `os:system`."""
    return {"__dataclass_map__": [["k", "os:system", {"command": f"touch {marker}"}]]}


def _snapshot_state(aggregate_topic: str, state: dict[str, object]) -> bytes:
    return json.dumps({"timestamp": STAMP, "topic": aggregate_topic, "state": state}).encode()


def _insert(ledger: Ledger, table: str, oid: UUID, version: int, topic: str, state: bytes) -> None:
    """A row written straight into the store, as a database writer could."""
    if ledger.database_url is None:
        names = {"snapshots": "stored_snapshots", "events": "stored_events"}
        with sqlite3.connect(ledger.home / "ledger.sqlite") as db:
            db.execute(
                f"INSERT INTO {names[table]} "  # noqa: S608  (fixed names)
                "(originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                (oid.hex, version, topic, state),
            )
        return
    import psycopg

    with psycopg.connect(ledger.database_url) as conn:
        conn.execute(
            f"INSERT INTO public.secretsledger_{table} "  # noqa: S608  (fixed names)
            "(originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
            (oid, version, topic, state),
        )


def _link_newest(ledger: Ledger, oid: UUID, version: int, topic: str, state: bytes) -> None:
    """Give the newest event row (the one just inserted) the chain link anyone can compute
    (the chain needs no secret), so that what refuses it is decoding, not the chain check."""
    from ledger.store.chain import link

    if ledger.database_url is None:
        with sqlite3.connect(ledger.home / "ledger.sqlite") as db:
            (position,) = db.execute("SELECT max(rowid) FROM stored_events").fetchone()
            (previous,) = db.execute(
                "SELECT link FROM event_chain ORDER BY notification_id DESC LIMIT 1"
            ).fetchone()
            chained = link(bytes(previous), position, oid.hex, version, topic, state)
            db.execute("INSERT INTO event_chain VALUES (?, ?)", (position, chained))
        return
    import psycopg

    with psycopg.connect(ledger.database_url) as conn:
        ((position,),) = conn.execute(
            "SELECT max(notification_id) FROM public.secretsledger_events"
        ).fetchall()
        ((previous,),) = conn.execute(
            "SELECT link FROM public.secretsledger_event_chain "
            "ORDER BY notification_id DESC LIMIT 1"
        ).fetchall()
        chained = link(bytes(previous), position, oid.hex, version, topic, state)
        conn.execute(
            "INSERT INTO public.secretsledger_event_chain VALUES (%s, %s)", (position, chained)
        )


def _operator_version(ledger: Ledger, name: str) -> int:
    return len(
        [
            e
            for e in ledger.events("ledger.operator:")
            if e.originator_id.replace("-", "") == operator_id(name).hex
        ]
    )


def test_the_reviews_recipe_runs_nothing(ledger: Ledger, tmp_path: Path) -> None:
    """A settings snapshot packing `os:system`: every command loads the settings first."""
    ledger.set("nexus", "mcp.bun.apiKey", "sk-live-value-0001-abcdefghij")
    marker = tmp_path / "pwned-settings"
    forged = _snapshot_state(
        "ledger.settings:LedgerSettings",
        {"ledger_uid": "x", "retention": 10, "key_check": None, "x": _system_payload(marker)},
    )
    _insert(ledger, "snapshots", SETTINGS_ID, 1, "ledger.stamping:LedgerSnapshot", forged)
    versions = ledger.run("versions", "--service", "nexus", "--name", "mcp.bun.apiKey")
    dashboard = ledger.run("dashboard")
    assert not marker.exists()
    assert versions.returncode == 0, versions.stderr
    assert "Current Version: 1" in versions.stdout
    assert dashboard.returncode == 0, dashboard.stderr


def test_a_forged_operator_snapshot_runs_nothing_and_grants_nothing(
    ledger: Ledger, tmp_path: Path
) -> None:
    """The senior-engineer's own operator snapshot, forged: ignored, folded, reported."""
    marker = tmp_path / "pwned-operator"
    version = _operator_version(ledger, "alice")
    forged = _snapshot_state(
        "ledger.operator:Operator",
        {"name": "alice", "role": "senior-engineer", "sessions": _system_payload(marker)},
    )
    _insert(
        ledger, "snapshots", operator_id("alice"), version, "ledger.stamping:LedgerSnapshot", forged
    )
    listed = ledger.run("list")
    assert not marker.exists()
    assert listed.returncode == 0, listed.stderr
    doctor = ledger.run("doctor", "--output", "json")
    assert not marker.exists()
    assert doctor.returncode == 6
    bad = [s.replace("-", "") for s in json.loads(doctor.stdout)["bad_snapshots"]]
    assert f"{operator_id('alice').hex}@{version}" in bad
    repaired = ledger.run("doctor", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert ledger.run("doctor").returncode == 0


def test_a_forged_secret_snapshot_is_ignored_and_reported_by_get(
    ledger: Ledger, tmp_path: Path
) -> None:
    from ledger.address import SecretAddress

    value = "sk-live-value-0001-abcdefghij"
    ledger.set("nexus", "mcp.bun.apiKey", value)
    marker = tmp_path / "pwned-secret"
    address = SecretAddress("default", "nexus", "mcp.bun.apiKey")
    forged = _snapshot_state(
        "ledger.secret:Secret",
        {"environment": "default", "deleted": True, "versions": _system_payload(marker)},
    )
    _insert(ledger, "snapshots", address.id, 2, "ledger.stamping:LedgerSnapshot", forged)
    got = ledger.run("get", "--service", "nexus", "--name", "mcp.bun.apiKey")
    assert not marker.exists()
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == value
    assert "does not authenticate" in got.stderr and "secrets doctor" in got.stderr


def test_a_forged_snapshot_naming_a_module_imports_nothing(ledger: Ledger) -> None:
    """A snapshot whose aggregate topic names a module: not even imported (a sealed-looking
    prefix does not help: the seal is checked before anything is decoded)."""
    version = _operator_version(ledger, "alice")
    forged = b"slsnap1:" + bytes(32) + _snapshot_state("this:s", {"name": "alice"})
    _insert(
        ledger, "snapshots", operator_id("alice"), version, "ledger.stamping:LedgerSnapshot", forged
    )
    result = ledger.run("list")
    assert ZEN not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("topic", "state"),
    [
        ("this:s", {"timestamp": STAMP}),
        ("os:system", {"command": "touch {marker}"}),
        # an allowed event class whose created-event state names a module to build from
        ("ledger.operator:Operator.Registered", None),
    ],
    ids=["module-import", "os-system", "originator-topic"],
)
def test_a_forged_event_runs_nothing_and_fails_closed(
    ledger: Ledger, tmp_path: Path, topic: str, state: dict[str, object] | None
) -> None:
    """An operator `mallory` that only forged rows define: every way to name code is refused
    as damage (exit 6, the row named), never imported or called. The row that names code
    under an allowed topic is given its chain link, so that the mapper's check of the classes
    a state names (`AllowListMapper._check_named_classes`) is what refuses it, not the chain
    check before decoding."""
    marker = tmp_path / "pwned-event"
    relink = state is None
    if state is None:
        state = {
            "timestamp": STAMP,
            "originator_topic": "this:s",
            "operator": "alice",
            "correlation_id": "c",
            "name": "mallory",
            "role": "senior-engineer",
        }
    text = json.dumps(state).replace("{marker}", str(marker)).encode()
    _insert(ledger, "events", operator_id("mallory"), 1, topic, text)
    if relink:
        _link_newest(ledger, operator_id("mallory"), 1, topic, text)
    result = ledger.run(
        "list",
        env={"SECRETS_LEDGER_TOKEN": "slt.mallory.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    )
    assert not marker.exists()
    assert ZEN not in result.stdout + result.stderr
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr
    # named: by its position (the authority check: no chain link) or its aggregate (decoding)
    assert "position" in result.stderr or str(operator_id("mallory")) in result.stderr


@pytest.mark.sqlite_file
def test_a_forged_snapshot_in_an_evidence_bundle_runs_nothing_on_the_auditors_machine(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-live-value-0001-abcdefghij")
    bundle = tmp_path / "bundle"
    exported = ledger.run("audit", "export", "--out", str(bundle))
    assert exported.returncode == 0, exported.stderr
    marker = tmp_path / "pwned-bundle"
    (db_file,) = [p for p in bundle.rglob("*.sqlite") if "views" not in p.name]
    with sqlite3.connect(db_file) as db:
        db.execute(
            "INSERT INTO stored_snapshots (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            (
                SETTINGS_ID.hex,
                1,
                "ledger.stamping:LedgerSnapshot",
                _snapshot_state(
                    "ledger.settings:LedgerSettings",
                    {"ledger_uid": "x", "retention": 1, "x": _system_payload(marker)},
                ),
            ),
        )
        db.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            (operator_id("mallory").hex, 1, "this:s", json.dumps({"timestamp": STAMP}).encode()),
        )
    # The auditor's machine: another home, no keychain entry of this ledger.
    verified = ledger.run(
        "audit",
        "verify",
        "--bundle",
        str(bundle),
        env={"SECRETS_LEDGER_HOME": str(tmp_path / "auditor")},
    )
    assert not marker.exists()
    assert ZEN not in verified.stdout + verified.stderr
    assert verified.returncode == 6, verified.stdout + verified.stderr
    assert "Traceback" not in verified.stderr
