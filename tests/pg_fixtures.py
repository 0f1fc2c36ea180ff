"""PostgreSQL fixtures: import them into a test module (`from tests.pg_fixtures import ...`).

`pg` is one password-authenticated throwaway cluster per test process (tests/pg_cluster.py);
`pg_url` is a fresh database on it for one test, dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg_cluster import PgCluster, shared_cluster


@pytest.fixture(scope="session")
def pg() -> PgCluster:
    return shared_cluster()


@pytest.fixture
def pg_url(pg: PgCluster) -> Iterator[str]:
    name = pg.create_database()
    yield pg.url(name)
    pg.drop_database(name)
