"""The catalogue of known keys: which (service, name) pairs exist, their value format and rotation.

Catalogue entries are not environment-specific: ``nexus/mcp.openai.apiKey`` has the same format
and rotation policy in every environment.

Built-in entries (the operating guide's "Services & Keys"):

========  ====================  ==================  ==========
service   name                  format              rotation
========  ====================  ==================  ==========
nexus     mcp.bun.apiKey        api_key             external
nexus     mcp.openai.apiKey     openai_key          external
nexus     mcp.anthropic.apiKey  anthropic_key       external
telegram  telegram.bot.token    telegram_bot_token  external
telegram  telegram.chat.id      telegram_chat_id    none
github    github.token          github_token        external
github    github.app.id         positive_integer    none
database  database.url          database_url        external
database  database.password     generated_password  generated
========  ====================  ==================  ==========

Format rules and their sources are documented in `ledger.validation`.

Rotation kinds: ``external`` (a person obtains the new value from the provider), ``generated``
(the ledger can make a new value itself, see `ledger.rotation.generate`) and ``none`` (an
identifier, not
a credential: never due for rotation). ``rotation_days`` (default 90, the compliance period) and
``warning_days`` (default 14) must be positive, at most 3650, and ``warning_days`` must be less
than ``rotation_days``.

Team catalogue file (TOML)
==========================
Teams add or override keys with a TOML file of ``[[key]]`` tables::

    [[key]]
    service = "payments"          # required, service name pattern
    name = "stripe.apiKey"        # required, key name pattern
    format = "text"               # required, one of ledger.validation.FORMAT_NAMES
    rotation = "external"         # required: external | generated | none
    rotation_days = 30            # optional, default 90
    warning_days = 7              # optional, default 14
    description = "Stripe key"    # optional, default ""

A file entry with the same (service, name) as a built-in replaces it entirely (fields it leaves
out take the defaults above, not the built-in's values). Any other top-level key, unknown field,
wrong type, duplicate (service, name) in the file, unknown format, bad rotation kind, bad day
count, or ``rotation = "generated"`` with a format the ledger cannot generate raises
``ValidationFailed(rule="catalogue")`` naming the file and the entry.

Iteration order is stable: built-ins in the order above (an override keeps its built-in's place),
then the file's new keys in file order.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ledger.errors import ValidationFailed
from ledger.validation import FORMAT_NAMES, validate_name, validate_service

__all__ = [
    "BUILTIN_SPECS",
    "GENERATED_FORMATS",
    "ROTATION_KINDS",
    "Catalogue",
    "KeySpec",
    "RotationKind",
    "builtin_catalogue",
    "load_catalogue",
    "lookup",
]

RotationKind = Literal["external", "generated", "none"]
ROTATION_KINDS: Final[tuple[str, ...]] = get_args(RotationKind)

#: Formats `ledger.rotation.generate.generate_value` can produce; only these may use rotation
# "generated".
GENERATED_FORMATS: Final[frozenset[str]] = frozenset({"generated_password"})

MAX_DAYS: Final = 3650
_RULE: Final = "catalogue"


class KeySpec(BaseModel):
    """One known key: what its value looks like and how it is rotated."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    service: str
    name: str
    format: str
    rotation: RotationKind
    rotation_days: int = 90
    warning_days: int = 14
    description: str = ""

    @field_validator("service")
    @classmethod
    def _service_pattern(cls, service: str) -> str:
        try:
            validate_service(service)
        except ValidationFailed as exc:
            raise ValueError(str(exc)) from None
        return service

    @field_validator("name")
    @classmethod
    def _name_pattern(cls, name: str) -> str:
        try:
            validate_name(name)
        except ValidationFailed as exc:
            raise ValueError(str(exc)) from None
        return name

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        if fmt not in FORMAT_NAMES:
            raise ValueError(f"unknown format; known formats: {', '.join(sorted(FORMAT_NAMES))}")
        return fmt

    @field_validator("rotation_days", "warning_days")
    @classmethod
    def _days_range(cls, days: int) -> int:
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"must be a whole number of days from 1 to {MAX_DAYS}")
        return days

    @model_validator(mode="after")
    def _consistent(self) -> KeySpec:
        if self.warning_days >= self.rotation_days:
            raise ValueError("warning_days must be less than rotation_days")
        if self.rotation == "generated" and self.format not in GENERATED_FORMATS:
            raise ValueError(
                "rotation 'generated' needs a format the ledger can generate: "
                + ", ".join(sorted(GENERATED_FORMATS))
            )
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.name)


