"""Attacks of the hostile-storage review: what a writer of the ledger's home (ledger.sqlite,
session.json, pending/*.intent, an evidence bundle) could write, run through the real CLI as
the victim would. Each failed on the first allow-list commit (2c74fd2): a forged intent made
`doctor --repair` delete the ledger's own keys, and damaged rows gave exit 1 instead of 6.
SQLite-only (`sqlite_file`).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from pathlib import Path

import pytest

from ledger.operator import operator_id
from ledger.settings import SETTINGS_ID
from ledger.store.chain import GENESIS, link
from tests.clikit import Ledger, rechain

pytestmark = pytest.mark.sqlite_file
ADDRESS = ("--service", "nexus", "--name", "mcp.bun.apiKey")
VALUE = "sk-live-value-0001-abcdefghij"
MAGIC = b"slsnap1:"


def _db(ledger: Ledger, name: str = "ledger.sqlite") -> sqlite3.Connection:
    return sqlite3.connect(ledger.home / name)


def _rechain(ledger: Ledger) -> None:
    rechain(ledger.home)


def _not_internal(result: object) -> None:
    rc = result.returncode  # type: ignore[attr-defined]
    err = result.stderr  # type: ignore[attr-defined]
    assert rc != 1 and "internal error" not in err and "Traceback" not in err, (rc, err)


# -- doctor --repair believes what storage says -------------------------------------------


def test_forged_intent_cannot_make_doctor_repair_delete_the_fingerprint_key(
    ledger: Ledger,
) -> None:
    ledger.set(*ADDRESS[1::2], VALUE)
    uid = ledger.events("ledger.settings:")[0].state["ledger_uid"]
    pending = ledger.home / "pending"
    pending.mkdir(mode=0o700, exist_ok=True)
    intent = pending / f"{'0' * 32}.intent"
    intent.write_text(
        json.dumps({"namespace": f"secrets-ledger:{uid}", "entry": "ledger.fingerprint-key"})
    )
    os.utime(intent, (0, 0))  # older than the torn-intent grace period
    ledger.run("doctor", "--repair")
    after = ledger.run("set", *ADDRESS, "--value-stdin", input=VALUE + "-2")
    assert after.returncode == 0, after.stderr  # 2c74fd2: exit 8, the key is gone for good


# -- snapshot rows that crash the seal check ------------------------------------------------


def test_snapshot_with_a_blob_topic_is_not_an_internal_error(ledger: Ledger) -> None:
    with _db(ledger) as db:
        db.execute(
            "INSERT INTO stored_snapshots VALUES (?, 2, ?, ?)",
            (operator_id("alice").hex, b"ledger.operator:Operator", MAGIC + bytes(32) + b"{}"),
        )
    for args in (("list",), ("audit", "verify"), ("doctor", "--repair")):
        _not_internal(ledger.run(*args))


def test_snapshot_with_a_bad_id_is_not_an_internal_error(ledger: Ledger) -> None:
    with _db(ledger) as db:
        db.execute(
            "INSERT INTO stored_snapshots VALUES ('zzz', 2, 'ledger.stamping:LedgerSnapshot', ?)",
            (MAGIC + bytes(32) + b"{}",),
        )
    for args in (("audit", "verify"), ("doctor", "--repair")):
        _not_internal(ledger.run(*args))


# -- events that decode but do not fit ------------------------------------------------------


def test_an_operator_event_under_the_settings_id_is_an_integrity_failure(ledger: Ledger) -> None:
    with _db(ledger) as db:
        state = json.loads(
            db.execute("SELECT state FROM stored_events WHERE rowid = 1").fetchone()[0]
        )
        forged = {
            "timestamp": state["timestamp"],
            "originator_topic": "ledger.operator:Operator",
            "operator": "alice",
            "correlation_id": state["correlation_id"],
            "name": "x",
            "role": "senior-engineer",
        }
        db.execute(
            "UPDATE stored_events SET topic = 'ledger.operator:Operator.Registered', state = ? "
            "WHERE originator_id = ?",
            (json.dumps(forged).encode(), SETTINGS_ID.hex),
        )
    _rechain(ledger)
    for args in (("list",), ("audit", "verify")):
        _not_internal(ledger.run(*args))


@pytest.mark.parametrize("key", ["mutate", "apply"])
def test_a_state_key_that_shadows_a_method_is_an_integrity_failure(
    ledger: Ledger, key: str
) -> None:
    with _db(ledger) as db:
        state = json.loads(
            db.execute("SELECT state FROM stored_events WHERE rowid = 1").fetchone()[0]
        )
        state[key] = "x"
        db.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = 1", (json.dumps(state).encode(),)
        )
    _rechain(ledger)
    for args in (("list",), ("audit", "verify")):
        _not_internal(ledger.run(*args))


def test_a_timestamp_of_the_wrong_type_is_an_integrity_failure(ledger: Ledger) -> None:
    with _db(ledger) as db:
        state = json.loads(
            db.execute("SELECT state FROM stored_events WHERE rowid = 1").fetchone()[0]
        )
        state["timestamp"] = "x"
        db.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = 1", (json.dumps(state).encode(),)
        )
    _rechain(ledger)
    for args in (("audit", "replay", "--position", "2"), ("projections", "rebuild")):
        _not_internal(ledger.run(*args))


def test_an_operator_of_the_wrong_type_is_an_integrity_failure(ledger: Ledger) -> None:
    with _db(ledger) as db:
        state = json.loads(
            db.execute("SELECT state FROM stored_events WHERE rowid = 1").fetchone()[0]
        )
        state["operator"] = {}
        db.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = 1", (json.dumps(state).encode(),)
        )
    _rechain(ledger)
    result = ledger.run("projections", "rebuild")
    assert result.returncode == 6, result.stderr  # 2c74fd2: 1, "the event store failed"


# -- files beside the store -----------------------------------------------------------------


def test_a_deeply_nested_session_file_is_not_an_internal_error(ledger: Ledger) -> None:
    session = ledger.home / "session.json"
    session.write_text("[" * 100_000)
    os.chmod(session, 0o600)
    _not_internal(ledger.run("auth", "status", env={"SECRETS_LEDGER_TOKEN": ""}))


def test_a_deeply_nested_intent_is_not_an_internal_error(ledger: Ledger) -> None:
    pending = ledger.home / "pending"
    pending.mkdir(mode=0o700, exist_ok=True)
    intent = pending / f"{'1' * 32}.intent"
    intent.write_text("[" * 100_000)
    os.utime(intent, (0, 0))
    _not_internal(ledger.run("doctor"))


@pytest.mark.parametrize("pid", [2**70, -(2**70), 0, "1", True], ids=str)
def test_an_intent_with_a_pid_no_process_has_is_damage_doctor_reports(
    ledger: Ledger, pid: object
) -> None:
    """`os.kill(2**70, 0)` raised OverflowError: `doctor` and `doctor --repair` exit 1."""
    ledger.set(*ADDRESS[1::2], VALUE)
    uid = ledger.events("ledger.settings:")[0].state["ledger_uid"]
    pending = ledger.home / "pending"
    pending.mkdir(mode=0o700, exist_ok=True)
    intent = pending / f"{'0' * 32}.intent"
    intent.write_text(
        json.dumps(
            {
                "namespace": f"secrets-ledger:{uid}",
                "entry": "default/nexus/mcp.bun.apiKey#v1.aaaaaaaaaaaa",
                "pid": pid,
                "started": 1,
            }
        )
    )
    doctor = ledger.run("doctor")
    _not_internal(doctor)
    assert doctor.returncode == 6, doctor.stderr
    assert f"damaged pending-write intent: {intent.name}" in doctor.stdout, doctor.stdout
    repair = ledger.run("doctor", "--repair")
    _not_internal(repair)
    assert repair.returncode == 0, repair.stderr
    assert not intent.exists()
    got = ledger.run("get", *ADDRESS)
    assert got.returncode == 0 and got.stdout.strip() == VALUE, got.stderr


def _bundle(ledger: Ledger, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    exported = ledger.run("audit", "export", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    return out


def test_a_deeply_nested_bundle_witness_is_not_an_internal_error(
    ledger: Ledger, tmp_path: Path
) -> None:
    bundle = _bundle(ledger, tmp_path)
    (bundle / "checkpoint.json").write_text("[" * 100_000)
    _not_internal(ledger.run("audit", "verify", "--bundle", str(bundle)))


def test_a_bundle_key_of_an_unknown_algorithm_is_not_an_internal_error(
    ledger: Ledger, tmp_path: Path
) -> None:
    bundle = _bundle(ledger, tmp_path)

    def tlv(tag: int, value: bytes) -> bytes:
        return bytes([tag, len(value)]) + value

    spki = tlv(0x30, tlv(0x30, tlv(0x06, b"\x2a\x03\x04")) + tlv(0x03, b"\x00\x01\x02"))
    pem = base64.b64encode(spki).decode()
    (bundle / "pubkey.pem").write_text(
        f"-----BEGIN PUBLIC KEY-----\n{pem}\n-----END PUBLIC KEY-----\n"
    )
    _not_internal(ledger.run("audit", "verify", "--bundle", str(bundle)))


def _edit_last_checkpoint(db_path: Path, field: str, value: str) -> int:
    """Set `field` of the newest checkpoint event (the log's last event) and recompute its own
    chain link only, the one link after the newest signed checkpoint, which anyone can; its
    position."""
    with sqlite3.connect(db_path) as db:
        position, oid, version, topic, state = db.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        assert topic.startswith("ledger.checkpoint:"), topic
        data = json.loads(bytes(state))
        data[field] = value
        state = json.dumps(data, separators=(",", ":")).encode()
        row = db.execute(
            "SELECT link FROM event_chain WHERE notification_id < ? "
            "ORDER BY notification_id DESC LIMIT 1",
            (position,),
        ).fetchone()
        previous = bytes(row[0]) if row else GENESIS
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state, position))
        db.execute(
            "UPDATE event_chain SET link = ? WHERE notification_id = ?",
            (link(previous, position, oid, version, topic, state), position),
        )
    return int(position)


# Non-ASCII text, which `hmac.compare_digest` refuses with TypeError (exit 1 before the fix),
# and text that is ASCII but no hex, in each field a checkpoint compares or decodes.
CHECKPOINT_FIELDS = [
    ("public_key", "\u00e9"),
    ("head", "\u00e9" * 64),
    ("signature", "\u00e9"),
    ("previous_signature", "\u00e9"),
    ("public_key", "zz" * 32),
]
CHECKPOINT_IDS = ["key-text", "head-text", "signature-text", "previous-text", "key-no-hex"]


@pytest.mark.parametrize(("field", "value"), CHECKPOINT_FIELDS, ids=CHECKPOINT_IDS)
def test_a_checkpoint_field_that_is_no_hex_is_damage_at_its_position(
    ledger: Ledger, field: str, value: str
) -> None:
    ledger.set(*ADDRESS[1::2], VALUE)
    signed = ledger.run("audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    position = _edit_last_checkpoint(ledger.home / "ledger.sqlite", field, value)
    verify = ledger.run("audit", "verify", "--output", "json")
    assert verify.returncode == 6, verify.stderr
    assert json.loads(verify.stdout)["fault"]["position"] == position, verify.stdout
    for command in (("doctor", "--repair"), ("audit", "checkpoint"), ("audit", "pubkey")):
        result = ledger.run(*command)
        _not_internal(result)
        assert result.returncode == 6, (command, result.stderr)


@pytest.mark.parametrize(("field", "value"), CHECKPOINT_FIELDS[:2], ids=CHECKPOINT_IDS[:2])
def test_a_bundle_checkpoint_field_that_is_no_hex_is_damage_on_the_auditors_machine(
    ledger: Ledger, tmp_path: Path, field: str, value: str
) -> None:
    ledger.set(*ADDRESS[1::2], VALUE)
    bundle = _bundle(ledger, tmp_path)
    _edit_last_checkpoint(bundle / "ledger.sqlite", field, value)
    verify = ledger.run("audit", "verify", "--bundle", str(bundle))
    _not_internal(verify)
    assert verify.returncode == 6, verify.stderr


# -- doctor --repair acts only on a log that verifies ---------------------------------------


def _insert_unchained_prune(ledger: Ledger) -> int:
    """A `VersionPruned` of the secret's version 1 inserted with no chain link; its position."""
    added = ledger.events("ledger.secret:Secret.VersionAdded")[0]
    with _db(ledger) as db:
        cur = db.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, 3, 'ledger.secret:Secret.VersionPruned', ?)",
            (
                added.originator_id,
                json.dumps(
                    {
                        "timestamp": added.state["timestamp"],
                        "operator": "alice",
                        "correlation_id": "x",
                        "version": 1,
                    }
                ).encode(),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid


def test_doctor_repair_does_not_delete_a_value_on_an_unchained_event(ledger: Ledger) -> None:
    ledger.set(*ADDRESS[1::2], VALUE)
    _insert_unchained_prune(ledger)
    repair = ledger.run("doctor", "--repair")  # the event has no chain link at all
    assert repair.returncode == 6 and "does not verify" in repair.stderr, repair.stderr
    with _db(ledger) as db:  # the forgery taken away again: the value is still there
        db.execute("DELETE FROM stored_events WHERE topic = 'ledger.secret:Secret.VersionPruned'")
    got = ledger.run("get", *ADDRESS)
    assert got.returncode == 0 and got.stdout.strip() == VALUE, got.stderr


def test_hidden_events_cannot_make_doctor_repair_destroy_a_value(ledger: Ledger) -> None:
    """Rows of a secret hidden while the victim runs `doctor --repair`, then put back: the
    value must survive (2c74fd2: deleted as an orphan; the restored log verifies clean)."""
    ledger.set(*ADDRESS[1::2], VALUE)
    with _db(ledger) as db:
        oid = db.execute(
            "SELECT originator_id FROM stored_events "
            "WHERE topic = 'ledger.secret:Secret.Registered'"
        ).fetchone()[0]
        hidden = db.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "WHERE originator_id = ?",
            (oid,),
        ).fetchall()
        db.execute("DELETE FROM stored_events WHERE originator_id = ?", (oid,))
    repair = ledger.run("doctor", "--repair")
    assert repair.returncode == 6 and "does not verify" in repair.stderr, repair.stderr
    with _db(ledger) as db:
        db.executemany(
            "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?, ?)",
            hidden,
        )
    assert ledger.run("audit", "verify").returncode == 0
    got = ledger.run("get", *ADDRESS)
    assert got.returncode == 0 and got.stdout.strip() == VALUE, got.stderr


