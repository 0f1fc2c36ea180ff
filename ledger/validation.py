"""Name rules and value rules.

Every failure raises `ledger.errors.ValidationFailed(rule, message)`. A message may show an
offending *name* (as a `repr()` cut to 80 characters) but never a *value* or any part of one.

Name rules (the documented pattern)
===================================
Each part of a secret's address must match, in full (`re.fullmatch`, ASCII only):

=============  ==================================  ===========================================
part           pattern                             in words
=============  ==================================  ===========================================
environment    ``^[a-z][a-z0-9-]{0,62}$``          lower-case letter, then up to 62 of
                                                   ``a-z 0-9 -`` (1-63 characters)
service        ``^[a-z][a-z0-9-]{0,62}$``          same as environment
name           ``^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$``  letter or digit, then up to 127 of
                                                   ``A-Z a-z 0-9 . _ -`` (1-128 characters)
=============  ==================================  ===========================================

A part holding a control or invisible character (Unicode categories Cc, Cf, Zl, Zp: NUL, C0/C1
controls, DEL, zero-width and bidi-override characters, line/paragraph separators) breaks rule
``control-characters``; any other mismatch (including a non-string) breaks ``name-pattern``.

Generic value rules (every key, known or not)
=============================================
Checked in this order; the rule name is the `ValidationFailed.rule`:

* ``type``: the value must be a `str`.
* ``empty``: the value must not be empty or whitespace only.
* ``encoding``: the value must be valid Unicode (no lone surrogates), i.e. encodable as UTF-8.
* ``too-large``: at most 64 KiB (65,536 bytes) once UTF-8 encoded.
* ``nul-byte``: no NUL (U+0000) character.

Format rules
============
A catalogue key names a format (`ledger.rotation.catalogue.KeySpec.format`); its rule is checked
after the
generic rules by a small pydantic validator (`TypeAdapter` over
``Annotated[str, AfterValidator(...)]``). A failure's rule is the format name. Pydantic's own error
text embeds the input, so it is never passed on: messages are built only from fixed text written
here. Every format except ``text`` also rejects leading or trailing whitespace (a frequent
copy-paste error that no provider's credential contains).

``text``
    No format rule (generic rules only). For team keys without a known shape.
``api_key`` (mcp.bun.apiKey)
    ``sk-`` then 16-256 characters of ``A-Z a-z 0-9 _ -``. Source: this project's operating guide
    (example ``sk-`` + 16 characters); no public provider grammar exists, so lengths are liberal.
``openai_key`` (mcp.openai.apiKey)
    ``sk-proj-`` (project key), ``sk-svcacct-`` (service-account key) or legacy ``sk-`` (user key),
    then 20-256 characters of ``A-Z a-z 0-9 _ -``. ``sk-admin-`` keys are refused (OpenAI documents
    them as Admin API keys that cannot call models), as are ``sk-ant-`` keys (Anthropic's). Source:
    OpenAI platform docs (API keys / projects / Admin API keys); OpenAI publishes no length, so
    lengths are liberal (legacy keys were 48 characters, project keys are about 160).
``anthropic_key`` (mcp.anthropic.apiKey)
    ``sk-ant-`` then 32-256 characters of ``A-Z a-z 0-9 _ -``. ``sk-ant-admin`` keys are refused
    (Anthropic's Admin API keys, documented as ``sk-ant-admin...``, cannot call the Messages API).
    Source: Anthropic docs (Console API keys start ``sk-ant-``; current keys are ``sk-ant-api03-``
    and about 108 characters, but no length is documented, so lengths are liberal).
``telegram_bot_token`` (telegram.bot.token)
    ``<bot id>:<secret>``: bot id 1-20 digits without a leading zero; secret exactly 35 characters
    of ``A-Z a-z 0-9 _ -``. Source: Telegram Bot API docs ("Authorizing your bot": a token looks
    like ``123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11``). Telegram's examples are illustrative;
    tokens issued by @BotFather carry a 35-character secret, which is what is enforced. Typical bot
    ids have 8-10 digits; 1-20 are accepted.
``telegram_chat_id`` (telegram.chat.id)
    A non-zero signed decimal integer (``-?[1-9][0-9]*``, no ``+``, no leading zeros) whose
    magnitude is below 2**52. Source: Telegram Bot API docs (Chat.id "has at most 52 significant
    bits"; group and channel ids are negative, e.g. ``-100...``). ``@channelusername`` is not a
    chat *id* and is refused.
``positive_integer`` (github.app.id)
    A decimal integer 1 .. 2**63-1, no sign, no leading zeros. GitHub App ids are positive integers
    (GitHub REST docs, "Apps": ``id`` is an integer).
``signed_integer``
    A decimal integer in the signed 64-bit range, optional ``-``, no leading zeros, no ``-0``.
``github_token`` (github.token)
    One of GitHub's prefixed token forms (GitHub changelog 2021-03-31 "Authentication token
    format updates"; GitHub blog "Behind GitHub's new authentication token formats"; GitHub docs
    on fine-grained personal access tokens):

    * ``ghp_`` classic personal access token,
    * ``gho_`` OAuth app access token,
    * ``ghu_`` GitHub App user-to-server token,
    * ``ghs_`` GitHub App installation (server-to-server) token, incl. Actions' GITHUB_TOKEN,

      each followed by at least 36 characters of ``A-Z a-z 0-9`` (36 today);
    * ``github_pat_`` fine-grained personal access token: at least 22 of ``A-Z a-z 0-9``, ``_``,
      at least 59 of ``A-Z a-z 0-9`` (22 and 59 today).

    Whole token at most 255 characters: GitHub asks integrators to accept tokens up to 255
    characters because lengths may grow. Refused: ``ghr_`` refresh tokens (they can only be
    exchanged for a new token, never authenticate an API call) and unprefixed 40-hex tokens (not
    issued since 2021 and invisible to secret scanning: regenerate them). The trailing CRC32
    checksum is not verified (its encoding is not documented by GitHub).
``database_url`` (database.url)
    A URL a driver would accept. Scheme ``<base>`` or SQLAlchemy-style ``<base>+<driver>``
    (driver ``[a-z0-9_]+``), base one of postgresql, postgres, mysql, mariadb, mssql, sqlite,
    mongodb, mongodb+srv (no driver suffix), redis, rediss. Sources: PostgreSQL libpq "Connection
    URIs", MySQL Connector URI docs, SQLAlchemy "Database URLs", MongoDB "Connection String
    Formats", redis-py/IANA ``redis`` URI scheme.

    * sqlite: ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:///:memory:``;
      a path is required and no host is allowed.
    * others: ``scheme://[user[:password]@]host[:port][,host[:port]...][/path][?query]``;
      at most one ``@`` (percent-encode ``@`` in passwords as ``%40``), no ``#``; every ``%``
      starts a valid ``%XX`` escape; hosts are names (``A-Z a-z 0-9 . _ ~ -`` or ``%XX``) or
      bracketed IPv6 literals; ports 1-65535. Several hosts only for postgres and mongodb;
      mongodb+srv has one host and no port. postgres may omit the host only when the query
      names one (``?host=/var/run/postgresql``).
    * database name: required for postgres, mysql, mariadb, mssql (``/name``, no further ``/``);
      optional for mongodb; optional for redis, where it is a database number.
``generated_password`` (database.password)
    32-1024 characters, each printable and not whitespace. What `ledger.rotation.generate` produces
    always passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import AfterValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from ledger.errors import ValidationFailed
from ledger.names import (
    ENVIRONMENT_PATTERN,
    NAME_PATTERN,
    SERVICE_PATTERN,
    validate_address,
    validate_environment,
    validate_name,
    validate_service,
)

if TYPE_CHECKING:
    from ledger.address import SecretAddress
    from ledger.rotation.catalogue import KeySpec

__all__ = [
    "ENVIRONMENT_PATTERN",
    "FORMAT_NAMES",
    "MAX_VALUE_BYTES",
    "NAME_PATTERN",
    "SERVICE_PATTERN",
    "validate_address",
    "validate_environment",
    "validate_name",
    "validate_service",
    "validate_value",
]

# --------------------------------------------------------------------------------------------
# Name rules
# --------------------------------------------------------------------------------------------

# Defined in ledger.names (light: no pydantic) and re-exported here.

# --------------------------------------------------------------------------------------------
# Generic value rules
# --------------------------------------------------------------------------------------------

MAX_VALUE_BYTES: Final = 64 * 1024


def _utf8_size(value: str) -> int | None:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _generic_problem(value: object) -> tuple[str, str] | None:
    """(rule, message) of the first generic rule `value` breaks, or None."""
    if not isinstance(value, str):
        return "type", "the value must be a string"
    if value == "" or value.isspace():
        return "empty", "the value is empty or only whitespace"
    # Checked outside an `except` block so the ValidationFailed carries no __context__: a
    # UnicodeEncodeError (like pydantic's ValidationError below) holds the whole input.
    size = _utf8_size(value)
    if size is None:
        return "encoding", "the value is not valid Unicode (it holds a lone surrogate)"
    if size > MAX_VALUE_BYTES:
        return "too-large", f"the value is larger than {MAX_VALUE_BYTES} bytes once UTF-8 encoded"
    if "\x00" in value:
        return "nul-byte", "the value contains a NUL character"
    return None


# --------------------------------------------------------------------------------------------
# Format rules: one small pydantic validator per format
# --------------------------------------------------------------------------------------------


def _fail(fmt: str, reason: str) -> PydanticCustomError:
    # The template is fixed text from this module and has no placeholders: nothing of the
    # value can reach it.
    return PydanticCustomError(fmt, reason.replace("{", "(").replace("}", ")"))


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


def _no_outer_whitespace(fmt: str, value: str) -> None:
    if value != value.strip():
        raise _fail(fmt, "has leading or trailing whitespace (often a copy-paste error)")


def _check_body(
    fmt: str, body: str, *, what: str, low: int, high: int, chars: frozenset[str], chars_text: str
) -> None:
    if not low <= len(body) <= high:
        raise _fail(fmt, f"{what} must be {low}-{high} characters long")
    if not set(body) <= chars:
        raise _fail(fmt, f"{what} may contain only {chars_text}")


_URLSAFE_TEXT = "letters, digits, '_' and '-'"
_ALNUM_TEXT = "ASCII letters and digits"


def _api_key(value: str) -> str:
    fmt = "api_key"
    _no_outer_whitespace(fmt, value)
    if not value.startswith("sk-"):
        raise _fail(fmt, "must start with the prefix sk-")
    _check_body(
        fmt,
        value[3:],
        what="the part after the prefix",
        low=16,
        high=256,
        chars=_TOKEN_CHARS,
        chars_text=_URLSAFE_TEXT,
    )
    return value


_OPENAI_PREFIXES = ("sk-proj-", "sk-svcacct-", "sk-")


def _openai_key(value: str) -> str:
    fmt = "openai_key"
    _no_outer_whitespace(fmt, value)
    if value.startswith("sk-ant-"):
        raise _fail(fmt, "looks like an Anthropic key, not an OpenAI key")
    if value.startswith("sk-admin-"):
        raise _fail(fmt, "is an OpenAI Admin API key, which cannot call models; use a project key")
    prefix = next((p for p in _OPENAI_PREFIXES if value.startswith(p)), None)
    if prefix is None:
        raise _fail(fmt, "must start with sk-proj-, sk-svcacct- or sk-")
    _check_body(
        fmt,
        value[len(prefix) :],
        what="the part after the prefix",
        low=20,
        high=256,
        chars=_TOKEN_CHARS,
        chars_text=_URLSAFE_TEXT,
    )
    return value


def _anthropic_key(value: str) -> str:
    fmt = "anthropic_key"
    _no_outer_whitespace(fmt, value)
    if not value.startswith("sk-ant-"):
        raise _fail(fmt, "must start with the prefix sk-ant-")
    if value.startswith("sk-ant-admin"):
        raise _fail(fmt, "is an Anthropic Admin API key, which cannot call the Messages API")
    _check_body(
        fmt,
        value[len("sk-ant-") :],
        what="the part after the prefix",
        low=32,
        high=256,
        chars=_TOKEN_CHARS,
        chars_text=_URLSAFE_TEXT,
    )
    return value


def _telegram_bot_token(value: str) -> str:
    fmt = "telegram_bot_token"
    _no_outer_whitespace(fmt, value)
    bot_id, colon, secret = value.partition(":")
    if not colon:
        raise _fail(fmt, "must be <bot id>:<secret> (no ':' found)")
    if not 1 <= len(bot_id) <= 20 or not set(bot_id) <= _DIGITS or bot_id.startswith("0"):
        raise _fail(fmt, "the bot id before ':' must be 1-20 digits without a leading zero")
    if len(secret) != 35:
        raise _fail(fmt, "the secret after ':' must be exactly 35 characters long")
    if not set(secret) <= _TOKEN_CHARS:
        raise _fail(fmt, f"the secret after ':' may contain only {_URLSAFE_TEXT}")
    return value


def _parse_decimal(fmt: str, value: str, *, signed: bool) -> int:
    negative = signed and value.startswith("-")
    digits = value[1:] if negative else value
    if digits == "" or not set(digits) <= _DIGITS:
        kind = "an optional '-' and decimal digits" if signed else "decimal digits only"
        raise _fail(fmt, f"must be {kind}")
    if len(digits) > 1 and digits.startswith("0"):
        raise _fail(fmt, "must not have leading zeros")
    if len(digits) > 20:
        raise _fail(fmt, "is out of range")
    number = int(digits)
    return -number if negative else number


def _telegram_chat_id(value: str) -> str:
    fmt = "telegram_chat_id"
    _no_outer_whitespace(fmt, value)
    number = _parse_decimal(fmt, value, signed=True)
    if number == 0:
        raise _fail(fmt, "must not be zero")
    if abs(number) >= 2**52:
        raise _fail(fmt, "is out of range (Telegram chat ids have at most 52 significant bits)")
    return value


def _positive_integer(value: str) -> str:
    fmt = "positive_integer"
    _no_outer_whitespace(fmt, value)
    number = _parse_decimal(fmt, value, signed=False)
    if not 1 <= number <= 2**63 - 1:
        raise _fail(fmt, "must be between 1 and 2**63-1")
    return value


def _signed_integer(value: str) -> str:
    fmt = "signed_integer"
    _no_outer_whitespace(fmt, value)
    number = _parse_decimal(fmt, value, signed=True)
    if value == "-0":
        raise _fail(fmt, "must not be negative zero")
    if not -(2**63) <= number <= 2**63 - 1:
        raise _fail(fmt, "is outside the signed 64-bit range")
    return value


_GITHUB_SHORT_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_")
_GITHUB_MAX = 255


def _github_token(value: str) -> str:
    fmt = "github_token"
    _no_outer_whitespace(fmt, value)
    if len(value) > _GITHUB_MAX:
        raise _fail(fmt, f"must be at most {_GITHUB_MAX} characters long")
    if value.startswith("ghr_"):
        raise _fail(fmt, "is a GitHub refresh token, which cannot authenticate API calls")
    if value.startswith("github_pat_"):
        head, sep, tail = value[len("github_pat_") :].partition("_")
        if not sep or len(head) < 22 or len(tail) < 59:
            raise _fail(
                fmt,
                "a fine-grained token must be github_pat_ + 22 or more letters/digits"
                " + '_' + 59 or more letters/digits",
            )
        if not set(head) <= _ALNUM or not set(tail) <= _ALNUM:
            raise _fail(fmt, f"a fine-grained token may contain only {_ALNUM_TEXT} and '_'")
        return value
    prefix = next((p for p in _GITHUB_SHORT_PREFIXES if value.startswith(p)), None)
    if prefix is None:
        if len(value) == 40 and set(value) <= _HEX:
            raise _fail(
                fmt,
                "is an unprefixed (pre-2021) token; generate a new token with a ghp_ or"
                " github_pat_ prefix",
            )
        raise _fail(fmt, "must start with ghp_, github_pat_, gho_, ghu_ or ghs_")
    body = value[len(prefix) :]
    if len(body) < 36:
        raise _fail(fmt, "needs at least 36 characters after the prefix")
    if not set(body) <= _ALNUM:
        raise _fail(fmt, f"the part after the prefix may contain only {_ALNUM_TEXT}")
    return value


# database_url ---------------------------------------------------------------------------------

_DB_KINDS: Final[dict[str, str]] = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "sql",
    "mariadb": "sql",
    "mssql": "sql",
    "sqlite": "sqlite",
    "mongodb": "mongo",
    "mongodb+srv": "mongo-srv",
    "redis": "redis",
    "rediss": "redis",
}
_DB_SCHEMES_TEXT = (
    "postgresql, postgres, mysql, mariadb, mssql, sqlite (each optionally +driver), "
    "mongodb, mongodb+srv, redis, rediss"
)
_SCHEME_RE = re.compile(r"[a-z][a-z0-9]*(?:\+[a-z0-9_]+)?", re.ASCII)
_HOST_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-%")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _db_kind(fmt: str, scheme: str) -> str:
    if scheme in _DB_KINDS:
        return _DB_KINDS[scheme]
    if _SCHEME_RE.fullmatch(scheme) is None:
        raise _fail(fmt, f"has an unsupported scheme; supported: {_DB_SCHEMES_TEXT}")
    base, _, _driver = scheme.partition("+")
    kind = _DB_KINDS.get(base)
    if kind is None or kind in {"mongo", "mongo-srv", "redis"}:
        raise _fail(fmt, f"has an unsupported scheme; supported: {_DB_SCHEMES_TEXT}")
    return kind


def _check_percent(fmt: str, part: str, what: str) -> None:
    if _PERCENT_RE.search(part) is not None:
        raise _fail(fmt, f"{what} has a '%' that does not start a %XX escape")


def _check_host(fmt: str, host: str, *, allow_port: bool) -> None:
    if host.startswith("["):
        end = host.find("]")
        literal, rest = host[1:end], host[end + 1 :]
        if end < 0 or literal == "" or not set(literal) <= _IPV6_CHARS or ":" not in literal:
            raise _fail(fmt, "has a malformed bracketed IPv6 host")
        if rest and not rest.startswith(":"):
            raise _fail(fmt, "has text after a bracketed IPv6 host")
        port = rest[1:] if rest else None
    else:
        name, colon, port_text = host.partition(":")
        port = port_text if colon else None
        if name == "":
            raise _fail(fmt, "has an empty host name")
        if not set(name) <= _HOST_CHARS:
            raise _fail(fmt, "has a host name with characters a driver would not accept")
        _check_percent(fmt, name, "the host name")
    if port is not None:
        if not allow_port:
            raise _fail(fmt, "must not give a port for mongodb+srv (the SRV record does)")
        if not 1 <= len(port) <= 5 or not set(port) <= _DIGITS or not 1 <= int(port) <= 65535:
            raise _fail(fmt, "has a port that is not a number from 1 to 65535")


def _database_url(value: str) -> str:
    fmt = "database_url"
    _no_outer_whitespace(fmt, value)
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _fail(fmt, "contains whitespace or control characters; percent-encode them")
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise _fail(fmt, "must look like scheme://... (no '://' found)")
    kind = _db_kind(fmt, scheme)
    if "#" in rest:
        raise _fail(fmt, "contains a '#'; percent-encode it (as %23) in passwords")
    if kind == "sqlite":
        path, _, query = rest.partition("?")
        if path in {"", "/"}:
            raise _fail(
                fmt, "a sqlite URL needs a database file path (three slashes, then the path)"
            )
        if not path.startswith("/"):
            raise _fail(fmt, "a sqlite URL takes no host: use sqlite:///relative or ////absolute")
        _check_percent(fmt, path, "the path")
        _check_percent(fmt, query, "the query")
        return value

    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    path, _, query = tail.partition("?")
    _check_percent(fmt, query, "the query")
    _check_percent(fmt, path, "the path")

    if authority.count("@") > 1:
        raise _fail(fmt, "has more than one '@'; percent-encode '@' in passwords as %40")
    userinfo, _, hostlist = authority.rpartition("@")
    _check_percent(fmt, userinfo, "the user:password part")

    if hostlist == "":
        query_keys = {pair.partition("=")[0] for pair in query.split("&")}
        if not (kind == "postgres" and "host" in query_keys):
            raise _fail(fmt, "needs a host")
    else:
        hosts = hostlist.split(",")
        if len(hosts) > 1 and kind not in {"postgres", "mongo"}:
            raise _fail(
                fmt, "lists several hosts, which only postgres and mongodb (not +srv) accept"
            )
        for host in hosts:
            _check_host(fmt, host, allow_port=kind != "mongo-srv")

    dbname = path[1:]
    if kind in {"postgres", "sql"}:
        if dbname == "":
            raise _fail(fmt, "needs a database name after the host (/dbname)")
        if "/" in dbname:
            raise _fail(fmt, "has a database name containing '/'")
    elif kind in {"mongo", "mongo-srv"}:
        if "/" in dbname:
            raise _fail(fmt, "has a database name containing '/'")
    elif dbname and (not set(dbname) <= _DIGITS or len(dbname) > 5):
        raise _fail(fmt, "a redis database must be a number (/0, /1, ...)")
    return value


def _generated_password(value: str) -> str:
    fmt = "generated_password"
    if not 32 <= len(value) <= 1024:
        raise _fail(fmt, "must be 32-1024 characters long")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _fail(fmt, "may contain only printable, non-whitespace characters")
    return value


def _text(value: str) -> str:
    return value


_CHECKS: Final[dict[str, Callable[[str], str]]] = {
    "text": _text,
    "api_key": _api_key,
    "openai_key": _openai_key,
    "anthropic_key": _anthropic_key,
    "telegram_bot_token": _telegram_bot_token,
    "telegram_chat_id": _telegram_chat_id,
    "positive_integer": _positive_integer,
    "signed_integer": _signed_integer,
    "github_token": _github_token,
    "database_url": _database_url,
    "generated_password": _generated_password,
}

#: Every format name a catalogue entry may use.
FORMAT_NAMES: Final[frozenset[str]] = frozenset(_CHECKS)

# Built on first use: eleven TypeAdapters cost tens of milliseconds at import, paid by every
# command that imports the catalogue (`audit replay`, `list`) and never checks a value.
_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(fmt: str) -> TypeAdapter[Any] | None:
    found = _ADAPTERS.get(fmt)
    check = _CHECKS.get(fmt)
    if found is None and check is not None:
        found = _ADAPTERS[fmt] = TypeAdapter(Annotated[str, AfterValidator(check)])
    return found


# Used when a message would happen to contain the value (say a value of "sk-ant-"): two texts
# that share no four-character run, so at least one cannot contain a value of 4+ characters.
_WITHHELD = ("rejected: details withheld", "bad input")


def _without_value(value: str, *messages: str) -> str:
    """The first of `messages` (then of `_WITHHELD`) that does not contain a 4+ char `value`."""
    return next(m for m in (*messages, *_WITHHELD) if len(value) < 4 or value not in m)


def validate_value(spec: KeySpec | None, value: str, address: SecretAddress | None = None) -> None:
    """Check `value` for the key described by `spec` (None: an uncatalogued key).

    Generic rules first, then the spec's format rule. Raises ValidationFailed whose rule is the
    generic rule's name or the format's name; the message never contains the value. With
    `address` (a SecretAddress, shown as environment/service/name) every message starts with
    it, generic rules included; without it, format messages start with service/name.
    """
    problem = _generic_problem(value)
    if problem is not None:
        rule, message = problem
        named = message if address is None else f"{address}: {message}"
        raise ValidationFailed(rule, named)
    text = str(value)
    if spec is None:
        return
    fmt = spec.format
    adapter = _adapter(fmt)
    where = str(address) if address is not None else f"{spec.service}/{spec.name}"
    if adapter is None:
        raise ValidationFailed(fmt, f"unknown value format for {where}")
    reason = _format_failure(adapter, fmt, text)
    if reason is not None:
        # Raised here, not inside an `except` block, so that no exception holding the value is
        # chained to it as __context__.
        subject = "" if reason.startswith(("the ", "a ")) else "the value "
        message = _without_value(
            text,
            f"{where}: {subject}{reason}",
            f"{where}: the value does not match the {fmt} format",
            f"{where}: {_WITHHELD[0]}",
        )
        raise ValidationFailed(fmt, message)


def _format_failure(adapter: TypeAdapter[Any], fmt: str, text: str) -> str | None:
    """None if `text` passes the format, else the reason it fails (fixed text, never the value)."""
    try:
        adapter.validate_python(text, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else None
        if first is not None and first["type"] == fmt:
            return first["msg"]
        # pydantic's own error: its text is not ours, so none of it is passed on.
        return f"does not match the {fmt} format"
    return None