BUILTIN_SPECS: Final[tuple[KeySpec, ...]] = (
    KeySpec(
        service="nexus",
        name="mcp.bun.apiKey",
        format="api_key",
        rotation="external",
        description="Bun API key for MCP operations",
    ),
    KeySpec(
        service="nexus",
        name="mcp.openai.apiKey",
        format="openai_key",
        rotation="external",
        description="OpenAI API key",
    ),
    KeySpec(
        service="nexus",
        name="mcp.anthropic.apiKey",
        format="anthropic_key",
        rotation="external",
        description="Anthropic API key",
    ),
    KeySpec(
        service="telegram",
        name="telegram.bot.token",
        format="telegram_bot_token",
        rotation="external",
        description="Telegram bot token",
    ),
    KeySpec(
        service="telegram",
        name="telegram.chat.id",
        format="telegram_chat_id",
        rotation="none",
        description="Default Telegram chat ID",
    ),
    KeySpec(
        service="github",
        name="github.token",
        format="github_token",
        rotation="external",
        description="GitHub personal access token",
    ),
    KeySpec(
        service="github",
        name="github.app.id",
        format="positive_integer",
        rotation="none",
        description="GitHub App ID",
    ),
    KeySpec(
        service="database",
        name="database.url",
        format="database_url",
        rotation="external",
        description="Database connection URL",
    ),
    KeySpec(
        service="database",
        name="database.password",
        format="generated_password",
        rotation="generated",
        description="Database password",
    ),
)


