"""Damage must not break the auditor's own tools (issue 17).

An attacker (or a failing disk) edits the store as `python sqlite3` or `psql` would: the
events the CLI authorises on, the hash chain beside them, the views cache in the home. Every
command must then answer with an integrity failure naming the position (exit 6), never an
internal error; no decision may rest on an event whose link does not match; `audit verify`
must run to its report; a damaged views cache is rebuilt from the log, with a warning.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.store.chain import GENESIS, link
from tests.clikit import Ledger

# What every command is run as here after the damage, each answering exit 6 (`get` needs a
# secret, set up first).
COMMANDS: list[tuple[str, ...]] = [
    ("get", "--service", "nexus", "--name", "api.key"),
    ("list",),
    ("audit", "log"),
    ("doctor",),
]


# -- editing the store as an attacker would --------------------------------------------------


def _rows(ledger: Ledger) -> list[tuple[int, Any, int, str, bytes]]:
    """(position, originator id as stored, version, topic, state) of every event."""
    if ledger.database_url is None:
        with sqlite3.connect(ledger.home / "ledger.sqlite") as db:
            rows = db.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                "FROM stored_events ORDER BY rowid"
            ).fetchall()
    else:
        import psycopg

        with psycopg.connect(ledger.database_url) as conn:
            rows = conn.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state "
                "FROM public.secretsledger_events ORDER BY notification_id"
            ).fetchall()
    return [(int(p), o, int(v), str(t), bytes(s)) for p, o, v, t, s in rows]


def _write_state(ledger: Ledger, position: int, state: bytes, *, rechain: bool) -> None:
    """Replace one event's state; with `rechain`, recompute every link as the attacker who
    knows the chain needs no secret would (only signed checkpoints would show it)."""
    rows = _rows(ledger)
    links: list[tuple[int, bytes]] = []
    previous = GENESIS
    for p, oid, version, topic, old in rows:
        previous = link(previous, p, oid, version, topic, state if p == position else old)
        links.append((p, previous))
    if ledger.database_url is None:
        with sqlite3.connect(ledger.home / "ledger.sqlite") as db:
            db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state, position))
            if rechain:
                db.executemany(
                    "UPDATE event_chain SET link = ? WHERE notification_id = ?",
                    [(lk, p) for p, lk in links],
                )
        return
    import psycopg

    with psycopg.connect(ledger.database_url) as conn:
        conn.execute(
            "UPDATE public.secretsledger_events SET state = %s WHERE notification_id = %s",
            (state, position),
        )
        if rechain:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE public.secretsledger_event_chain SET link = %s "
                    "WHERE notification_id = %s",
                    [(lk, p) for p, lk in links],
                )


def _position(ledger: Ledger, topic: str, name: str) -> tuple[int, bytes]:
    """The position and state of the `topic` event whose state names operator `name`."""
    for p, _, _, t, state in _rows(ledger):
        if t == topic and json.loads(state).get("name") == name:
            return p, state
    raise AssertionError(f"no {topic} for {name}")


def _flip_topic_bit(state: bytes) -> bytes:
    """One bit flipped in the aggregate's class name inside the state: still JSON, but its
    `originator_topic` names nothing that exists (TopicError in the library)."""
    at = state.index(b'Operator"') + 7
    return state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :]


def _alarms(ledger: Ledger) -> list[dict[str, Any]]:
    return [e.state for e in ledger.events("ledger.records:IntegrityAlarm.IntegrityCheckFailed")]


REGISTERED = "ledger.operator:Operator.Registered"


def _assert_every_command_fails_closed(ledger: Ledger, position: int) -> None:
    for args in COMMANDS:
        result = ledger.run(*args)
        assert result.returncode == 6, (args, result.returncode, result.stderr)
        assert f"position {position}" in result.stderr, (args, result.stderr)
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    verified = ledger.run("audit", "verify")
    assert verified.returncode == 6, verified.stderr
    # verify ran to its report, which names the damage
    assert f"position {position}" in verified.stdout, verified.stdout
    assert "internal error" not in verified.stderr
    # recorded where the ledger can record: one alarm per refused command at least
    assert [a for a in _alarms(ledger) if a["position"] == position]


# -- operators' events: damaged, not believed ----------------------------------------------------


def test_a_flipped_bit_in_an_operator_event_is_an_integrity_failure_naming_it(
    ledger: Ledger,
) -> None:
    ledger.set("nexus", "api.key", "s3cr3t-value-abcdef123")
    position, state = _position(ledger, REGISTERED, "alice")
    _write_state(ledger, position, _flip_topic_bit(state), rechain=False)
    _assert_every_command_fails_closed(ledger, position)


def test_an_operator_event_that_cannot_be_decoded_fails_closed_even_with_its_chain_redone(
    ledger: Ledger,
) -> None:
    """The links recomputed after the edit: the chain alone holds, the decoding does not."""
    ledger.set("nexus", "api.key", "s3cr3t-value-abcdef123")
    position, state = _position(ledger, REGISTERED, "alice")
    _write_state(ledger, position, _flip_topic_bit(state), rechain=True)
    _assert_every_command_fails_closed(ledger, position)
    verified = ledger.run("audit", "verify")
    assert "undecodable" in verified.stdout, verified.stdout


def test_an_edited_role_is_not_believed(ledger: Ledger) -> None:
    granted = ledger.run("auth", "grant", "--operator", "bob", "--role", "analyst")
    assert granted.returncode == 0, granted.stderr
    bob = {"SECRETS_LEDGER_TOKEN": granted.stdout.strip()}
    position, state = _position(ledger, REGISTERED, "bob")
    promoted = json.loads(state)
    assert promoted["role"] == "analyst"
    promoted["role"] = "senior-engineer"
    _write_state(ledger, position, json.dumps(promoted).encode(), rechain=False)

    result = ledger.run("auth", "grant", "--operator", "carol", "--role", "engineer", env=bob)
    assert result.returncode == 6, result.stderr
    assert f"position {position}" in result.stderr
    assert not [e for e in ledger.events(REGISTERED) if e.state["name"] == "carol"]
    assert [a for a in _alarms(ledger) if a["position"] == position and a["fault"] == "edited"]


# -- the views cache ----------------------------------------------------------------------------


def _overwrite(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(8192)  # two pages of 4 KiB: the header still says how many there were


@pytest.mark.parametrize("damage", [_overwrite, _truncate], ids=["overwritten", "truncated"])
def test_a_damaged_views_cache_is_rebuilt_from_the_log_and_reported_by_doctor(
    ledger: Ledger, damage: Callable[[Path], None]
) -> None:
    ledger.set("nexus", "api.key", "s3cr3t-value-abcdef123")
    expected = ledger.json("list")
    views = ledger.views_file
    for stage in ("doctor", "list", "audit log", "audit verify", "projections rebuild"):
        damage(views)
        if stage == "doctor":
            result = ledger.run("doctor")
            assert result.returncode == 6, result.stderr
            assert "damaged views cache" in result.stdout, result.stdout
            repaired = ledger.run("doctor", "--repair")
            assert repaired.returncode == 0, repaired.stderr
            assert "views cache" in repaired.stdout
            assert not views.exists()
            rebuilt = ledger.run("list")  # the next command builds them again, no warning
            assert rebuilt.returncode == 0 and "warning" not in rebuilt.stderr, rebuilt.stderr
            continue
        result = ledger.run(*stage.split())
        assert result.returncode == 0, (stage, result.stderr)
        assert "the ledger file is damaged" not in result.stderr
        assert f"warning: the views cache {views} was damaged" in result.stderr, result.stderr
    after = ledger.run("list", "--output", "json")
    assert after.returncode == 0 and "warning" not in after.stderr, after.stderr
    assert json.loads(after.stdout) == expected
    healthy = ledger.run("doctor")
    assert healthy.returncode == 0 and "healthy" in healthy.stdout, healthy.stdout


def test_a_views_page_damaged_behind_an_intact_header_is_not_called_the_ledger(
    ledger: Ledger,
) -> None:
    """The header and the schema read fine, so nothing shows at open; the damage shows when
    `list` reads the secrets' view, in the middle of the command."""
    ledger.set("nexus", "api.key", "s3cr3t-value-abcdef123")
    expected = ledger.json("list")
    views = ledger.views_file
    with sqlite3.connect(views) as db:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'secrets_view'"
        ).fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    with views.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)

    result = ledger.run("list")
    assert result.returncode == 1, result.stderr
    assert "the ledger file is damaged" not in result.stderr
    assert f"the views cache {views}" in result.stderr, result.stderr
    again = ledger.run("list", "--output", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == expected


# -- a views cache edited as an attacker would (second hostile-storage review) ---------------

VIEWS_ADDRESS = ("--service", "nexus", "--name", "mcp.bun.apiKey")


def _views(ledger: Ledger, statement: str, *args: object) -> None:
    """One statement run on the caught-up views cache."""
    ledger.run("list")
    with sqlite3.connect(ledger.views_file) as views:
        views.execute(statement, args)


def _not_internal(result: Any) -> None:
    assert result.returncode != 1, (result.returncode, result.stderr)
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "statements",
    [
        ("DROP TABLE tracking",),
        ("DROP TABLE audit_view", "CREATE TABLE audit_view (x)"),
        ("CREATE TRIGGER t BEFORE INSERT ON audit_view BEGIN SELECT RAISE(ABORT, 'boom'); END",),
    ],
    ids=["no-tracking", "replaced-table", "trigger"],
)
def test_a_views_cache_of_another_shape_is_rebuilt_not_an_event_store_failure(
    ledger: Ledger, statements: tuple[str, ...]
) -> None:
    """A table dropped or replaced, or a trigger added: the cache is not ours, so it is
    rebuilt with a warning, and `doctor` reports it; never "the event store failed"."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    for stage in ("doctor", "list", "audit log --limit 1", "projections rebuild"):
        assert ledger.run("list").returncode == 0  # the views caught up
        views = ledger.views_file
        with sqlite3.connect(views) as db:
            for statement in statements:
                db.execute(statement)
        ledger.set(*VIEWS_ADDRESS[1::2], f"sk-live-value-{stage.split()[-1]}-klmnopqrst")
        if stage == "doctor":
            result = ledger.run("doctor")
            assert result.returncode == 6, result.stderr
            assert "damaged views cache" in result.stdout, result.stdout
            assert ledger.run("doctor", "--repair").returncode == 0
            continue
        result = ledger.run(*stage.split())
        assert result.returncode == 0, (stage, result.stderr)
        assert "event store failed" not in result.stderr
        assert f"warning: the views cache {views} was damaged" in result.stderr, result.stderr
    with sqlite3.connect(ledger.views_file) as db:
        rows, last = db.execute("SELECT count(*), max(position) FROM audit_view").fetchone()
    assert rows == last  # every event of the log once, none twice


@pytest.mark.parametrize("value", [b"\xff", "garbage"], ids=["blob", "text"])
def test_a_last_rotation_of_the_wrong_type_is_not_an_internal_error(
    ledger: Ledger, value: object
) -> None:
    """A BLOB or text that is no time in `secrets_view.last_rotation` reached the JSON
    encoder and the date parser: `internal error` from `list -o json`, `dashboard`,
    `metrics write`."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    _views(ledger, "UPDATE secrets_view SET last_rotation = ?", value)
    for command in (
        ("list", "-o", "json"),
        ("dashboard",),
        ("metrics", "write", "--textfile", str(ledger.home.parent / "m.prom")),
    ):
        result = ledger.run(*command)
        assert result.returncode == 0, (command, result.stderr)
        assert "views cache" in result.stderr, (command, result.stderr)