# -- a secret's events are checked against the chain before a decision rests on them ------


def test_an_unchained_prune_is_not_believed_by_get_or_set(ledger: Ledger) -> None:
    """A `VersionPruned` row inserted without its link: `get` answered exit 3 "pruned" and
    `set` folded it (the per-load chain check covered operators and settings only)."""
    ledger.set(*ADDRESS[1::2], VALUE)
    position = _insert_unchained_prune(ledger)
    alarms_before = len(ledger.events("ledger.records:IntegrityAlarm"))
    got = ledger.run("get", *ADDRESS)
    assert got.returncode == 6, (got.returncode, got.stderr)
    assert f"position {position}" in got.stderr and VALUE not in got.stdout
    changed = ledger.run("set", *ADDRESS, "--value-stdin", input=VALUE + "-2")
    assert changed.returncode == 6, (changed.returncode, changed.stderr)
    alarms = ledger.events("ledger.records:IntegrityAlarm")
    assert len(alarms) > alarms_before
    assert alarms[-1].state["position"] == position
    assert ledger.events("ledger.secret:Secret.VersionAdded")[-1].state["version"] == 1


# -- a sealed snapshot is bound to its ledger and its history ------------------------------


def test_a_snapshot_sealed_in_a_copy_of_the_ledger_is_not_accepted(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Two copies of one ledger (a backup restored beside it, `ledger copy`) share the
    fingerprint key and the uid. A snapshot sealed in one, put into the other after their
    histories diverged, was accepted: `get` served the other copy's version."""
    import dataclasses
    import shutil

    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress

    ledger.set(*ADDRESS[1::2], VALUE)
    other_home = tmp_path / "copy-home"
    shutil.copytree(ledger.home, other_home)
    other = dataclasses.replace(
        ledger, home=other_home, env={**ledger.env, "SECRETS_LEDGER_HOME": str(other_home)}
    )
    app = ledger._app()  # the original moves on: 30 versions, a snapshot sealed at 50
    address = SecretAddress("default", *ADDRESS[1::2])
    for n in range(30):
        app.write(Credential(token=ledger.token), address, f"{VALUE}-{n:02d}")
    with _db(ledger) as db:
        snapshots = db.execute(
            "SELECT * FROM stored_snapshots WHERE originator_id = ?", (address.id.hex,)
        ).fetchall()
    assert snapshots
    with _db(other) as db:
        db.executemany("INSERT INTO stored_snapshots VALUES (?, ?, ?, ?)", snapshots)
    got = other.run("get", *ADDRESS)
    # The copy's own version 1: its value where the copy has its own vault file; on the
    # shared Secret Service the original pruned it (exit 8). Never the original's version 31.
    assert (got.returncode, got.stdout.strip()) in ((0, VALUE), (8, "")), got
    assert "does not authenticate" in got.stderr
    doctor = other.run("doctor")
    assert f"bad snapshot: {address.id.hex}@50" in doctor.stdout, doctor.stdout
    original = ledger.run("get", *ADDRESS)
    assert original.returncode == 0 and original.stdout.strip() == f"{VALUE}-29", original
    assert "snapshot" not in original.stderr


def _legacy_seal(fingerprint_key: bytes, oid: str, version: int, topic: str, state: bytes) -> bytes:
    """A snapshot's state sealed as the first format did (`slsnap1:`): HMAC under a key from
    the fingerprint key alone, over the id, version, topic and state."""
    import hashlib
    import hmac
    from uuid import UUID

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"secrets-ledger snapshot seal v1"
    ).derive(fingerprint_key)
    parts = (str(UUID(oid)).encode(), str(version).encode(), topic.encode(), state)
    message = b"".join(len(p).to_bytes(8, "big") + p for p in parts)
    return b"slsnap1:" + hmac.new(key, message, hashlib.sha256).digest() + state


