"""Hostile values files, time texts and export bundles: the CI gate for the atheris targets.

The same contracts (tests/hostile.py) are fuzzed by tests/fuzz/fuzz_{values_file,as_of,bundle}.py
with atheris; here hypothesis drives them on every run, and the inputs the fuzzing found are
pinned as plain regression tests.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.values_file import load_values
from ledger.address import SecretAddress
from ledger.errors import ValidationFailed
from projections.compliance import parse_as_of
from projections.timefmt import parse_when
from tests.hostile import (
    VALUES_SUFFIXES,
    BundleFixture,
    check_bundle,
    check_time_text,
    check_values_file,
)

# -- values files ---------------------------------------------------------------------------

secret_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=24)
segments = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=12)
keys = st.one_of(
    st.tuples(segments, segments, segments).map("/".join),  # an address
    st.text(max_size=30),  # anything
)


def _document(suffix: str, pairs: list[tuple[str, str]]) -> bytes:
    if suffix == ".json":
        return json.dumps(dict(pairs)).encode()
    if suffix == ".toml":
        return "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in pairs).encode()
    return "".join(f"{k}={v}\n" for k, v in pairs).encode()


@st.composite
def values_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(VALUES_SUFFIXES))
    pairs = draw(st.lists(st.tuples(keys, secret_values.map("val-".__add__)), max_size=5))
    data = bytearray(_document(suffix, pairs))
    for _ in range(draw(st.integers(0, 3))):  # then damage it anywhere
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "flip", "truncate"]))
        if kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        else:
            del data[at:]
    return suffix, bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=values_files())
def test_a_damaged_values_file_is_only_ever_a_values_file_error(
    case: tuple[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    suffix, data = case
    check_values_file(tmp_path_factory.mktemp("vf") / f"new{suffix}", data)


@settings(max_examples=200, deadline=None)
@given(
    suffix=st.sampled_from(VALUES_SUFFIXES),
    bytes_=st.binary(max_size=200),
)
def test_arbitrary_bytes_as_a_values_file(
    suffix: str, bytes_: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    check_values_file(tmp_path_factory.mktemp("vf") / f"new{suffix}", bytes_)


@settings(max_examples=100, deadline=None)
@given(
    suffix=st.sampled_from(VALUES_SUFFIXES),
    value=secret_values.map("val-".__add__),
    fault=st.sampled_from(["bad-address", "twice", "not-text", "deep", "no-equals", "quote"]),
)
def test_a_rejected_values_file_never_quotes_a_value(
    suffix: str, value: str, fault: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Structurally wrong files whose value is known: the message names the file and the key
    or line, never the value."""
    good = "production/nexus/mcp.bun.apiKey"
    if suffix == ".env":
        data = {
            "bad-address": f"nexus.apiKey={value}\n",
            "twice": f"{good}={value}\n{good}={value}x\n",
            "not-text": f"{value}\n",
            "deep": f"{good}={value}\n{value}\n",
            "no-equals": f"export {value}\n",
            "quote": f'{good}="{value}\n',
        }[fault]
    elif suffix == ".json":
        data = {
            "bad-address": json.dumps({"nexus.apiKey": value}),
            "twice": f'{{"{good}": "{value}", "{good}": "{value}"}}',
            "not-text": json.dumps({good: [value]}),
            "deep": json.dumps(
                {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": value}}}}}}}}}
            ),
            "no-equals": json.dumps([value]),
            "quote": f'{{"{good}": "{value}',
        }[fault]
    else:
        data = {
            "bad-address": f'"nexus.apiKey" = "{value}"\n',
            "twice": f'"{good}" = "{value}"\n"{good}" = "{value}"\n',
            "not-text": f'"{good}" = ["{value}"]\n',
            "deep": "[a.b.c.d.e.f.g.h]\n" + f'i = "{value}"\n',
            "no-equals": f'"{good}" "{value}"\n',
            "quote": f'"{good}" = "{value}\n',
        }[fault]
    path = tmp_path_factory.mktemp("vf") / f"new{suffix}"
    check_values_file(path, data.encode(), secrets=(value,))
    with pytest.raises(ValidationFailed):
        load_values(path)


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".json", "[" * 5000),
        (".json", '{"a":' * 5000),
        (".toml", "a=" + "[" * 5000),
        (".toml", "a=" + "{b=" * 3000),
        (".json", json.dumps({"x": {"y": {"z": {"w": {"v": {"u": {"t": {"s": {"r": "1"}}}}}}}}})),
    ],
)
def test_deeply_nested_values_files_are_refused_cleanly(
    suffix: str, text: str, tmp_path: Path
) -> None:
    """Found by fuzzing: these raised RecursionError (an internal error in the CLI)."""
    path = tmp_path / f"new{suffix}"
    path.write_text(text)
    with pytest.raises(ValidationFailed, match="nested") as caught:
        load_values(path)
    assert caught.value.rule == "values-file"


def test_a_nested_values_file_still_works(tmp_path: Path) -> None:
    path = tmp_path / "new.toml"
    path.write_text('[production.nexus]\n"mcp.bun.apiKey" = "v1"\n')
    assert load_values(path) == {SecretAddress("production", "nexus", "mcp.bun.apiKey"): "v1"}


def test_a_deeply_nested_catalogue_is_a_catalogue_error(tmp_path: Path) -> None:
    from ledger.rotation.catalogue import load_catalogue

    path = tmp_path / "catalogue.toml"
    path.write_text("a=" + "[" * 5000)
    with pytest.raises(ValidationFailed, match="nested too deeply") as caught:
        load_catalogue(path)
    assert caught.value.rule == "catalogue"


