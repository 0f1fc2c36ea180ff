"""The compliance projection over the ledger's history, and the values-file reader."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.values_file import load_values
from ledger import context
from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.errors import LedgerError, ValidationFailed
from ledger.rotation.catalogue import load_catalogue
from ledger.rotation.runs import assess
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring
from projections.compliance import compliance, parse_as_of

BUN = SecretAddress("production", "nexus", "mcp.bun.apiKey")
CHAT = SecretAddress("staging", "telegram", "telegram.chat.id")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2026-03-01T12", datetime(2026, 3, 1, 12, 59, 59, 999999, tzinfo=UTC)),
        ("2026-03-01T12:00", datetime(2026, 3, 1, 12, 0, 59, 999999, tzinfo=UTC)),
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, 0, 0, 999999, tzinfo=UTC)),
        ("2026-03-01T12:00:00.123Z", datetime(2026, 3, 1, 12, 0, 0, 123999, tzinfo=UTC)),
        ("2026-03-01T12:00:00.5z", datetime(2026, 3, 1, 12, 0, 0, 599999, tzinfo=UTC)),
        ("2026-03-01T12:00:00.000001", datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC)),
        (
            "2026-03-01T14:00:00+02:00",
            datetime(2026, 3, 1, 14, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-03-01 12:00", datetime(2026, 3, 1, 12, 0, 59, 999999, tzinfo=UTC)),
    ],
)
def test_as_of_accepts_iso_dates_and_datetimes(text: str, expected: datetime) -> None:
    assert parse_as_of(text) == expected


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-13-01", "2026-02-30", "01/03/2026", "2026-03-01T25:00"]
)
def test_as_of_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_as_of(text)
    assert refused.value.rule == "as-of"


# -- values files ------------------------------------------------------------------------------


def test_values_files_in_three_formats(tmp_path: Path) -> None:
    toml = tmp_path / "v.toml"
    toml.write_text(
        '"production/nexus/mcp.bun.apiKey" = "sk-1"\n'
        "[staging.database]\n"
        '"database.password" = "p#w=\\"x"\n'
    )
    assert load_values(toml) == {
        BUN: "sk-1",
        SecretAddress("staging", "database", "database.password"): 'p#w="x',
    }
    js = tmp_path / "v.json"
    js.write_text('{"production": {"nexus": {"mcp.bun.apiKey": "sk-2"}}}')
    assert load_values(js) == {BUN: "sk-2"}
    env = tmp_path / "v.env"
    env.write_text(
        "# new values\n"
        "export production/nexus/mcp.bun.apiKey=sk-3#kept # a comment\n"
        "production/database/database.password='single $quoted'\n"
        'staging/telegram/telegram.chat.id="-100\\"5"\n'
    )
    assert load_values(env) == {
        BUN: "sk-3#kept",
        SecretAddress("production", "database", "database.password"): "single $quoted",
        CHAT: '-100"5',
    }


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("v.toml", '"production/nexus" = "TOPSECRET1"\n', "not an address"),
        ("v.toml", '"production/nexus/x" = 5\n', "must be a string"),
        ("v.toml", "production = TOPSECRET1\n", "not valid TOML"),
        ("v.json", '{"production/nexus/x": "TOPSECRET1", "production/nexus/x": "b"}', "twice"),
        ("v.json", '["TOPSECRET1"]', "one object"),
        ("v.json", '{"a": "TOPSECRET1"', "not valid JSON"),
        ("v.env", "production/nexus/x TOPSECRET1\n", "line 1"),
        ("v.env", 'production/nexus/x="TOPSECRET1\n', "unterminated"),
        ("v.env", "a/b/c=TOPSECRET1\na/b/c=TOPSECRET2\n", "twice"),
        ("v.env", "Prod/nexus/x=TOPSECRET1\n", "environment"),
    ],
)
def test_bad_values_files_never_show_a_value(
    tmp_path: Path, name: str, content: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValidationFailed) as refused:
        load_values(path)
    assert problem in str(refused.value)
    assert "TOPSECRET" not in str(refused.value)
    assert refused.value.__context__ is None or "TOPSECRET" not in str(refused.value.__context__)


_ADDRESSES = [BUN, CHAT, SecretAddress("staging", "github", "token")]
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["set", "same", "rollback", "delete", "restore", "destroy"]),
        st.integers(0, 2),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=16,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, hours=st.integers(1, 24 * 120))
def test_compliance_equals_the_aggregates_assessment(ops: list[Any], hours: int) -> None:
    """`compliance()` folds secrets with the summary fold shared with replay: its assessment of
    every secret equals the one made from the `Secret` aggregate itself (rollbacks and sets of
    the value in use keep the value's age; deletes, restores and destroys)."""
    home = Path(tempfile.mkdtemp())
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    try:
        with context.frozen_clock(lambda: clock[0]):
            ledger = open_ledger(home, create=True, backend=MemoryKeyring())
            ledger.checkpoint_every = 0
            cred = Credential(token=ledger.initialize("alice").token)
            for kind, index, arg in ops:
                clock[0] += timedelta(days=arg * 7, seconds=index)
                address = _ADDRESSES[index]
                try:
                    if kind in ("set", "same"):
                        value = "value-same-xxxxxxxx" if kind == "same" else f"value-{arg}-xxxxxx"
                        ledger.write(cred, address, value, spec_check=lambda _v: None)
                    elif kind == "rollback":
                        ledger.rollback(cred, address, arg)
                    elif kind == "delete":
                        ledger.delete(cred, address)
                    elif kind == "restore":
                        ledger.restore(cred, address)
                    else:
                        ledger.destroy(cred, address)
                except LedgerError:
                    pass
            as_of = clock[0] + timedelta(hours=hours)
            catalogue = load_catalogue(None)
            report = compliance(ledger, catalogue, as_of)
            expected = []
            for address in _ADDRESSES:
                secret = ledger.uow.load_secret(address)
                if secret is None or not secret.versions or secret.deleted:
                    continue
                spec = catalogue.lookup(address.service, address.name)
                expected.append(assess(secret, spec, as_of, None))
            assert report.secrets == sorted(expected, key=lambda a: a.address)
    finally:
        shutil.rmtree(home, ignore_errors=True)
