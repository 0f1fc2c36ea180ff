"""`secrets audit` through the real CLI in a subprocess, on a real SQLite file and each real
vault (Secret Service, encrypted file): verification finds each kind of tampering, the log
filters and follows, the past can be replayed and reported."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.clikit import Ledger

API_KEY = "sk-" + "Q7x" * 16


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def audit_ledger(ledger: Ledger) -> Ledger:
    """The `ledger` fixture (each real vault) with four secrets and a checkpoint every 6
    events, so that every test has checkpoints to attack."""
    ledger.env["SECRETS_LEDGER_CHECKPOINT_EVERY"] = "6"
    for n in range(4):
        ledger.set("nexus", f"svc{n}.apiKey", API_KEY + str(n))
    return ledger


def db(ledger: Ledger) -> sqlite3.Connection:
    return sqlite3.connect(ledger.home / "ledger.sqlite", isolation_level=None)


def checkpoints(ledger: Ledger) -> list[int]:
    return [e.position for e in ledger.events() if e.topic.endswith("CheckpointSigned")]


def verify_fails(ledger: Ledger, kind: str, position: int) -> None:
    result = ledger.run("audit", "verify")
    assert result.returncode == 6, result.stdout + result.stderr
    assert f"FAULT {kind} at position {position}:" in result.stdout, result.stdout
    # A fault in the chain ends the walk, and the counts with it: the output says so. One
    # found after a whole walk (a signature, a witness that saw more) does not.
    valid, checked = map(int, result.stdout.split(" ", 1)[0].split("/"))
    stop = f"events and checkpoints after position {position} were not checked"
    assert (stop in result.stdout) == (valid < checked), result.stdout
    assert "an integrity alarm (HBSE-013) was recorded" in result.stdout, result.stdout
    if kind in ("edited", "deleted", "reordered", "inserted"):
        assert valid < checked, result.stdout
    assert "Traceback" not in result.stderr
    alarms = ledger.run("audit", "log", "--code", "HBSE-013", "-o", "jsonl")
    assert alarms.returncode == 0, alarms.stderr
    entries = [json.loads(line) for line in alarms.stdout.splitlines()]
    details = [e["detail"] for e in entries if e["event"] == "IntegrityAlarm.IntegrityCheckFailed"]
    assert details == [f"{kind} at position {position}"]


def test_an_untouched_ledger_verifies(audit_ledger: Ledger) -> None:
    result = audit_ledger.run("audit", "verify")
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(
        r"(\d+)/(\d+) events valid, (\d+)/(\d+) checkpoints valid, (\d+)/(\d+) snapshots valid\n",
        result.stdout,
    )
    assert match is not None, result.stdout
    events_ok, events, cps_ok, cps, snaps_ok, snaps = map(int, match.groups())
    assert snaps_ok == snaps
    assert events_ok == events >= 12 and cps_ok == cps == len(checkpoints(audit_ledger)) >= 2
    doc = audit_ledger.json("audit", "verify")
    assert doc["ok"] and doc["fault"] is None


@pytest.mark.sqlite_file  # on PostgreSQL: tests/integration/test_chain_postgres.py
def test_an_edited_byte_is_found(audit_ledger: Ledger) -> None:
    with db(audit_ledger) as con:
        state = bytearray(
            con.execute("SELECT state FROM stored_events WHERE rowid = 8").fetchone()[0]
        )
        state[30] ^= 0x04
        con.execute("UPDATE stored_events SET state = ? WHERE rowid = 8", (bytes(state),))
    verify_fails(audit_ledger, "edited", 8)
    (secret,) = [
        r for r in audit_ledger.json("audit", "log", "-o", "json")["events"] if r["position"] == 8
    ]
    assert secret["code"] == "HBSE-013" and secret["action"] == "unreadable"
    damaged = audit_ledger.run("versions", "--service", "nexus", "--name", "svc1.apiKey")
    assert damaged.returncode == 6 and "audit verify" in damaged.stderr


@pytest.mark.sqlite_file  # on PostgreSQL: tests/integration/test_chain_postgres.py
def test_a_deleted_row_is_found(audit_ledger: Ledger) -> None:
    with db(audit_ledger) as con:
        con.execute("DELETE FROM stored_events WHERE rowid = 5")
    verify_fails(audit_ledger, "deleted", 5)


@pytest.mark.sqlite_file  # on PostgreSQL: tests/integration/test_chain_postgres.py
def test_swapped_rows_are_found(audit_ledger: Ledger) -> None:
    select = (
        "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE rowid = ?"
    )
    with db(audit_ledger) as con:
        a = con.execute(select, (6,)).fetchone()
        b = con.execute(select, (10,)).fetchone()
        update = (
            "UPDATE stored_events SET originator_id = ?, originator_version = ?, topic = ?, "
            "state = ? WHERE rowid = ?"
        )
        con.execute("UPDATE stored_events SET originator_id = 'x' WHERE rowid = 6")
        con.execute(update, (*a, 10))
        con.execute(update, (*b, 6))
    verify_fails(audit_ledger, "reordered", 6)


@pytest.mark.sqlite_file  # on PostgreSQL: tests/integration/test_chain_postgres.py
def test_a_forged_row_is_found(audit_ledger: Ledger) -> None:
    with db(audit_ledger) as con:
        last = con.execute("SELECT max(rowid) FROM stored_events").fetchone()[0]
        con.execute(
            "INSERT INTO stored_events SELECT originator_id, 99, topic, state FROM stored_events "
            "WHERE rowid = 8"
        )
    verify_fails(audit_ledger, "inserted", last + 1)


@pytest.mark.sqlite_file  # on PostgreSQL: tests/integration/test_chain_postgres.py
def test_a_tail_cut_after_a_checkpoint_is_found(audit_ledger: Ledger) -> None:
    last_checkpoint = checkpoints(audit_ledger)[-1]
    with db(audit_ledger) as con:
        con.execute("DELETE FROM stored_events WHERE rowid >= ?", (last_checkpoint - 1,))
        con.execute("DELETE FROM event_chain WHERE notification_id >= ?", (last_checkpoint - 1,))
    (audit_ledger.home / "views.sqlite").unlink(missing_ok=True)  # only the keychain witnesses
    verify_fails(audit_ledger, "truncated", last_checkpoint - 1)


@pytest.mark.sqlite_file  # on PostgreSQL: tests/integration/test_chain_postgres.py
def test_a_replaced_checkpoint_signature_is_found(audit_ledger: Ledger) -> None:
    target = checkpoints(audit_ledger)[0]
    with db(audit_ledger) as con:
        raw = bytes(
            con.execute("SELECT state FROM stored_events WHERE rowid = ?", (target,)).fetchone()[0]
        )
        signature = json.loads(raw)["signature"]
        forged = raw.replace(signature.encode(), ("0" * len(signature)).encode())
        con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (forged, target))
    verify_fails(audit_ledger, "signature", target)


def test_pubkey_pins_and_bundles_verify_offline(audit_ledger: Ledger, tmp_path: Path) -> None:
    pem = audit_ledger.run("audit", "pubkey")
    assert pem.returncode == 0 and pem.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    key_file = tmp_path / "pinned.pem"
    key_file.write_text(pem.stdout)
    assert audit_ledger.run("audit", "verify", "--pubkey", str(key_file)).returncode == 0

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    wrong = audit_ledger.run("audit", "verify", "--pubkey", str(other))
    assert wrong.returncode == 6 and "FAULT signature" in wrong.stdout
    bad = audit_ledger.run("audit", "verify", "--pubkey", str(tmp_path / "missing.pem"))
    assert bad.returncode == 2

    bundle = tmp_path / "bundle"
    made = audit_ledger.run("audit", "export", "--out", str(bundle))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in bundle.iterdir()) == [
        "checkpoint.json",
        "ledger.sqlite",
        "pubkey.pem",
    ]
    offline = {k: v for k, v in audit_ledger.env.items() if not k.startswith("SECRETS_LEDGER_")}
    checked = subprocess.run(
        [audit_ledger.python, "-m", "commands", "audit", "verify", "--bundle", str(bundle)],
        env=offline,
        cwd=audit_ledger.cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    with sqlite3.connect(bundle / "ledger.sqlite") as con:
        con.execute("DELETE FROM stored_events WHERE rowid > 10")
        con.execute("DELETE FROM event_chain WHERE notification_id > 10")
    # On the PostgreSQL variant this runs with SECRETS_LEDGER_DATABASE_URL set: the bundle,
    # not the configured shared ledger, is what must be verified.
    cut = audit_ledger.run("audit", "verify", "--bundle", str(bundle))
    assert cut.returncode == 6 and "FAULT truncated at position 11" in cut.stdout


def test_bundle_is_a_hidden_deprecated_alias_of_export(
    audit_ledger: Ledger, tmp_path: Path
) -> None:
    listed = audit_ledger.run("audit", "--help")
    assert listed.returncode == 0 and "export" in listed.stdout
    assert not re.search(r"^\W*bundle\b", listed.stdout, re.MULTILINE), listed.stdout
    verify_help = audit_ledger.run("audit", "verify", "--help").stdout
    assert "audit export" in " ".join(verify_help.split())
    old = tmp_path / "old"
    made = audit_ledger.run("audit", "bundle", "--out", str(old))
    assert made.returncode == 0, made.stderr
    assert "deprecated" in made.stderr.lower()
    checked = audit_ledger.run("audit", "verify", "--bundle", str(old))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_log_filters_orders_and_formats(audit_ledger: Ledger) -> None:
    denied = audit_ledger.run(
        "get",
        "--service",
        "nexus",
        "--name",
        "svc0.apiKey",
        env={"SECRETS_LEDGER_TOKEN": "slt.bad"},
    )
    assert denied.returncode == 4
    audit_ledger.run("get", "--service", "nexus", "--name", "svc1.apiKey")

    table = audit_ledger.run("audit", "log")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "CODE", "OPERATOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"]
    assert "HBSE-001" in lines[2] and "HBSE-014" in lines[-1]  # newest first

    events = [
        json.loads(x) for x in audit_ledger.run("audit", "log", "-o", "jsonl").stdout.splitlines()
    ]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and events[0]["code"] == "HBSE-014"

    only = audit_ledger.json("audit", "log", "--code", "HBSE-006")["events"]
    assert [(e["operator"], e["outcome"]) for e in only] == [("anonymous", "denied")]
    assert audit_ledger.json("audit", "log", "--code", "hbse-006")["events"] == only
    unknown = audit_ledger.run("audit", "log", "--code", "HBSE-06")
    assert unknown.returncode == 2 and "not an HBSE code" in unknown.stderr
    by_name = audit_ledger.json("audit", "log", "--service", "nexus", "--name", "svc1.apiKey")
    assert {e["name"] for e in by_name["events"]} == {"svc1.apiKey"}
    assert audit_ledger.json("audit", "log", "--operator", "nobody")["events"] == []

    limited = audit_ledger.run("audit", "log", "-o", "csv", "--limit", "2").stdout.splitlines()
    assert limited[0].startswith("position,timestamp,code") and len(limited) == 3
    assert int(limited[1].split(",")[0]) < int(limited[2].split(",")[0])

    assert audit_ledger.json("audit", "log", "--since", "1h")["events"]
    assert audit_ledger.json("audit", "log", "--until", "2000-01-01")["events"] == []
    assert audit_ledger.run("audit", "log", "--since", "yesterday-ish").returncode == 2
    for line in table.stdout.splitlines():
        assert API_KEY not in line


def test_an_analyst_may_read_the_log(audit_ledger: Ledger) -> None:
    granted = audit_ledger.run("auth", "grant", "--operator", "carol", "--role", "analyst")
    assert granted.returncode == 0, granted.stderr
    as_analyst = {"SECRETS_LEDGER_TOKEN": granted.stdout.strip()}
    assert audit_ledger.run("audit", "log", env=as_analyst).returncode == 0
    assert audit_ledger.run("audit", "verify", env=as_analyst).returncode == 0
    anonymous = audit_ledger.run(
        "audit", "log", env={"SECRETS_LEDGER_SESSION_FILE": "/nonexistent"}
    )
    assert anonymous.returncode == 4


def test_log_follow_prints_new_entries_until_interrupted(audit_ledger: Ledger) -> None:
    proc = subprocess.Popen(
        [
            audit_ledger.python,
            "-m",
            "commands",
            "audit",
            "log",
            "--follow",
            "-o",
            "jsonl",
            "--limit",
            "1",
            "--interval",
            "0.1",
        ],
        env=audit_ledger.env,
        cwd=audit_ledger.cwd,
        # Ctrl-C must reach it even when the test runner was started with SIGINT ignored
        # (a background job in a non-interactive shell): children inherit SIG_IGN.
        preexec_fn=_default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        audit_ledger.set("github", "github.token", "ghp_" + "A1b2" * 9)
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            entry = json.loads(proc.stdout.readline())
            seen.append(entry)
            if entry["service"] == "github" and entry["action"] == "set":
                break
        assert all(e["position"] > first["position"] for e in seen)
        assert seen[-1]["name"] == "github.token"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_codes_catalogue(audit_ledger: Ledger) -> None:
    doc = audit_ledger.json("audit", "codes")
    codes = {c["code"]: c for c in doc["codes"]}
    assert set(codes) == {f"HBSE-{n:03d}" for n in range(1, 16)}
    assert "Checkpoint.CheckpointSigned" in codes["HBSE-015"]["events"]
    text = audit_ledger.run("audit", "codes").stdout
    assert "HBSE-006" in text and "access denied" in text


def test_replay_diff_who_can_and_hash(audit_ledger: Ledger) -> None:
    first = audit_ledger.json("audit", "log", "--limit", "1")["events"][-1]
    position, stamp = first["position"], first["timestamp"]
    time.sleep(0.01)
    audit_ledger.set("nexus", "svc0.apiKey", "rotated-" + API_KEY)
    granted = audit_ledger.run("auth", "grant", "--operator", "bob", "--role", "analyst")
    assert granted.returncode == 0
    bob = {"SECRETS_LEDGER_TOKEN": granted.stdout.strip()}
    refused = audit_ledger.run(
        "get", "--service", "nexus", "--name", "svc2.apiKey", env={"SECRETS_LEDGER_TOKEN": "slt.x"}
    )
    assert refused.returncode == 4

    then = audit_ledger.json("audit", "replay", "--position", str(position))
    by_time = audit_ledger.json("audit", "replay", "--at", stamp)
    assert then == {**by_time, "as_of": then["as_of"]} and by_time["position"] == position
    svc0 = next(s for s in then["secrets"] if s["name"] == "svc0.apiKey")
    assert svc0["current_version"] == 1 and svc0["status"] == "active"
    assert svc0["compliance"] == "ok" and svc0["rotation_due"] > stamp
    # Compliance then is `rotate-status --as-of` then (the same policy code), e.g. 100 days on.
    later = (datetime.now(UTC) + timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    future = audit_ledger.json("audit", "replay", "--at", later)
    status = audit_ledger.run("rotate-status", "--as-of", later, "-o", "json")
    assert status.returncode == 1, status.stderr  # something is overdue then
    expected = {s["name"]: (s["status"], s["due"]) for s in json.loads(status.stdout)["secrets"]}
    assert {s["name"]: (s["compliance"], s["rotation_due"]) for s in future["secrets"]} == expected
    assert {c for c, _ in expected.values()} == {"overdue"}
    assert then["operators"] == [{"name": "alice", "role": "senior-engineer"}]
    assert [s["operator"] for s in then["sessions"]] == ["alice"]
    table = audit_ledger.run("audit", "replay", "--position", "9").stdout
    assert "svc0.apiKey" in table and "COMPLIANCE" in table
    assert audit_ledger.run("audit", "replay").returncode == 2
    head = audit_ledger.json("audit", "log", "--limit", "1")["events"][-1]["position"]
    beyond = audit_ledger.run("audit", "replay", "--position", str(head + 1))
    assert beyond.returncode == 2 and beyond.stdout == "", beyond.stdout
    assert f"--position {head + 1} is past the last event of the log ({head})" in beyond.stderr

    changes = audit_ledger.json("audit", "diff", "--from", stamp, "--to", "0s")
    assert [(c["secret"], c["fields"]["current_version"]) for c in changes["secrets"]] == [
        ("default/nexus/svc0.apiKey", {"from": 1, "to": 2})
    ]
    assert changes["operators"] == [{"operator": "bob", "from": None, "to": "analyst"}]
    assert [(c["change"], c["changes"]) for c in changes["secrets"]] == [("changed", ["set"])]
    assert [(r["operator"], r["change"], r["role"], r["by"]) for r in changes["role_changes"]] == [
        ("bob", "granted", "analyst", "alice")
    ]
    assert [(d["operator"], d["secret"]) for d in changes["denials"]] == [
        ("anonymous", "default/nexus/svc2.apiKey")
    ]
    until_now = audit_ledger.json("audit", "diff", "--from", stamp, "--to", "now")
    assert until_now["to"]["position"] == changes["to"]["position"]
    assert {**until_now, "to": None} == {**changes, "to": None}
    text = audit_ledger.run("audit", "diff", "--from", stamp, "--to", "0s").stdout
    assert "secret   default/nexus/svc0.apiKey: set v2" in text, text
    assert "role     bob: granted analyst (by alice)" in text, text
    assert "denied   anonymous: get default/nexus/svc2.apiKey" in text, text
    backwards = audit_ledger.run("audit", "diff", "--from", "0s", "--to", stamp)
    assert backwards.returncode == 2 and "--to is before --from" in backwards.stderr

    before = audit_ledger.json(
        "audit", "who-can", "--service", "nexus", "--name", "svc0.apiKey", "--at", stamp
    )
    assert [o["operator"] for o in before["operators"]] == ["alice"]
    missing = audit_ledger.run("audit", "who-can", "--service", "nexus", "--name", "nosuch.key")
    assert missing.returncode == 3 and missing.stdout == "", missing.stdout
    assert "default/nexus/nosuch.key does not exist as of position" in missing.stderr
    now = audit_ledger.json("audit", "who-can", "--service", "nexus", "--name", "svc0.apiKey")
    assert {o["operator"]: o["can"] for o in now["operators"]} == {
        "alice": ["read", "manage"],
        "bob": ["read"],
    }

    hashed = audit_ledger.run(
        "audit", "hash", "--service", "nexus", "--name", "svc0.apiKey", input=API_KEY + "0"
    )
    assert hashed.returncode == 0 and hashed.stdout.endswith("matches v1\n"), hashed.stderr
    assert API_KEY not in hashed.stdout + hashed.stderr
    other = audit_ledger.run(
        "audit",
        "hash",
        "--service",
        "nexus",
        "--name",
        "svc0.apiKey",
        "-o",
        "json",
        input="not-it",
        env=bob,
    )
    assert other.returncode == 0 and json.loads(other.stdout)["matching_versions"] == []
    anonymous = audit_ledger.run(
        "audit",
        "hash",
        "--service",
        "nexus",
        "--name",
        "svc0.apiKey",
        input="x",
        env={"SECRETS_LEDGER_SESSION_FILE": "/nonexistent"},
    )
    assert anonymous.returncode == 4


@pytest.mark.sqlite_file  # edits the SQLite file
def test_an_event_that_cannot_be_decoded_fails_the_replay_after_its_answer(
    audit_ledger: Ledger,
) -> None:
    """`audit replay`, `diff` and `who-can` leave out an event they cannot decode: they still
    answer, then say which positions are missing, with exit 6, whether the views found the
    damage (a read receipt damaged before they applied it) or the replay did (a version
    damaged after the views had applied it)."""
    got = audit_ledger.run("get", "--service", "nexus", "--name", "svc3.apiKey")
    assert got.returncode == 0, got.stderr
    events = audit_ledger.events()
    (read,) = [e.position for e in events if e.topic.endswith("SecretRead")]
    stamp = audit_ledger.json("audit", "log", "--limit", "1")["events"][-1]["timestamp"]
    with db(audit_ledger) as con:
        con.execute("UPDATE stored_events SET state = x'7b22ff' WHERE rowid = ?", (read,))
    assert audit_ledger.run("audit", "log").returncode == 0  # the views apply the damage
    added = [e.position for e in events if e.topic.endswith("VersionAdded")]
    with db(audit_ledger) as con:
        con.execute("UPDATE stored_events SET state = x'7b22ff' WHERE rowid = ?", (added[1],))
    head = audit_ledger.json("audit", "log", "--limit", "1")["events"][-1]["position"]

    commands = {
        "replay": ("audit", "replay", "--position", str(head)),
        "diff": ("audit", "diff", "--from", "2000-01-01", "--to", "0s"),
        "who-can": ("audit", "who-can", "--service", "nexus", "--name", "svc1.apiKey"),
    }
    for command in commands.values():
        for output in ("table", "json"):
            done = audit_ledger.run(*command, "-o", output)
            assert done.returncode == 6, (command, done.stdout, done.stderr)
            assert done.stdout, command  # the answer is still shown
            if output == "json":
                assert json.loads(done.stdout)["left_out"] == sorted([read, added[1]])
            assert (
                f"2 event(s) up to position {head} cannot be decoded and are left out of this "
                f"answer (position {min(read, added[1])}, {max(read, added[1])}); run "
                "`secrets audit verify`"
            ) in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
    # Before the damage, the same questions pass (an earlier cut holds neither event).
    early = audit_ledger.run("audit", "replay", "--position", str(min(read, added[1]) - 1))
    assert early.returncode == 0, early.stderr
    assert audit_ledger.run("audit", "replay", "--at", stamp).returncode == 6
    doctor = audit_ledger.run("doctor", "-o", "json")
    assert doctor.returncode == 6, doctor.stderr
    assert json.loads(doctor.stdout)["healthy"] is False
    # doctor folds chain-checked events: the damage is named with its position.
    assert "the recorded history is damaged" in doctor.stderr and "position" in doctor.stderr
    # The views rebuilt from the damaged log differ from those built before the damage: the
    # rebuild says where to look.
    rebuilt = audit_ledger.run("projections", "rebuild")
    assert rebuilt.returncode == 6, rebuilt.stderr
    assert "the log may have been altered since they were (run `secrets audit verify`)" in (
        rebuilt.stderr
    )


def test_report_compliance_and_projections_rebuild(audit_ledger: Ledger, tmp_path: Path) -> None:
    md = audit_ledger.run("report", "compliance")
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("# secrets-ledger compliance report")
    assert md.stdout == audit_ledger.run("report", "compliance").stdout  # same bytes
    out = tmp_path / "report.html"
    made = audit_ledger.run("report", "compliance", "--format", "html", "--out", str(out))
    assert made.returncode == 0 and out.read_text().startswith("<!DOCTYPE html>")
    doc = json.loads(audit_ledger.run("report", "compliance", "--format", "json").stdout)
    assert doc["summary"]["secrets"] == 4 and doc["integrity"]["ok"] is True
    # A date means the end of that day, as for rotate-status: today's report has today's events.
    today = datetime.now(UTC).date().isoformat()
    dated = json.loads(
        audit_ledger.run("report", "compliance", "--as-of", today, "--format", "json").stdout
    )
    assert dated["summary"]["secrets"] == 4 and dated["as_of"] == f"{today}T23:59:59.999Z"
    bad = audit_ledger.run("report", "compliance", "--as-of", "2026-02-30")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    csv_rows = audit_ledger.run("report", "compliance", "--format", "csv").stdout.splitlines()
    assert csv_rows[0].startswith("environment,service,name") and len(csv_rows) == 5
    for text in (md.stdout, out.read_text()):
        assert API_KEY not in text

    rebuilt = audit_ledger.run("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "identical" in rebuilt.stdout and "rebuilding views:" in rebuilt.stderr