# -- --as-of and friends ------------------------------------------------------------------------

offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


@st.composite
def time_texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["iso", "date", "ago", "text", "edge"]))
    if kind == "iso":
        moment = draw(instants)
        zone = draw(st.none() | offsets)
        spec = draw(st.sampled_from(["hours", "minutes", "seconds", "milliseconds", "auto"]))
        text = moment.replace(tzinfo=zone).isoformat(timespec=spec)
        return text.replace("+00:00", draw(st.sampled_from(["+00:00", "Z", "z"])))
    if kind == "date":
        return draw(instants).date().isoformat()
    if kind == "ago":
        return f"{draw(st.integers(0, 9_999_999))}{draw(st.sampled_from('smhdw'))}"
    if kind == "edge":
        return draw(
            st.sampled_from(
                ["9999-12-31T23:59", "9999-12-31T23:59:59.999", "0001-01-01T00:00+01:00"]
            )
        ) + draw(st.sampled_from(["", "Z", "-01:00", "+14:00"]))
    return draw(st.text(max_size=60))


@settings(max_examples=500, deadline=None)
@given(text=time_texts())
def test_time_texts_give_an_instant_or_the_documented_error(text: str) -> None:
    check_time_text(text)


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59", "9999-12-31T23:59-01:00", "0001-01-01T00:00+01:00"]
)
def test_as_of_at_the_ends_of_time_is_valid_or_refused(text: str) -> None:
    """Found by fuzzing: these raised OverflowError (an internal error in `rotate-status`)."""
    try:
        when = parse_as_of(text)
    except ValidationFailed as exc:
        assert exc.rule == "as-of"
        return
    assert when.astimezone(UTC).year == 9999


@pytest.mark.parametrize("text", ["9999999d", "9999999w", "0001-01-01T00:00:00+01:00"])
def test_when_far_in_the_past_is_a_readable_error(text: str) -> None:
    """Found by fuzzing: `audit log --since 9999999d` was an internal error (OverflowError)."""
    with pytest.raises(ValueError, match=r"too far|not a time"):
        parse_when(text)


# -- export bundles -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle() -> Iterator[BundleFixture]:
    made = BundleFixture()
    yield made
    made.close()


def test_the_untouched_bundle_verifies(bundle: BundleFixture) -> None:
    assert check_bundle(bundle).code == 0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(note=st.binary(max_size=120) | st.text(max_size=80).map(str.encode), pem=st.booleans())
def test_a_damaged_checkpoint_json_or_pubkey(bundle: BundleFixture, note: bytes, pem: bool) -> None:
    result = check_bundle(bundle, note=note, pem=note if pem else None)
    if not pem:
        assert result.code in (0, 6)  # a note that is no witness is ignored, a wrong one fails


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_damaged_ledger_sqlite(bundle: BundleFixture, data: st.DataObject) -> None:
    raw = bytearray(bundle.sqlite)
    for _ in range(data.draw(st.integers(1, 8), label="patches")):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="truncate"):
        del raw[data.draw(st.integers(0, len(raw))) :]
    check_bundle(bundle, sqlite_bytes=bytes(raw))


def _edited(bundle: BundleFixture, tmp: Path, sql: str) -> bytes:
    path = tmp / "edited.sqlite"
    path.write_bytes(bundle.sqlite)
    with sqlite3.connect(path) as db:
        db.execute(sql)
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("what", "sql"),
    [
        ("a link stored as text", "UPDATE event_chain SET link = 'text' WHERE notification_id = 3"),
        (
            "a topic that is not UTF-8",
            "UPDATE stored_events SET topic = CAST(x'6c65ff6765' AS TEXT) WHERE rowid = 2",
        ),
        (
            "a topic stored as a BLOB",
            "UPDATE stored_events SET topic = CAST(topic AS BLOB) WHERE rowid = 3",
        ),
        ("a topic stored as a number", "UPDATE stored_events SET topic = 42 WHERE rowid = 3"),
    ],
)
def test_undecodable_rows_in_a_bundle_are_an_integrity_failure(
    bundle: BundleFixture, tmp_path: Path, what: str, sql: str
) -> None:
    """Found by fuzzing: a text link was an internal error (TypeError), an undecodable topic
    'the event store failed' (exit 1)."""
    result = check_bundle(bundle, sqlite_bytes=_edited(bundle, tmp_path, sql))
    assert result.code == 6, (what, result.stderr)


def test_a_schema_name_that_is_not_utf8_is_an_integrity_failure(bundle: BundleFixture) -> None:
    """Found by CI's random examples: one byte of a table's name in the schema set to 0x80
    made SQLite's own error message (which quotes the name) undecodable, and `audit verify
    --bundle` an internal error."""
    raw = bytearray(bundle.sqlite)
    at = raw.index(b"tablestored_eventsstored_events") + len(b"tablestored_e")
    raw[at] = 0x80
    result = check_bundle(bundle, sqlite_bytes=bytes(raw))
    assert result.code == 6, result.stderr
    assert "damaged" in result.stderr


@pytest.mark.parametrize("note", [b"\xff\xfe", b'{"position": 1e999}', b"[]"])
def test_an_unreadable_checkpoint_json_is_no_witness(bundle: BundleFixture, note: bytes) -> None:
    """Found by fuzzing: non-UTF-8 and 1e999 were internal errors."""
    assert check_bundle(bundle, note=note).code == 0


def test_a_bad_pubkey_pem_is_a_usage_error(bundle: BundleFixture) -> None:
    result = check_bundle(
        bundle, pem=b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    assert result.code == 2 and "pubkey.pem" in result.stderr
