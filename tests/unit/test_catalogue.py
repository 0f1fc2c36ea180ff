"""The catalogue of known keys: built-ins, lookup, order, and team TOML files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ledger.errors import ValidationFailed
from ledger.rotation.catalogue import (
    BUILTIN_SPECS,
    GENERATED_FORMATS,
    MAX_CATALOGUE_BYTES,
    ROTATION_KINDS,
    Catalogue,
    KeySpec,
    builtin_catalogue,
    load_catalogue,
    lookup,
)
from ledger.validation import FORMAT_NAMES

EXPECTED = [
    ("nexus", "mcp.bun.apiKey", "api_key", "external"),
    ("nexus", "mcp.openai.apiKey", "openai_key", "external"),
    ("nexus", "mcp.anthropic.apiKey", "anthropic_key", "external"),
    ("telegram", "telegram.bot.token", "telegram_bot_token", "external"),
    ("telegram", "telegram.chat.id", "telegram_chat_id", "none"),
    ("github", "github.token", "github_token", "external"),
    ("github", "github.app.id", "positive_integer", "none"),
    ("database", "database.url", "database_url", "external"),
    ("database", "database.password", "generated_password", "generated"),
]


def test_builtins_match_the_operating_guide_in_order() -> None:
    got = [(s.service, s.name, s.format, s.rotation) for s in builtin_catalogue()]
    assert got == EXPECTED
    assert list(load_catalogue(None)) == list(BUILTIN_SPECS)
    assert len(builtin_catalogue()) == 9


def test_builtin_defaults_and_descriptions() -> None:
    for spec in BUILTIN_SPECS:
        assert spec.rotation_days == 90
        assert spec.warning_days == 14
        assert spec.description
        assert spec.format in FORMAT_NAMES
        assert spec.rotation in ROTATION_KINDS


def test_lookup() -> None:
    spec = lookup("github", "github.token")
    assert spec is not None and spec.format == "github_token"
    assert lookup("github", "nope") is None
    assert lookup("nexus", "github.token") is None
    assert builtin_catalogue().lookup("database", "database.password") == BUILTIN_SPECS[-1]
    assert ("telegram", "telegram.chat.id") in builtin_catalogue()
    assert builtin_catalogue().services() == ("nexus", "telegram", "github", "database")


def test_iteration_is_stable() -> None:
    assert list(builtin_catalogue()) == list(builtin_catalogue())


def test_keyspec_is_frozen_and_hashable() -> None:
    spec = BUILTIN_SPECS[0]
    with pytest.raises(ValidationError):
        spec.rotation_days = 5
    assert len({*BUILTIN_SPECS, *BUILTIN_SPECS}) == len(BUILTIN_SPECS)


@pytest.mark.parametrize(
    "fields",
    [
        {"format": "nope"},
        {"rotation": "weekly"},
        {"rotation_days": 0},
        {"warning_days": -1},
        {"rotation_days": 10, "warning_days": 10},
        {"rotation": "generated", "format": "text"},
        {"service": "Bad"},
        {"name": ".bad"},
        {"rotation_days": True},
    ],
)
def test_keyspec_rejects_bad_fields(fields: dict[str, object]) -> None:
    base: dict[str, object] = {
        "service": "team",
        "name": "key",
        "format": "text",
        "rotation": "external",
    }
    with pytest.raises(ValidationError):
        KeySpec(**{**base, **fields})  # type: ignore[arg-type]


def test_generated_formats_are_known() -> None:
    assert GENERATED_FORMATS <= FORMAT_NAMES


# ----------------------------------------------------------------------------------------------
# TOML files
# ----------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "catalogue.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_file_overrides_a_builtin_in_place_and_adds_new_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[key]]
        service = "payments"
        name = "stripe.apiKey"
        format = "text"
        rotation = "external"
        rotation_days = 30
        warning_days = 7
        description = "Stripe secret key"

        [[key]]
        service = "github"
        name = "github.token"
        format = "text"
        rotation = "external"
        rotation_days = 45

        [[key]]
        service = "payments"
        name = "webhook.secret"
        format = "generated_password"
        rotation = "generated"
        """,
    )
    catalogue = load_catalogue(path)
    keys = [spec.key for spec in catalogue]
    builtin_keys = [spec.key for spec in BUILTIN_SPECS]
    assert keys == [
        *builtin_keys,
        ("payments", "stripe.apiKey"),
        ("payments", "webhook.secret"),
    ]
    overridden = catalogue.lookup("github", "github.token")
    assert overridden is not None
    assert (overridden.format, overridden.rotation_days, overridden.warning_days) == (
        "text",
        45,
        14,
    )
    assert overridden.description == ""  # a full replacement, not a merge
    stripe = catalogue.lookup("payments", "stripe.apiKey")
    assert stripe == KeySpec(
        service="payments",
        name="stripe.apiKey",
        format="text",
        rotation="external",
        rotation_days=30,
        warning_days=7,
        description="Stripe secret key",
    )
    # Built-ins themselves are untouched.
    builtin = lookup("github", "github.token")
    assert builtin is not None and builtin.format == "github_token"
    assert len(catalogue) == len(BUILTIN_SPECS) + 2
    assert catalogue.services()[-1] == "payments"


