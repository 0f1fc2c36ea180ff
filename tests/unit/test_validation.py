"""Name rules, generic value rules, per-format rules and generated values.

Token-shaped examples are built in code (prefix + repeated filler) so that no literal in this
file looks like a real credential to a secret scanner.
"""

from __future__ import annotations

import string
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import ValidationFailed
from ledger.rotation.catalogue import BUILTIN_SPECS, GENERATED_FORMATS, KeySpec, lookup
from ledger.rotation.generate import ALPHABET_SYMBOLS, PASSWORD_LENGTH, generate_value
from ledger.validation import (
    _WITHHELD,
    FORMAT_NAMES,
    MAX_VALUE_BYTES,
    validate_address,
    validate_value,
)

# ----------------------------------------------------------------------------------------------
# Fake values, assembled from pieces
# ----------------------------------------------------------------------------------------------

SK = "sk" + "-"
COLON = ":"


def fake(prefix: str, n: int, filler: str = "aB3x") -> str:
    """`prefix` followed by `n` characters cycling through `filler`."""
    return prefix + (filler * (n // len(filler) + 1))[:n]


BOT_ID = "".join(str(d) for d in range(1, 10))  # nine digits
GH = "gh"


def gh(kind: str, n: int = 36) -> str:
    return fake(GH + kind + "_", n)


def gh_fine(head: int = 22, tail: int = 59) -> str:
    return fake("github" + "_pat_", head) + "_" + fake("", tail, "Zz90")


VALID: dict[tuple[str, str], list[str]] = {
    ("nexus", "mcp.bun.apiKey"): [
        fake(SK, 16),
        fake(SK, 48),
        fake(SK, 256, "a_-9"),
        SK + "".join(str(d % 10) for d in range(1, 17)),  # the operating guide's example shape
    ],
    ("nexus", "mcp.openai.apiKey"): [
        fake(SK, 48),
        fake(SK + "proj-", 156, "aZ_-"),
        fake(SK + "svcacct-", 100),
        fake(SK, 20),
    ],
    ("nexus", "mcp.anthropic.apiKey"): [
        fake(SK + "ant-" + "api03-", 95, "aZ_-"),
        fake(SK + "ant-", 32),
        fake(SK + "ant-", 256),
    ],
    ("telegram", "telegram.bot.token"): [
        BOT_ID + COLON + fake("", 35, "Ab_-9"),
        "7" + COLON + fake("", 35),
        "1" * 20 + COLON + fake("", 35, "zZ"),
    ],
    ("telegram", "telegram.chat.id"): [
        "1",
        "123456789",
        "-987654321",
        "-100" + "1234567890",
        str(2**52 - 1),
        str(-(2**52 - 1)),
    ],
    ("github", "github.token"): [
        gh("p"),
        gh("o"),
        gh("u"),
        gh("s"),
        gh("p", 251),
        gh_fine(),
        gh_fine(30, 70),
    ],
    ("github", "github.app.id"): ["1", "123456", str(2**63 - 1)],
    ("database", "database.url"): [
        "postgresql://app:pw@db.example.com:5432/appdb",
        "postgres://db.example.com/appdb",
        "postgresql+psycopg://app:p%40ss@db.example.com/appdb?sslmode=require",
        "postgresql://app@h1.example.com:5432,h2.example.com:5433/appdb",
        "postgresql://[::1]:5432/appdb",
        "postgresql:///appdb?host=/var/run/postgresql",
        "postgresql://%2Fvar%2Frun%2Fpostgresql/appdb",
        "mysql://root:pw@127.0.0.1:3306/shop",
        "mysql+pymysql://root@localhost/shop?charset=utf8mb4",
        "mariadb://u:p@maria.internal/shop",
        "mssql+pyodbc://u:p@sql.internal/dbname?driver=ODBC+Driver+18",
        "sqlite:///relative/path.db",
        "sqlite:////var/lib/app/app.db",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///app.db",
        "mongodb://u:p@m1.example.com:27017,m2.example.com:27017/app?replicaSet=rs0",
        "mongodb://localhost",
        "mongodb+srv://u:p@cluster0.example.net/app?retryWrites=true",
        "redis://localhost:6379/0",
        "redis://:pw@cache.internal",
        "rediss://default:pw@cache.internal:6380",
    ],
    ("database", "database.password"): [
        fake("", 32, "aB3-"),
        fake("", 40, "Zy9_."),
        fake("", 1024, "q~W8"),
        fake("", 32, "ü!ß@"),  # printable non-ASCII is accepted
    ],
}

INVALID: dict[tuple[str, str], list[str]] = {
    ("nexus", "mcp.bun.apiKey"): [
        fake("pk-", 20),  # wrong prefix
        fake(SK, 15),  # too short
        fake(SK, 257),  # too long
        fake(SK, 20, "ab c"),  # space inside
        fake(SK, 20, "a+b/"),  # not URL-safe
        " " + fake(SK, 20),  # leading whitespace
        fake(SK, 20) + "\n",  # trailing newline
    ],
    ("nexus", "mcp.openai.apiKey"): [
        fake(SK + "ant-", 60),  # an Anthropic key
        fake(SK + "admin-", 60),  # admin key
        fake("sx-", 48),
        fake(SK, 19),
        fake(SK + "proj-", 10),
        fake(SK + "proj-", 40, "ab.c"),
    ],
    ("nexus", "mcp.anthropic.apiKey"): [
        fake(SK, 60),  # OpenAI-shaped
        fake(SK + "ant-" + "admin01-", 90),  # admin key
        fake(SK + "ant-", 31),
        fake(SK + "ant-", 257),
        fake(SK + "ant-", 60, "a=b="),
    ],
    ("telegram", "telegram.bot.token"): [
        BOT_ID + fake("", 35),  # no colon
        COLON + fake("", 35),  # no bot id
        "0" + BOT_ID + COLON + fake("", 35),  # leading zero
        "1" * 21 + COLON + fake("", 35),  # bot id too long
        "12a4" + COLON + fake("", 35),
        BOT_ID + COLON + fake("", 34),  # secret too short
        BOT_ID + COLON + fake("", 36),  # secret too long
        BOT_ID + COLON + fake("", 35, "ab+/"),
        BOT_ID + COLON + fake("", 26),  # the operating guide's (truncated) example shape
    ],
    ("telegram", "telegram.chat.id"): [
        "0",
        "-0",
        "+12345",
        "012345",
        "12.5",
        "1e9",
        "@channelname",
        str(2**52),
        str(-(2**52)),
        "9" * 25,
        "-",
        " 123",
    ],
    ("github", "github.token"): [
        gh("r"),  # refresh token
        "abcdef0123456789" * 2 + "abcdef01",  # unprefixed 40-hex
        gh("p", 35),
        gh("x"),
        fake(GH + "p_", 36, "ab_c"),
        gh("p", 252),  # 256 characters in all
        fake("github" + "_pat_", 22) + fake("", 59),  # no separator
        gh_fine(21, 59),
        gh_fine(22, 58),
        fake("github" + "_pat_", 22) + "_" + fake("", 59, "ab-c"),
        "Bearer " + gh("p"),
    ],
    ("github", "github.app.id"): ["0", "-5", "+5", "05", "12ab", str(2**63), "1 "],
    ("database", "database.url"): [
        "db.example.com/appdb",  # no scheme
        "ftp://db.example.com/appdb",
        "Postgresql://db.example.com/appdb",
        "mongodb+foo://h/app",
        "redis+x://h/0",
        "postgresql://db.example.com",  # no database name
        "postgresql://db.example.com/",
        "postgresql:///appdb",  # no host
        "mysql://u:p@/shop",
        "postgresql://u:p@ss@db.example.com/appdb",  # unencoded '@'
        "postgresql://u:p%zz@db.example.com/appdb",  # bad escape
        "postgresql://db.example.com:0/appdb",
        "postgresql://db.example.com:65536/appdb",
        "postgresql://db.example.com:port/appdb",
        "postgresql://db.example.com/app#frag",
        "postgresql://db example.com/appdb",
        "postgresql://[::1/appdb",
        "postgresql://[zz::1]/appdb",
        "postgresql://db.example.com/a/b",
        "mysql://h1,h2/shop",  # several hosts
        "mongodb+srv://u:p@cluster0.example.net:27017/app",  # srv with a port
        "mongodb+srv://h1.example.net,h2.example.net/app",
        "redis://cache.internal/notanumber",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/app.db",
        "postgresql://h,,h2/db",
    ],
    ("database", "database.password"): [
        fake("", 31),
        fake("", 1025),
        fake("", 40, "ab c"),
        fake("", 40, "ab\tc"),
    ],
}


def _cases(table: dict[tuple[str, str], list[str]]) -> list[tuple[str, str, str]]:
    return [(service, name, value) for (service, name), values in table.items() for value in values]


def test_every_builtin_key_has_examples() -> None:
    keys = {spec.key for spec in BUILTIN_SPECS}
    assert set(VALID) == keys
    assert set(INVALID) == keys


@pytest.mark.parametrize(("service", "name", "value"), _cases(VALID))
def test_valid_examples_pass(service: str, name: str, value: str) -> None:
    validate_value(lookup(service, name), value)


@pytest.mark.parametrize(("service", "name", "value"), _cases(INVALID))
def test_invalid_examples_fail_with_the_format_rule(service: str, name: str, value: str) -> None:
    spec = lookup(service, name)
    assert spec is not None
    with pytest.raises(ValidationFailed) as info:
        validate_value(spec, value)
    assert info.value.rule == spec.format
    message = str(info.value)
    assert f"{service}/{name}" in message
    if len(value.strip()) >= 4:
        assert value.strip() not in message
    # Nothing holding the value is chained to the error.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_messages_say_which_rule_failed() -> None:
    spec = lookup("telegram", "telegram.bot.token")
    with pytest.raises(ValidationFailed, match="exactly 35 characters"):
        validate_value(spec, BOT_ID + COLON + fake("", 34))
    spec = lookup("github", "github.token")
    with pytest.raises(ValidationFailed, match="refresh token"):
        validate_value(spec, gh("r"))
    spec = lookup("database", "database.url")
    with pytest.raises(ValidationFailed, match="%40"):
        validate_value(spec, "postgresql://u:p@ss@h/db")
    with pytest.raises(ValidationFailed, match="1 to 65535"):
        validate_value(spec, "postgresql://h:70000/db")


def test_message_never_echoes_a_value_that_is_a_substring_of_the_message() -> None:
    spec = lookup("nexus", "mcp.anthropic.apiKey")
    assert spec is not None
    value = SK + "ant-"  # would be inside "must start with the prefix sk-ant-" style text
    with pytest.raises(ValidationFailed) as info:
        validate_value(spec, value)
    assert value not in str(info.value)
    ghr = GH + "r_"
    with pytest.raises(ValidationFailed) as info:
        validate_value(lookup("github", "github.token"), ghr)
    assert ghr not in str(info.value)


def test_withheld_fallbacks_share_no_four_character_run() -> None:
    first, second = _WITHHELD
    runs = {first[i : i + 4] for i in range(len(first) - 3)}
    assert not any(second[i : i + 4] in runs for i in range(len(second) - 3))


def test_text_format_and_uncatalogued_keys_use_generic_rules_only() -> None:
    spec = KeySpec(service="payments", name="free.text", format="text", rotation="external")
    validate_value(spec, " anything goes, even  spaces ")
    validate_value(None, "x")
    with pytest.raises(ValidationFailed) as info:
        validate_value(spec, "")
    assert info.value.rule == "empty"


def test_every_format_is_reachable() -> None:
    used = {spec.format for spec in BUILTIN_SPECS}
    assert used <= FORMAT_NAMES
    assert FORMAT_NAMES - used == {"text", "signed_integer"}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0", True),
        ("-1", True),
        (str(2**63 - 1), True),
        (str(-(2**63)), True),
        ("-0", False),
        (str(2**63), False),
        ("01", False),
        ("+1", False),
        ("x", False),
    ],
)
def test_signed_integer(value: str, ok: bool) -> None:
    spec = KeySpec(service="team", name="offset", format="signed_integer", rotation="none")
    if ok:
        validate_value(spec, value)
    else:
        with pytest.raises(ValidationFailed) as info:
            validate_value(spec, value)
        assert info.value.rule == "signed_integer"