def test_a_ledger_with_first_format_seals_keeps_working(ledger: Ledger) -> None:
    """Snapshots sealed before seals named the ledger and its history are not used (folded
    from the events, with a warning) and `doctor --repair` removes them."""
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress

    ledger.set(*ADDRESS[1::2], VALUE)
    app = ledger._app()
    address = SecretAddress("default", *ADDRESS[1::2])
    for n in range(30):
        app.write(Credential(token=ledger.token), address, f"{VALUE}-{n:02d}")
    fingerprint_key = bytes.fromhex(app.vault.get("ledger.fingerprint-key"))
    with _db(ledger) as db:
        rows = db.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_snapshots"
        ).fetchall()
        assert rows
        for oid, version, topic, state in rows:
            assert bytes(state).startswith(b"slsnap2:")
            legacy = _legacy_seal(fingerprint_key, oid, version, topic, bytes(state)[40:])
            db.execute(
                "UPDATE stored_snapshots SET state = ? "
                "WHERE originator_id = ? AND originator_version = ?",
                (legacy, oid, version),
            )
    got = ledger.run("get", *ADDRESS)
    assert got.returncode == 0 and got.stdout.strip() == f"{VALUE}-29", got
    assert "sealed by an earlier version" in got.stderr
    for args in (("list",), ("versions", *ADDRESS), ("audit", "verify")):
        result = ledger.run(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert ledger.run("doctor").returncode == 0
    assert ledger.run("doctor", "--repair").returncode == 0
    with _db(ledger) as db:
        assert db.execute("SELECT count(*) FROM stored_snapshots").fetchone()[0] == 0
    again = ledger.run("set", *ADDRESS, "--value-stdin", input=VALUE + "-new")
    assert again.returncode == 0 and "snapshot" not in again.stderr, again.stderr


# -- views.sqlite rows are a cache, never the record ----------------------------------------


def test_an_edited_audit_view_row_is_not_shown_as_recorded_history(ledger: Ledger) -> None:
    """Rows of views.sqlite changed or added by hand showed in `audit log` as they were."""
    ledger.set(*ADDRESS[1::2], VALUE)
    assert ledger.run("audit", "log").returncode == 0  # views caught up
    with _db(ledger, "views.sqlite") as views:
        views.execute(
            "UPDATE audit_view SET operator = 'mallory' WHERE event = 'Secret.VersionAdded'"
        )
        views.execute(
            "UPDATE audit_view SET detail = 'mallory as senior-engineer' "
            "WHERE event = 'Operator.Registered'"
        )
        top = views.execute("SELECT max(position) FROM audit_view").fetchone()[0]
        views.execute(
            "INSERT INTO audit_view SELECT position + 1000, timestamp, code, event, 'mallory', "
            "action, environment, service, name, outcome, correlation_id, detail "
            "FROM audit_view WHERE position = ?",
            (top,),
        )
    shown = ledger.run("audit", "log", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert "mallory" not in shown.stdout
    assert "not what the ledger recorded" in shown.stderr, shown.stderr
    events = json.loads(shown.stdout)["events"]
    assert [e["operator"] for e in events if e["event"] == "Secret.VersionAdded"] == ["alice"]
    assert max(e["position"] for e in events) == top
    again = ledger.run("audit", "log", "-o", "json")  # rebuilt: nothing more to say
    assert again.returncode == 0 and again.stdout == shown.stdout
    assert "not what the ledger recorded" not in again.stderr


def _forge_replay_state(ledger: Ledger) -> int:
    """A saved replay state naming mallory a senior-engineer, bound to the real chain link at
    the head and carrying the unkeyed digest of the first layout; its position."""
    import hashlib

    with _db(ledger) as db:
        position, link = db.execute(
            "SELECT notification_id, link FROM event_chain ORDER BY notification_id DESC LIMIT 1"
        ).fetchone()
    head = json.dumps(
        {
            "position": position,
            "timestamp": "2026-01-01T00:00:00.000Z",
            "retention": 10,
            "secrets": None,
            "operators": {
                operator_id("mallory").hex: {
                    "name": "mallory",
                    "role": "senior-engineer",
                    "sessions": {},
                }
            },
        },
        separators=(",", ":"),
    )
    digest = hashlib.sha256(link)
    digest.update(len(head.encode()).to_bytes(8, "big") + head.encode())
    with _db(ledger, "views.sqlite") as views:
        views.execute("DELETE FROM replay_checkpoints WHERE position = ?", (position,))
        views.execute(
            "INSERT INTO replay_checkpoints VALUES (?, ?, '[]', ?, ?)",
            (position, head, link, digest.hexdigest()),
        )
    return int(position)


def test_a_forged_replay_state_is_not_believed(ledger: Ledger) -> None:
    """A row forged in views.sqlite made `audit replay` and `audit who-can` show mallory as
    a senior-engineer while `audit verify` passed."""
    ledger.set(*ADDRESS[1::2], VALUE)
    ledger.run("list")  # views caught up
    position = _forge_replay_state(ledger)
    replay = ledger.run("audit", "replay", "--position", str(position))
    assert replay.returncode == 0, replay.stderr
    assert "mallory" not in replay.stdout and "alice" in replay.stdout, replay.stdout
    _forge_replay_state(ledger)
    who = ledger.run("audit", "who-can", *ADDRESS)
    assert who.returncode == 0, who.stderr
    assert "mallory" not in who.stdout and "alice" in who.stdout, who.stdout


def test_an_event_damaged_after_the_views_applied_it_is_shown_as_unreadable(
    ledger: Ledger,
) -> None:
    """The views keep the entry of an event applied while it decoded; `audit log` showed it
    as recorded after the event's bytes were damaged."""
    ledger.set(*ADDRESS[1::2], VALUE)
    assert ledger.run("audit", "log").returncode == 0  # views caught up
    (added,) = [e.position for e in ledger.events("ledger.secret:Secret.VersionAdded")]
    with _db(ledger) as db:
        db.execute("UPDATE stored_events SET state = x'7b22ff' WHERE rowid = ?", (added,))
    shown = ledger.run("audit", "log", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert f"positions {added} cannot be decoded any more" in shown.stderr, shown.stderr
    (entry,) = [e for e in json.loads(shown.stdout)["events"] if e["position"] == added]
    assert (entry["code"], entry["action"]) == ("HBSE-013", "unreadable"), entry


# -- an unfinished rotation run read from storage ---------------------------------------------

NEW_VALUE = "sk-live-value-0002-klmnopqrst"
STAMP = {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00.000000+00:00"}


def _insert(db: sqlite3.Connection, oid: str, topic: str, state: dict[str, object]) -> None:
    """One event row at version 1, with no chain link: nothing recomputed."""
    db.execute(
        "INSERT INTO stored_events VALUES (?, 1, ?, ?)",
        (oid, topic, json.dumps(state, separators=(",", ":")).encode()),
    )


def _forge_open_run(home: Path, scope: str, with_incident: bool = True) -> None:
    """An unfinished rotation run of `scope` with no targets (and, for an emergency, its
    incident), inserted as two unchained rows."""
    import uuid

    incident = uuid.uuid4().hex if scope == "emergency" else None
    common = {"timestamp": STAMP, "operator": "alice", "correlation_id": "0" * 32}
    with sqlite3.connect(home / "ledger.sqlite") as db:
        if incident is not None and with_incident:
            _insert(
                db,
                incident,
                "ledger.records:Incident.EmergencyRotationStarted",
                {**common, "originator_topic": "ledger.records:Incident", "reason": "old"},
            )
        _insert(
            db,
            uuid.uuid4().hex,
            "ledger.rotation_records:RotationRun.Started",
            {
                **common,
                "originator_topic": "ledger.rotation_records:RotationRun",
                "scope": scope,
                "trigger": "manual",
                "targets": {},
                "incident_id": incident,
            },
        )


def _values_file(tmp_path: Path) -> Path:
    path = tmp_path / "values.toml"
    path.write_text(f'"default/nexus/mcp.bun.apiKey" = "{NEW_VALUE}"\n')
    path.chmod(0o600)
    return path


def _current_version(ledger: Ledger) -> int:
    return int(ledger.json("versions", *ADDRESS)["current_version"])


@pytest.mark.parametrize(
    ("scope", "command"),
    [("emergency", ("emergency-rotate", "--reason", "leaked")), ("all", ("rotate", "--all"))],
)
def test_a_forged_open_run_does_not_decide_what_a_rotation_rotates(
    ledger: Ledger, tmp_path: Path, scope: str, command: tuple[str, ...]
) -> None:
    """Two rows inserted without chain links made the real `emergency-rotate` "resume" a
    forged incident with no targets (nothing rotated, exit 0), and `rotate --all` rotate
    nothing: the run is read for a decision, so it is checked and fails closed."""
    ledger.set(*ADDRESS[1::2], VALUE)
    before = _current_version(ledger)
    _forge_open_run(ledger.home, scope)
    result = ledger.run(*command, "--values-file", str(_values_file(tmp_path)))
    assert result.returncode == 6, (result.returncode, result.stdout, result.stderr)
    assert "position" in result.stderr, result.stderr
    assert _current_version(ledger) == before


def test_a_forged_open_emergency_without_its_incident_is_an_integrity_failure(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Was exit 1, `internal error (AggregateNotFoundError)`."""
    ledger.set(*ADDRESS[1::2], VALUE)
    _forge_open_run(ledger.home, "emergency", with_incident=False)
    result = ledger.run(
        "emergency-rotate", "--reason", "leaked", "--values-file", str(_values_file(tmp_path))
    )
    _not_internal(result)
    assert result.returncode == 6, (result.returncode, result.stderr)


def test_deleting_the_newest_event_is_an_integrity_failure(ledger: Ledger) -> None:
    """SQLite gives the next insert the deleted row's id, whose chain link is still there:
    every write (a `get`'s receipt included) was exit 1, `the event store failed: UNIQUE
    constraint failed: event_chain.notification_id`, where the log was cut."""
    ledger.set(*ADDRESS[1::2], VALUE)
    ledger.set(*ADDRESS[1::2], NEW_VALUE)  # the newest event: this version's
    with sqlite3.connect(ledger.home / "ledger.sqlite") as db:
        db.execute("DELETE FROM stored_events WHERE rowid = (SELECT max(rowid) FROM stored_events)")
    read = ledger.run("get", *ADDRESS)
    _not_internal(read)
    assert read.returncode == 6, (read.returncode, read.stderr)
    assert "position" in read.stderr, read.stderr


# -- incidents, the schedule and doctor's loads are chain-checked before use ---------------


def _insert_unchained(ledger: Ledger, topic: str, state: dict[str, object]) -> int:
    """One event of a new aggregate at version 1, stamped now, with no chain link; its
    position."""
    import uuid
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat(timespec="microseconds")
    stamp = {"_type_": "datetime_iso", "_data_": now}
    common = {"timestamp": stamp, "operator": "alice", "correlation_id": "0" * 32}
    aggregate = topic.split(":", 1)[0] + ":" + topic.split(":", 1)[1].split(".", 1)[0]
    with _db(ledger) as db:
        cur = db.execute(
            "INSERT INTO stored_events VALUES (?, 1, ?, ?)",
            (
                uuid.uuid4().hex,
                topic,
                json.dumps(
                    {**common, "originator_topic": aggregate, **state}, separators=(",", ":")
                ).encode(),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid


def _fails_closed_at(ledger: Ledger, result: object, position: int, alarms_before: int) -> None:
    _not_internal(result)
    rc, err = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert rc == 6 and f"position {position}" in err, (rc, err)
    alarms = ledger.events("ledger.records:IntegrityAlarm")
    assert len(alarms) > alarms_before and alarms[-1].state["position"] == position


def test_an_unchained_emergency_start_does_not_decide_a_rotation_status(ledger: Ledger) -> None:
    """An `EmergencyRotationStarted` inserted without its link marked every secret
    emergency-pending in `rotate-status` (and the dashboard, compliance): it was read
    without the chain check a secret's events get."""
    ledger.set(*ADDRESS[1::2], VALUE)
    position = _insert_unchained(
        ledger, "ledger.records:Incident.EmergencyRotationStarted", {"reason": "forged"}
    )
    alarms_before = len(ledger.events("ledger.records:IntegrityAlarm"))
    status = ledger.run("rotate-status")
    _fails_closed_at(ledger, status, position, alarms_before)
    assert "emergency-pending" not in status.stdout
    # `rotate` (the due ones) decides on it too: every secret would be due.
    rotate = ledger.run("rotate")
    _fails_closed_at(ledger, rotate, position, alarms_before + 1)


def test_an_unchained_schedule_change_is_not_believed(ledger: Ledger) -> None:
    """A `ScheduleChanged` inserted without its link was reported as the ledger's schedule."""
    ledger.set(*ADDRESS[1::2], VALUE)
    position = _insert_unchained(
        ledger,
        "ledger.rotation_records:ScheduleChange.ScheduleChanged",
        {"action": "installed", "at": "03:00", "host": "elsewhere", "entry": "forged"},
    )
    alarms_before = len(ledger.events("ledger.records:IntegrityAlarm"))
    status = ledger.run("rotate", "schedule", "status", "--output", "json")
    _fails_closed_at(ledger, status, position, alarms_before)


def test_doctor_reports_an_unchained_event_as_damage_not_a_leftover(ledger: Ledger) -> None:
    """`doctor` folded a secret's events unchecked: an inserted `VersionPruned` made the
    retained value a "leftover" (which `--repair` deletes). Now exit 6 naming the position."""
    ledger.set(*ADDRESS[1::2], VALUE)
    position = _insert_unchained_prune(ledger)
    alarms_before = len(ledger.events("ledger.records:IntegrityAlarm"))
    doctor = ledger.run("doctor")
    _fails_closed_at(ledger, doctor, position, alarms_before)
    assert "leftover" not in doctor.stdout.lower()