@pytest.mark.parametrize(
    ("column", "value"),
    [("last_read", b"\xff"), ("last_read", "garbage"), ("last_read_version", "v2")],
    ids=["blob", "text", "version-text"],
)
def test_a_last_read_of_the_wrong_type_is_not_an_internal_error(
    ledger: Ledger, column: str, value: object
) -> None:
    """Issue 22: the last read columns are shown only as far as they fit, like the others."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    assert ledger.run("get", *VIEWS_ADDRESS).returncode == 0
    _views(ledger, f"UPDATE secrets_view SET {column} = ?", value)  # noqa: S608
    for command in (("list", "-o", "json"), ("list",), ("versions", *VIEWS_ADDRESS, "-o", "json")):
        result = ledger.run(*command)
        assert result.returncode == 0, (command, result.stderr)
        assert "views cache" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_time_coverage_that_is_no_number_is_not_an_internal_error(ledger: Ledger) -> None:
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    _views(ledger, "UPDATE audit_time_coverage SET since = 'zz'")
    _not_internal(ledger.run("audit", "replay", "--at", "now"))
    who = ledger.run("audit", "who-can", *VIEWS_ADDRESS, "--at", "now")
    assert who.returncode == 0 and "alice" in who.stdout, (who.returncode, who.stderr)


def test_an_edited_time_block_does_not_move_a_replay_to_another_position(
    ledger: Ledger,
) -> None:
    """The time blocks are cache rows: an `earliest` moved to 2999 made `audit replay --at
    now` answer position 0 and `who-can --at now` say the secret did not exist (exit 3)."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    _views(ledger, "UPDATE audit_time_blocks SET earliest = '2999-01-01T00:00:00.000Z'")
    who = ledger.run("audit", "who-can", *VIEWS_ADDRESS, "--at", "now")
    assert who.returncode == 0 and "alice" in who.stdout, (who.returncode, who.stderr)
    replay = ledger.run("audit", "replay", "--at", "now")
    assert replay.returncode == 0 and "empty ledger" not in replay.stdout, replay.stdout