class Catalogue:
    """An immutable, ordered set of KeySpecs, at most one per (service, name)."""

    __slots__ = ("_by_key", "_specs")

    def __init__(self, specs: Iterable[KeySpec]) -> None:
        by_key: dict[tuple[str, str], KeySpec] = {}
        for spec in specs:
            by_key[spec.key] = spec  # a later spec replaces an earlier one in its place
        self._by_key: Mapping[tuple[str, str], KeySpec] = by_key
        self._specs: tuple[KeySpec, ...] = tuple(by_key.values())

    def lookup(self, service: str, name: str) -> KeySpec | None:
        """The spec for (service, name), or None for an uncatalogued key."""
        return self._by_key.get((service, name))

    def services(self) -> tuple[str, ...]:
        """Service names in first-seen order."""
        return tuple(dict.fromkeys(spec.service for spec in self._specs))

    def __iter__(self) -> Iterator[KeySpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __repr__(self) -> str:
        return f"Catalogue({len(self._specs)} keys)"


_BUILTIN: Final = Catalogue(BUILTIN_SPECS)


def builtin_catalogue() -> Catalogue:
    """The built-in catalogue alone."""
    return _BUILTIN


def lookup(service: str, name: str) -> KeySpec | None:
    """Look up a *built-in* key. Use `load_catalogue(path).lookup` to include a team file."""
    return _BUILTIN.lookup(service, name)


def _shown(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


_ENTRY_FIELDS: Final = tuple(KeySpec.model_fields)
_REQUIRED_FIELDS: Final = ("service", "name", "format", "rotation")
_STRING_FIELDS: Final = frozenset({"service", "name", "format", "rotation", "description"})
_DAY_FIELDS: Final = ("rotation_days", "warning_days")


def _entry_error(
    path: Path, index: int, table: Mapping[str, Any], problem: str
) -> ValidationFailed:
    label = f"entry {index}"
    service, name = table.get("service"), table.get("name")
    if isinstance(service, str) and isinstance(name, str):
        label += f" ({_shown(service)}, {_shown(name)})"
    return ValidationFailed(_RULE, f"catalogue file {str(path)!r}, [[key]] {label}: {problem}")


def _spec_from_table(path: Path, index: int, table: Any) -> KeySpec:
    if not isinstance(table, dict):
        raise ValidationFailed(
            _RULE, f"catalogue file {str(path)!r}: [[key]] entry {index} is not a table"
        )

    def fail(problem: str) -> ValidationFailed:
        return _entry_error(path, index, table, problem)

    unknown = sorted(set(table) - set(_ENTRY_FIELDS))
    if unknown:
        raise fail(
            f"unknown field(s) {', '.join(map(_shown, unknown))}; "
            f"allowed: {', '.join(_ENTRY_FIELDS)}"
        )
    missing = [f for f in _REQUIRED_FIELDS if f not in table]
    if missing:
        raise fail(f"missing required field(s) {', '.join(missing)}")
    for field in _STRING_FIELDS & set(table):
        if not isinstance(table[field], str):
            raise fail(f"{field} must be a string")
    for field in _DAY_FIELDS:
        if field in table:
            days = table[field]
            if isinstance(days, bool) or not isinstance(days, int):
                raise fail(f"{field} must be a whole number of days")
            if days <= 0:
                raise fail(f"{field} must be positive")
            if days > MAX_DAYS:
                raise fail(f"{field} must be at most {MAX_DAYS}")
    for check, field in ((validate_service, "service"), (validate_name, "name")):
        try:
            check(table[field])
        except ValidationFailed as exc:
            raise fail(str(exc)) from None
    if table["format"] not in FORMAT_NAMES:
        raise fail(
            f"unknown format {_shown(table['format'])}; "
            f"known formats: {', '.join(sorted(FORMAT_NAMES))}"
        )
    if table["rotation"] not in ROTATION_KINDS:
        raise fail(
            f"bad rotation kind {_shown(table['rotation'])}; "
            f"expected one of {', '.join(ROTATION_KINDS)}"
        )
    rotation_days = table.get("rotation_days", KeySpec.model_fields["rotation_days"].default)
    warning_days = table.get("warning_days", KeySpec.model_fields["warning_days"].default)
    if warning_days >= rotation_days:
        raise fail(
            f"warning_days ({warning_days}) must be less than rotation_days ({rotation_days})"
        )
    if table["rotation"] == "generated" and table["format"] not in GENERATED_FORMATS:
        raise fail(
            f"rotation 'generated' needs a format the ledger can generate "
            f"({', '.join(sorted(GENERATED_FORMATS))}), not {_shown(table['format'])}"
        )
    try:
        return KeySpec.model_validate(table)
    except ValueError as exc:  # pydantic's ValidationError; every rule above should catch first
        raise fail(f"invalid entry ({type(exc).__name__})") from None


# A team catalogue is a few hundred entries; reading no more than this keeps `/dev/zero` or
# a runaway file from growing the process to gigabytes (the same cap as a values file).
MAX_CATALOGUE_BYTES: Final = 1024 * 1024


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CATALOGUE_BYTES + 1)
        if len(raw) > MAX_CATALOGUE_BYTES:
            raise ValidationFailed(
                _RULE, f"catalogue file {str(path)!r} is larger than {MAX_CATALOGUE_BYTES} bytes"
            )
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ValidationFailed(_RULE, f"catalogue file {str(path)!r} does not exist") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValidationFailed(
            _RULE, f"catalogue file {str(path)!r} cannot be read: {reason}"
        ) from None
    except UnicodeDecodeError:
        raise ValidationFailed(_RULE, f"catalogue file {str(path)!r} is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailed(
            _RULE, f"catalogue file {str(path)!r} is not valid TOML: {exc}"
        ) from None
    except RecursionError:  # thousands of nested arrays or tables: tomllib recurses
        raise ValidationFailed(
            _RULE, f"catalogue file {str(path)!r} is nested too deeply"
        ) from None


def load_catalogue(path: Path | None) -> Catalogue:
    """The built-in catalogue merged with the team catalogue file at `path` (if any).

    Raises ValidationFailed(rule="catalogue") naming the file and entry for any problem.
    """
    if path is None:
        return _BUILTIN
    path = Path(path)
    document = _read_toml(path)
    extra = sorted(set(document) - {"key"})
    if extra:
        raise ValidationFailed(
            _RULE,
            f"catalogue file {str(path)!r}: unknown top-level key(s) "
            f"{', '.join(map(_shown, extra))}; entries go in [[key]] tables",
        )
    tables = document.get("key", [])
    if not isinstance(tables, list):
        raise ValidationFailed(
            _RULE, f"catalogue file {str(path)!r}: 'key' must be an array of tables ([[key]])"
        )
    seen: dict[tuple[str, str], int] = {}
    specs: list[KeySpec] = []
    for index, table in enumerate(tables, start=1):
        spec = _spec_from_table(path, index, table)
        if spec.key in seen:
            raise _entry_error(
                path, index, table, f"duplicates entry {seen[spec.key]} of the same file"
            )
        seen[spec.key] = index
        specs.append(spec)
    return Catalogue((*BUILTIN_SPECS, *specs))