def test_empty_file_is_the_builtin_catalogue(tmp_path: Path) -> None:
    catalogue = load_catalogue(write(tmp_path, "# nothing here\n"))
    assert list(catalogue) == list(BUILTIN_SPECS)


def test_path_given_as_string_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert len(load_catalogue(str(path))) == len(BUILTIN_SPECS)  # type: ignore[arg-type]


ENTRY = """
[[key]]
service = "payments"
name = "stripe.apiKey"
format = "text"
rotation = "external"
"""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[key]\nservice = ", "not valid TOML"),
        ("key = 'x' = 'y'", "not valid TOML"),
        (ENTRY.replace('"text"', '"texty"'), "unknown format 'texty'"),
        (ENTRY.replace('"external"', '"weekly"'), "bad rotation kind 'weekly'"),
        (ENTRY + "rotation_days = 0\n", "rotation_days must be positive"),
        (ENTRY + "rotation_days = -30\n", "rotation_days must be positive"),
        (ENTRY + "warning_days = 0\n", "warning_days must be positive"),
        (ENTRY + "rotation_days = 99999\n", "at most 3650"),
        (ENTRY + "rotation_days = 1.5\n", "whole number of days"),
        (ENTRY + "rotation_days = true\n", "whole number of days"),
        (ENTRY + 'rotation_days = "90"\n', "whole number of days"),
        (ENTRY + "rotation_days = 10\nwarning_days = 10\n", "less than rotation_days"),
        (ENTRY + "rotation_days = 7\n", "less than rotation_days"),
        (ENTRY.replace('"external"', '"generated"'), "can generate"),
        (ENTRY.replace('format = "text"\n', ""), "missing required field(s) format"),
        (ENTRY + "enviroment = 'prod'\n", "unknown field(s) 'enviroment'"),
        (ENTRY + "environment = 'prod'\n", "unknown field(s) 'environment'"),
        (ENTRY.replace('"payments"', '"Payments"'), "service 'Payments' does not match"),
        (ENTRY.replace('"stripe.apiKey"', '"stripe key"'), "name 'stripe key' does not match"),
        (ENTRY.replace('"stripe.apiKey"', '"a\\u0000b"'), "control or invisible"),
        (ENTRY.replace('"stripe.apiKey"', "42"), "name must be a string"),
        (ENTRY + ENTRY, "duplicates entry 1"),
        ("[[keys]]\nservice = 'x'\n", "unknown top-level key(s) 'keys'"),
        ("key = 'x'\n", "array of tables"),
        ("key = ['x']\n", "entry 1 is not a table"),
    ],
)
def test_bad_files_raise_validation_failed_naming_file_and_entry(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text, "team-catalogue.toml")
    with pytest.raises(ValidationFailed) as info:
        load_catalogue(path)
    assert info.value.rule == "catalogue"
    message = str(info.value)
    assert "team-catalogue.toml" in message
    assert fragment in message
    if text.lstrip().startswith('[[key]]\nservice = "') or text.startswith("\n[[key]]"):
        assert "[[key]] entry 1" in message or "[[key]] entry 2" in message


def test_error_names_the_offending_entry(tmp_path: Path) -> None:
    second = ENTRY.replace("stripe.apiKey", "other.key").replace('"text"', '"nope"')
    path = write(tmp_path, ENTRY + second)
    with pytest.raises(ValidationFailed) as info:
        load_catalogue(path)
    assert "entry 2 ('payments', 'other.key')" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        load_catalogue(tmp_path / "absent.toml")
    assert info.value.rule == "catalogue"
    assert "absent.toml" in str(info.value)
    assert "does not exist" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as info:
        load_catalogue(tmp_path)
    assert info.value.rule == "catalogue"
    assert "cannot be read" in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[key]]\nservice = "caf\xe9"\n')
    with pytest.raises(ValidationFailed) as info:
        load_catalogue(path)
    assert info.value.rule == "catalogue"
    assert "latin1.toml" in str(info.value)


def test_catalogue_constructor_keeps_first_position_for_replacements() -> None:
    first, second, *_ = BUILTIN_SPECS
    replacement = first.model_copy(update={"description": "replaced"})
    catalogue = Catalogue([first, second, replacement])
    assert [s.key for s in catalogue] == [first.key, second.key]
    assert catalogue.lookup(*first.key) == replacement


# -- issue 17: a catalogue is read only up to a fixed size -------------------------------

VALID_ENTRY = """
[[key]]
service = "payments"
name = "stripe.apiKey"
format = "text"
rotation = "external"
rotation_days = 30
"""


def test_a_catalogue_just_under_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "team.toml"
    text = VALID_ENTRY
    path.write_text(text + "#" * (MAX_CATALOGUE_BYTES - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == MAX_CATALOGUE_BYTES
    assert len(load_catalogue(path)) > len(BUILTIN_SPECS)
