"""`secrets metrics` through the real CLI: a live exporter scraped over HTTP, the textfile
writer, and the structured log, against a real SQLite ledger on each real vault.

promtool comes from Debian's `prometheus` package; without it these tests fail, never skip.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from ledger import context
from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def parse(text: str, openmetrics: bool = False) -> tuple[Samples, dict[str, str]]:
    """Samples by (name, labels), and the type of every family."""
    samples: Samples = {}
    types: dict[str, str] = {}
    parser = openmetrics_families if openmetrics else text_string_to_metric_families
    for family in parser(text):
        types[family.name] = family.type
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {lbl: v for (n, lbl), v in samples.items() if n == name}


def api_key() -> str:
    return "sk-" + secrets.token_hex(20)


def test_collector_in_process_buckets_unexpected_labels(tmp_path: Path) -> None:
    """Rows no CLI path can make today: the collector still keeps its label sets bounded."""
    from prometheus_client import generate_latest

    from ledger.records import Denial, Rejection
    from projections.metrics import ledger_registry

    app = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    assert app.initialize("alice") is not None
    with context.acting_as("alice"):
        app.save(Rejection("production", "nexus", "bad name\n", "name"))
        app.save(Rejection("Prod", "nexus", "ok", "name"))
        app.save(Denial("grant", "role analyst may not grant", None, None, None))
    with context.acting_as("Not An Operator"):
        app.save(Denial("get", "forged", "production", "nexus", "ok"))
    samples, _ = parse(generate_latest(ledger_registry(app)).decode())
    assert series(samples, "hyperbun_secret_access_denied_total") == {
        labels(operator="alice", operation="grant", environment="*"): 1,
        labels(operator="<invalid>", operation="get", environment="production"): 1,
    }
    assert series(samples, "hyperbun_secret_validation_errors_total") == {
        labels(environment="production", service="nexus", name="<invalid>"): 1,
        labels(environment="<invalid>", service="nexus", name="ok"): 1,
    }
    assert (
        series(samples, "hyperbun_secret_access_total")[
            labels(result="denied", operation="grant", environment="*")
        ]
        == 1
    )


@pytest.mark.parametrize(
    ("service", "name", "days", "overdue"),
    [
        ("nexus", "mcp.bun.apiKey", 89, False),
        ("nexus", "mcp.bun.apiKey", 90, True),
        ("payments", "uncatalogued.key", 90, True),
        ("telegram", "telegram.chat.id", 4000, False),
        ("team", "short.lived", 30, True),
        ("team", "short.lived", 29, False),
    ],
)
def test_rotation_overdue_follows_the_catalogue(
    service: str, name: str, days: int, overdue: bool
) -> None:
    from ledger.rotation.catalogue import BUILTIN_SPECS, Catalogue, KeySpec
    from projections.metrics import rotation_overdue

    team = KeySpec(
        service="team",
        name="short.lived",
        format="text",
        rotation="external",
        rotation_days=30,
        warning_days=7,
    )
    catalogue = Catalogue((*BUILTIN_SPECS, team))
    now = datetime(2026, 6, 1, tzinfo=UTC)
    written = now - timedelta(days=days)
    assert rotation_overdue(service, name, written, now, catalogue) is overdue

    # The same verdict as the rotation policy's own assessment of the aggregate.
    from ledger.rotation.runs import OVERDUE, assess
    from ledger.secret import Secret

    with context.frozen_clock(lambda: written):
        secret = Secret("production", service, name)
        secret.add_version("f" * 64, "manual", "host")
    assert (assess(secret, catalogue.lookup(service, name), now).status == OVERDUE) is overdue


def test_a_scrape_waits_for_a_rebuild_instead_of_reporting_half_built_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from projections.metrics import read_snapshot
    from projections.views import Views

    app = open_ledger(tmp_path, create=True, backend=MemoryKeyring())
    issued = app.initialize("alice")
    assert issued is not None
    for _ in range(3):
        app.write(Credential(token=issued.token), SecretAddress("prod", "nexus", "k"), api_key())
        app.read(Credential(token=issued.token), SecretAddress("prod", "nexus", "k"))
    scraper, rebuilder = Views(app), Views(app)
    complete = read_snapshot(scraper)
    assert complete.access[("success", "get", "prod")] == 3

    # Another process has emptied the views (a rebuild's first transaction) and this scrape's
    # own catch-up does not see it yet: the snapshot must be refused, not served.
    with rebuilder._write() as cur:
        for table in ("tracking", "secrets_view", "version_rotations", "audit_view"):
            cur.execute(f"DELETE FROM {table}")  # noqa: S608 (constant names)
    real_catch_up = scraper.catch_up
    calls: list[int] = []

    def late_catch_up() -> int:
        calls.append(1)
        return 0 if len(calls) == 1 else real_catch_up()

    monkeypatch.setattr(scraper, "catch_up", late_catch_up)
    assert read_snapshot(scraper) == complete
    assert len(calls) == 2
