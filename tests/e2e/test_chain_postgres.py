"""The hash chain on a real PostgreSQL server: written with the events under the insert lock,
verified end to end, tamper-evident, indifferent to sequence gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.application import SecretsLedger
from ledger.vault.memory import MemoryKeyring
from tests.pg_fixtures import pg, pg_url  # noqa: F401  (fixtures)


def test_the_library_insert_function_is_refused_because_it_bypasses_the_chain(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    from ledger.config_postgres import postgres_env
    from ledger.database_url import PostgresLocation, parse

    location = parse(pg_url)
    assert isinstance(location, PostgresLocation)
    env = {**postgres_env(location, create_tables=True), "POSTGRES_ENABLE_DB_FUNCTIONS": "yes"}
    with pytest.raises(Exception, match="bypass the hash chain"):
        SecretsLedger(env=env, home=tmp_path, backend=MemoryKeyring())