# ----------------------------------------------------------------------------------------------
# Generic value rules
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\t\n", "empty"),
        ("ab\x00cd", "nul-byte"),
        ("\x00", "nul-byte"),
        ("abc\ud800def", "encoding"),
        ("\udfff", "encoding"),
    ],
)
def test_generic_rules(value: str, rule: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_value(None, value)
    assert info.value.rule == rule
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


@pytest.mark.parametrize("value", [b"bytes", 42, None, ["a"]])
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_value(None, value)  # type: ignore[arg-type]
    assert info.value.rule == "type"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a" * MAX_VALUE_BYTES, True),
        ("a" * (MAX_VALUE_BYTES + 1), False),
        ("é" * (MAX_VALUE_BYTES // 2), True),  # 2 bytes each: exactly 64 KiB
        ("é" * (MAX_VALUE_BYTES // 2) + "a", False),
        ("€" * (MAX_VALUE_BYTES // 3) + "a", True),  # 3 * 21845 + 1 = 65536
        ("€" * (MAX_VALUE_BYTES // 3) + "ab", False),
        ("😀" * (MAX_VALUE_BYTES // 4), True),  # 4 bytes each
        ("😀" * (MAX_VALUE_BYTES // 4) + "a", False),
    ],
)
def test_size_limit_counts_utf8_bytes(value: str, ok: bool) -> None:
    if ok:
        validate_value(None, value)
    else:
        with pytest.raises(ValidationFailed) as info:
            validate_value(None, value)
        assert info.value.rule == "too-large"


@given(
    prefix=st.text(min_size=1, max_size=8).filter(lambda s: not s.isspace()),
    extra=st.integers(min_value=-8, max_value=8),
    char=st.sampled_from(["a", "é", "€", "😀"]),
)
def test_size_boundary_property(prefix: str, extra: int, char: str) -> None:
    prefix_bytes = len(prefix.encode("utf-8", "surrogatepass"))
    step = len(char.encode("utf-8"))
    count = max(0, (MAX_VALUE_BYTES - prefix_bytes) // step + extra)
    value = prefix + char * count
    try:
        size: int | None = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        size = None
    try:
        validate_value(None, value)
    except ValidationFailed as exc:
        if size is None:
            assert exc.rule == "encoding"
        elif size > MAX_VALUE_BYTES:
            assert exc.rule == "too-large"
        else:
            assert exc.rule == "nul-byte"
    else:
        assert size is not None
        assert size <= MAX_VALUE_BYTES


SPECS = [None, *BUILTIN_SPECS]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(max_size=300), spec=st.sampled_from(SPECS))
def test_random_text_only_ever_raises_validation_failed(value: str, spec: KeySpec | None) -> None:
    try:
        validate_value(spec, value)
    except ValidationFailed as exc:
        if len(value) >= 4:
            assert value not in str(exc)
        assert exc.__context__ is None


# Text built from the characters formats care about, so the format checks get past their
# first test more often.
_FORMAT_ALPHABET = string.ascii_letters + string.digits + "-_:/@%?=&.,[]+# \x00"


@settings(max_examples=500)
@given(
    prefix=st.sampled_from(
        [
            "",
            SK,
            SK + "proj-",
            SK + "ant-",
            GH + "p_",
            "github" + "_pat_",
            BOT_ID + COLON,
            "postgresql://",
            "mongodb+srv://",
            "sqlite:///",
            "redis://",
            "-",
            GH + "r_",
        ]
    ),
    body=st.text(alphabet=_FORMAT_ALPHABET, max_size=120),
    spec=st.sampled_from(SPECS),
)
def test_format_shaped_text_never_leaks(prefix: str, body: str, spec: KeySpec | None) -> None:
    value = prefix + body
    try:
        validate_value(spec, value)
    except ValidationFailed as exc:
        if len(value) >= 4:
            assert value not in str(exc)
        assert exc.__context__ is None and exc.__cause__ is None


@given(value=st.text(min_size=4, max_size=64), spec=st.sampled_from(SPECS))
def test_values_with_a_nul_byte_are_always_rejected(value: str, spec: KeySpec | None) -> None:
    poisoned = value[:2] + "\x00" + value[2:]
    with pytest.raises(ValidationFailed) as info:
        validate_value(spec, poisoned)
    assert info.value.rule in {"nul-byte", "encoding", "empty"}
    assert poisoned not in str(info.value)


# ----------------------------------------------------------------------------------------------
# Name rules
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "service", "name"),
    [
        ("default", "nexus", "mcp.bun.apiKey"),
        ("production", "github", "github.app.id"),
        ("e", "s", "n"),
        ("staging-2", "my-svc", "Key_1-2.3"),
        ("a" * 63, "b" * 63, "C" * 128),
        ("prod", "db", "9lives"),
    ],
)
def test_valid_addresses(environment: str, service: str, name: str) -> None:
    validate_address(environment, service, name)


@pytest.mark.parametrize(
    ("environment", "service", "name", "part"),
    [
        ("Prod", "nexus", "k", "environment"),
        ("1prod", "nexus", "k", "environment"),
        ("", "nexus", "k", "environment"),
        ("a" * 64, "nexus", "k", "environment"),
        ("prod", "Nexus", "k", "service"),
        ("prod", "ne_xus", "k", "service"),
        ("prod", "-nexus", "k", "service"),
        ("prod", "nexus", "", "name"),
        ("prod", "nexus", ".hidden", "name"),
        ("prod", "nexus", "a/b", "name"),
        ("prod", "nexus", "a b", "name"),
        ("prod", "nexus", "C" * 129, "name"),
        ("prod", "nexus", "ké", "name"),
        ("prod", "nexus", "k\n", "name"),  # `$` would match before a trailing newline
    ],
)
def test_invalid_addresses(environment: str, service: str, name: str, part: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_address(environment, service, name)
    expected = "control-characters" if name.endswith("\n") else "name-pattern"
    assert info.value.rule == expected
    assert str(info.value).startswith(part)


def test_name_message_shows_a_truncated_repr() -> None:
    name = "x/" * 200
    with pytest.raises(ValidationFailed) as info:
        validate_address("prod", "nexus", name)
    message = str(info.value)
    assert repr(name)[:77] + "..." in message
    assert repr(name) not in message


@pytest.mark.parametrize("name", ["a\x00b", "\x7fkey", "key\x1b[31m", "ab\u202ecd", "a\u200bb"])
def test_control_characters_have_their_own_rule(name: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_address("prod", "nexus", name)
    assert info.value.rule == "control-characters"
    assert repr(name) in str(info.value)  # escaped, so the terminal shows it safely


def test_non_string_parts_are_rejected() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_address("prod", 5, "k")  # type: ignore[arg-type]
    assert info.value.rule == "name-pattern"


_CONTROL = st.characters(categories=["Cc", "Cf", "Zl", "Zp"])


@given(
    base=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True),
    control=_CONTROL,
    where=st.integers(min_value=0, max_value=41),
    part=st.sampled_from(["environment", "service", "name"]),
)
def test_random_control_characters_are_rejected(
    base: str, control: str, where: int, part: str
) -> None:
    assert unicodedata.category(control) in {"Cc", "Cf", "Zl", "Zp"}
    poisoned = base[:where] + control + base[where:]
    parts = {"environment": "prod", "service": "nexus", "name": "key"}
    parts[part] = poisoned
    with pytest.raises(ValidationFailed) as info:
        validate_address(parts["environment"], parts["service"], parts["name"])
    assert info.value.rule == "control-characters"
    assert len(str(info.value)) < 200


@given(name=st.text(max_size=200))
def test_random_names_only_ever_raise_validation_failed(name: str) -> None:
    try:
        validate_address("prod", "nexus", name)
    except ValidationFailed as exc:
        assert exc.rule in {"name-pattern", "control-characters"}


# ----------------------------------------------------------------------------------------------
# Generated values
# ----------------------------------------------------------------------------------------------

PASSWORD_SPEC = lookup("database", "database.password")


def test_generated_formats_are_exactly_what_generate_supports() -> None:
    for fmt in GENERATED_FORMATS:
        spec = KeySpec(service="team", name="gen", format=fmt, rotation="generated")
        validate_value(spec, generate_value(spec))


@settings(max_examples=300)
@given(st.integers())
def test_generated_passwords_always_validate(_: int) -> None:
    assert PASSWORD_SPEC is not None
    value = generate_value(PASSWORD_SPEC)
    validate_value(PASSWORD_SPEC, value)
    assert len(value) == PASSWORD_LENGTH
    assert set(value) <= set(string.ascii_letters + string.digits + ALPHABET_SYMBOLS)
    assert any(c in string.ascii_lowercase for c in value)
    assert any(c in string.ascii_uppercase for c in value)
    assert any(c in string.digits for c in value)
    assert any(c in ALPHABET_SYMBOLS for c in value)
    assert value[0].isalnum() and value[-1].isalnum()


def test_generated_passwords_are_distinct() -> None:
    assert PASSWORD_SPEC is not None
    values = {generate_value(PASSWORD_SPEC) for _ in range(2000)}
    assert len(values) == 2000


def test_generated_passwords_use_the_whole_alphabet() -> None:
    assert PASSWORD_SPEC is not None
    seen = set("".join(generate_value(PASSWORD_SPEC) for _ in range(500)))
    assert seen == set(string.ascii_letters + string.digits + ALPHABET_SYMBOLS)


@pytest.mark.parametrize("spec", [s for s in BUILTIN_SPECS if s.rotation != "generated"])
def test_generate_refuses_non_generated_keys(spec: KeySpec) -> None:
    with pytest.raises(ValueError, match="generated"):
        generate_value(spec)


def test_generate_refuses_generated_password_format_with_external_rotation() -> None:
    spec = KeySpec(service="team", name="pw", format="generated_password", rotation="external")
    with pytest.raises(ValueError):
        generate_value(spec)
