"""The hash chain on a real PostgreSQL server: written with the events under the insert lock,
verified end to end, tamper-evident, indifferent to sequence gaps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from ledger.application import SecretsLedger
from ledger.errors import IntegrityFailure
from ledger.secret import Secret
from ledger.store.chain import ChainedRecorder, verify, verify_store
from ledger.store.opening import open_ledger
from ledger.store.postgres import ChainedPostgresApplicationRecorder
from ledger.vault.memory import MemoryKeyring
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)

EVENTS = "secretsledger_events"
CHAIN = "secretsledger_event_chain"


@pytest.fixture
def app(tmp_path: Path, pg_url: str) -> Iterator[SecretsLedger]:  # noqa: F811
    ledger = open_ledger(
        tmp_path / "home", create=True, backend=MemoryKeyring(), database_url=pg_url
    )
    yield ledger
    ledger.close()


def _recorder(ledger: SecretsLedger) -> ChainedPostgresApplicationRecorder:
    recorder = ledger.recorder
    assert isinstance(recorder, ChainedPostgresApplicationRecorder)
    return recorder


def _add(ledger: SecretsLedger, count: int, prefix: str = "key") -> None:
    for n in range(count):
        secret = Secret("default", "svc", f"{prefix}{n}")
        secret.add_version(f"{n:064x}", "manual", "h")
        ledger.save(secret)


def _sql(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)  # type: ignore[call-overload]
        return list(cur.fetchall()) if cur.description else []


def test_every_event_gets_a_link_and_an_untouched_ledger_verifies(app: SecretsLedger) -> None:
    _add(app, 5)
    recorder = _recorder(app)
    checked: ChainedRecorder = recorder  # the same verification API as the SQLite store
    report, verified = verify(checked.iter_rows(), checked.iter_links())
    assert report.ok and report.events_checked == 10 and len(verified) == 10
    assert recorder.chain_head() == verified[-1]
    assert recorder.link_at(verified[3][0]) == verified[3][1]
    row = recorder.row_at(verified[0][0])
    assert row is not None and row.topic.endswith("Secret.Registered")


def test_an_edited_event_is_detected_at_its_position(app: SecretsLedger, pg_url: str) -> None:  # noqa: F811
    _add(app, 5)
    _sql(
        pg_url,
        f"UPDATE {EVENTS} SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'manual', 'rotate'), 'UTF8') WHERE notification_id = 4",
    )
    report = verify_store(_recorder(app))
    assert report.fault is not None
    assert (report.fault.position, report.fault.kind) == (4, "edited")
    assert report.events_valid == 3


def test_an_edited_link_or_topic_is_detected(app: SecretsLedger, pg_url: str) -> None:  # noqa: F811
    _add(app, 3)
    _sql(pg_url, f"UPDATE {EVENTS} SET topic = topic || 'x' WHERE notification_id = 2")
    report = verify_store(_recorder(app))
    assert report.fault is not None and report.fault.position == 2


def test_a_deleted_event_or_link_is_detected(app: SecretsLedger, pg_url: str) -> None:  # noqa: F811
    _add(app, 3)
    _sql(pg_url, f"DELETE FROM {EVENTS} WHERE notification_id = 2")
    report = verify_store(_recorder(app))
    assert report.fault is not None
    assert (report.fault.position, report.fault.kind) == (2, "deleted")

    _sql(pg_url, f"DELETE FROM {CHAIN} WHERE notification_id IN (2, 5)")
    report = verify_store(_recorder(app))  # the link at 3 chains over the missing 2
    assert report.fault is not None and report.fault.position == 3


def test_a_cut_log_whose_id_is_handed_out_again_is_damage_not_a_race(
    app: SecretsLedger,
    pg_url: str,  # noqa: F811
) -> None:
    """The newest event deleted and the sequence set back: the next write gets the id of a
    position that still has its link. It was the library's IntegrityError (retried as a race,
    then "another writer kept changing"); it is damage, and nothing is written."""
    _add(app, 2)
    _sql(pg_url, f"DELETE FROM {EVENTS} WHERE notification_id = 4")
    _sql(
        pg_url,
        f"SELECT setval(pg_get_serial_sequence('{EVENTS}', 'notification_id'), 3)",
    )
    secret = Secret("default", "svc", "late")
    secret.add_version("e" * 64, "manual", "h")
    with pytest.raises(IntegrityFailure, match="position 4"):
        app.save(secret)
    assert _sql(pg_url, f"SELECT count(*) FROM {EVENTS}")[0][0] == 3  # rolled back


def test_sequence_gaps_from_rolled_back_inserts_do_not_break_the_chain(
    app: SecretsLedger,
    pg_url: str,  # noqa: F811
) -> None:
    _add(app, 2)
    for _ in range(3):
        stale = Secret("default", "svc", "key0")  # version 1 again: the insert must conflict
        stale.add_version("f" * 64, "manual", "h")
        with pytest.raises(IntegrityError):
            app.save(stale)
    _add(app, 2, prefix="after")
    rows = _sql(pg_url, f"SELECT notification_id FROM {EVENTS} ORDER BY 1")
    ids = [int(str(r[0])) for r in rows]
    assert len(ids) == 8
    assert ids[-1] - ids[0] + 1 > len(ids), f"expected the sequence to have gaps: {ids}"
    events = _sql(pg_url, f"SELECT count(*) FROM {EVENTS}")[0][0]
    links = _sql(pg_url, f"SELECT count(*) FROM {CHAIN}")[0][0]
    assert events == links == 8  # the failed inserts left no link behind
    report = verify_store(_recorder(app))
    assert report.ok and report.events_checked == 8


def test_concurrent_writers_in_threads_keep_one_chain(app: SecretsLedger) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            _add(app, 15, prefix=f"t{n}-")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = verify_store(_recorder(app))
    assert report.ok and report.events_checked == 6 * 15 * 2


def test_tables_are_named_per_application_in_the_configured_schema(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    url = pg_url + "?schema=team_a"
    ledger = open_ledger(tmp_path / "h", create=True, backend=MemoryKeyring(), database_url=url)
    try:
        _add(ledger, 2)
        tables = {
            r[0]
            for r in _sql(
                pg_url,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'team_a'",
            )
        }
        assert {EVENTS, CHAIN, "secretsledger_snapshots"} <= tables
        assert not _sql(pg_url, f"SELECT to_regclass('public.{EVENTS}')")[0][0]
        assert verify_store(_recorder(ledger)).ok
    finally:
        ledger.close()


def test_a_least_privileged_role_can_use_a_ledger_another_role_created(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    from ledger.access.credentials import Credential
    from ledger.address import SecretAddress

    owner = open_ledger(tmp_path / "o", create=True, backend=MemoryKeyring(), database_url=pg_url)
    issued = owner.initialize("alice")
    assert issued is not None
    key = owner.export_key(Credential(token=issued.token))
    owner.close()
    role = f"writer_{tmp_path.name[-12:].lower().replace('-', '_')}"
    for statement in (
        f"CREATE ROLE {role} LOGIN PASSWORD 'writer-pw'",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT ON {EVENTS}, {CHAIN}, secretsledger_snapshots TO {role}",
        # LOCK TABLE ... IN EXCLUSIVE MODE needs UPDATE (or DELETE/TRUNCATE) on the table.
        f"GRANT UPDATE ON {EVENTS} TO {role}",
        f"GRANT USAGE ON SEQUENCE {EVENTS}_notification_id_seq TO {role}",
    ):
        _sql(pg_url, statement)
    url = pg_url.replace("postgres:pg-test-password", f"{role}:writer-pw")
    writer = open_ledger(tmp_path / "w", backend=MemoryKeyring(), database_url=url)
    try:
        alice = Credential(token=issued.token)
        writer.import_key(alice, key)
        address = SecretAddress("production", "svc", "least.privilege")
        assert writer.write(alice, address, "value-1234567", spec_check=lambda _v: None).number == 1
        assert writer.read(alice, address)[1] == "value-1234567"
        assert verify_store(_recorder(writer)).ok
    finally:
        writer.close()
        _sql(pg_url, f"DROP OWNED BY {role}")
        _sql(pg_url, f"DROP ROLE {role}")


def test_the_chain_head_is_read_while_the_events_table_is_locked(
    app: SecretsLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the link is computed, this transaction already holds the EXCLUSIVE lock that
    serialises writers (so the head it reads cannot be stale)."""
    seen: list[set[str]] = []
    original = ChainedPostgresApplicationRecorder._fetch_ids_after_insert_events

    def spying(self: Any, curs: Any, stored_events: Any, **kwargs: Any) -> Any:
        ids = original(self, curs, stored_events, **kwargs)
        curs.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND granted "
            "AND relation = %s::regclass",
            (EVENTS,),
        )
        seen.append({r["mode"] for r in curs.fetchall()})
        return ids

    monkeypatch.setattr(
        ChainedPostgresApplicationRecorder, "_fetch_ids_after_insert_events", spying
    )
    _add(app, 2)
    assert seen and all("ExclusiveLock" in modes for modes in seen), seen


def test_the_library_insert_function_is_refused_because_it_bypasses_the_chain(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    from ledger.store.config_postgres import postgres_env
    from ledger.store.database_url import PostgresLocation, parse

    location = parse(pg_url)
    assert isinstance(location, PostgresLocation)
    env = {**postgres_env(location, create_tables=True), "POSTGRES_ENABLE_DB_FUNCTIONS": "yes"}
    with pytest.raises(Exception, match="bypass the hash chain"):
        SecretsLedger(env=env, home=tmp_path, backend=MemoryKeyring())