@pytest.mark.sqlite_file
def test_a_replay_state_with_a_non_ascii_digest_is_not_an_internal_error(ledger: Ledger) -> None:
    """`hmac.compare_digest` of two str raises TypeError for non-ASCII text: exit 1 for
    `audit replay` and `audit who-can`."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    ledger.run("list")
    with sqlite3.connect(ledger.home / "ledger.sqlite") as db:
        position, chained = db.execute(
            "SELECT notification_id, link FROM event_chain ORDER BY notification_id DESC LIMIT 1"
        ).fetchone()
    with sqlite3.connect(ledger.views_file) as views:
        views.execute(
            "INSERT OR REPLACE INTO replay_checkpoints VALUES (?, '{}', '[]', ?, ?)",
            (position, chained, "\u00e9"),
        )
    replay = ledger.run("audit", "replay", "--position", str(position))
    assert replay.returncode == 0, replay.stderr
    who = ledger.run("audit", "who-can", *VIEWS_ADDRESS)
    assert who.returncode == 0 and "alice" in who.stdout, (who.returncode, who.stderr)


def test_an_edited_views_cache_is_not_reported_as_an_altered_log(ledger: Ledger) -> None:
    """One UPDATE of views.sqlite made `projections rebuild` exit 6 saying "the log may have
    been altered", and a tracked position moved ahead made every `audit verify` report the
    intact log `truncated` and record HBSE-013. The cache is said to differ, not the log."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    _views(ledger, "UPDATE secrets_view SET fingerprint = 'deadbeefdead'")
    rebuilt = ledger.run("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "differ from the cache" in rebuilt.stderr, rebuilt.stderr
    with sqlite3.connect(ledger.views_file) as views:
        views.execute("UPDATE tracking SET position = 999999")
    for _ in range(2):
        verify = ledger.run("audit", "verify")
        assert verify.returncode == 0, (verify.stdout, verify.stderr)
        assert "views cache says the log reached position 999999" in verify.stderr
    assert ledger.run("projections", "rebuild").returncode == 0
    assert ledger.json("audit", "log", "--code", "HBSE-013")["events"] == []


# -- a views cache that claims more than the log holds (third hostile-storage review) --------


def _listed(ledger: Ledger) -> tuple[set[str], str]:
    result = ledger.run("list", "--output", "json")
    assert result.returncode == 0, result.stderr
    names = {s["name"] for s in json.loads(result.stdout)["secrets"]}
    return names, result.stderr


def test_a_tracked_position_past_the_log_is_rebuilt_not_left_stale(ledger: Ledger) -> None:
    """A forged tracking row past the log's head: the catch-up found nothing to apply, so
    `list` and `audit log` never showed what was recorded after, until `projections rebuild`."""
    ledger.set("nexus", "first.key", "sk-live-value-0001-abcdefghij")
    _views(ledger, "UPDATE tracking SET position = position + 50")
    doctor = ledger.run("doctor")
    assert doctor.returncode == 6, (doctor.stdout, doctor.stderr)
    assert "damaged views cache" in doctor.stdout and "claims more than" in doctor.stdout, (
        doctor.stdout
    )
    ledger.set("nexus", "second.key", "sk-live-value-0002-klmnopqrst")
    names, err = _listed(ledger)
    assert names == {"first.key", "second.key"}, (names, err)
    assert f"the views cache {ledger.views_file} claims more than the ledger's log holds" in err, (
        err
    )
    log = ledger.json("audit", "log")["events"]
    assert any(e["name"] == "second.key" for e in log)
    again = ledger.run("list")
    assert again.returncode == 0 and "warning" not in again.stderr, again.stderr
    assert ledger.run("doctor").returncode == 0


@pytest.mark.sqlite_file
def test_views_of_a_newer_log_beside_a_restored_older_one_are_rebuilt(ledger: Ledger) -> None:
    """An older ledger file restored next to the views of a newer one, then written to until
    its log passes the views' position: the views kept the lost secret and never showed the
    new ones (the event at their position is another one now)."""
    ledger.set("nexus", "kept.key", "sk-live-value-0001-abcdefghij")
    assert ledger.run("list").returncode == 0
    database = ledger.home / "ledger.sqlite"
    with sqlite3.connect(database) as db:
        backup = sqlite3.connect(":memory:")
        db.backup(backup)
    ledger.set("nexus", "lost.key", "sk-live-value-0002-klmnopqrst")
    assert _listed(ledger)[0] == {"kept.key", "lost.key"}
    with sqlite3.connect(ledger.views_file) as views:
        (claimed,) = views.execute("SELECT position FROM tracking").fetchone()
    with sqlite3.connect(database) as db:
        backup.backup(db)  # the older ledger, restored in place
    for n in range(3):
        ledger.set("nexus", f"new{n}.key", f"sk-live-value-000{n + 3}-uvwxyzabcd")
        if len(ledger.events()) >= claimed:
            break
    assert len(ledger.events()) >= claimed
    names, err = _listed(ledger)
    assert "lost.key" not in names and "new0.key" in names, (names, err)
    assert "claims more than the ledger's log holds" in err, err


@pytest.mark.parametrize("limit", [(), ("--limit", "2")], ids=["all", "newest-2"])
def test_an_audit_entry_deleted_from_the_views_is_not_silently_left_out(
    ledger: Ledger, limit: tuple[str, ...]
) -> None:
    """`audit log` checked each row it showed against its event, but a row deleted from
    views.sqlite simply was not shown: the write of a value vanished from the audit trail."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    ledger.set("nexus", "other.key", "sk-live-value-0002-klmnopqrst")
    expected = ledger.json("audit", "log", *limit)["events"]
    written = [e["position"] for e in expected if e["event"] == "Secret.VersionAdded"]
    # Never the views' own position (that is the check before every catch-up): the first
    # version's entry, or the older of the newest two.
    gone = written[:1] if not limit else [min(e["position"] for e in expected)]
    for position in gone:
        _views(ledger, "DELETE FROM audit_view WHERE position = ?", position)
    result = ledger.run("audit", "log", "--output", "json", *limit)
    assert result.returncode == 0, result.stderr
    assert "lacked the audit entries of recorded events" in result.stderr, result.stderr
    shown = json.loads(result.stdout)["events"]
    assert [e["position"] for e in shown] == [e["position"] for e in expected]
    again = ledger.run("audit", "log", *limit)
    assert again.returncode == 0 and "warning" not in again.stderr, again.stderr


# One cell per kind of reader: the audit rows shown (the log, the dashboard), the counts the
# metrics group by, the operator names and version ages the catch-up's fold reads back.
_CELLS = [
    ("audit_view", "environment"),
    ("audit_view", "detail"),
    ("operators_view", "name"),
    ("version_rotations", "rotated_at"),
    ("secrets_view", "environment"),
]


@pytest.mark.parametrize(("table", "column"), _CELLS, ids=[f"{t}.{c}" for t, c in _CELLS])
def test_a_views_cell_of_the_wrong_type_is_cache_damage_not_an_internal_error(
    ledger: Ledger, table: str, column: str
) -> None:
    """Every views table's cells that commands read, given a BLOB: the secrets view's were
    checked; the audit view's, the operators view's and the version rotations' reached the
    JSON and CSV writers, the table renderer, the dashboard, the metrics and the catch-up's
    own fold as they were."""
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0001-abcdefghij")
    # Names from the fixed list above, never from input.
    _views(ledger, f"UPDATE {table} SET {column} = ?", b"\xff\x00")  # noqa: S608
    commands: list[tuple[str, ...]] = [
        ("audit", "log"),
        ("audit", "log", "-o", "json"),
        ("audit", "log", "-o", "csv"),
        ("list", "-o", "json"),
        ("dashboard",),
        ("metrics", "write", "--textfile", str(ledger.home.parent / "m.prom")),
    ]
    for command in commands:
        result = ledger.run(*command)
        assert result.returncode == 0, (command, result.returncode, result.stderr)
        assert "\\xff" not in result.stdout and "b'" not in result.stdout, (command, result.stdout)
    # The catch-up folds new events over the edited rows.
    ledger.set(*VIEWS_ADDRESS[1::2], "sk-live-value-0002-klmnopqrst")
    for command in commands:
        result = ledger.run(*command)
        assert result.returncode == 0, (command, result.returncode, result.stderr)
    log = ledger.json("audit", "log")["events"]
    assert [e["position"] for e in log] == list(range(1, len(log) + 1)) or ledger.database_url
