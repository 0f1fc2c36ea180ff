"""Where the event store lives: `SECRETS_LEDGER_DATABASE_URL` (or `--database-url`).

    postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?schema=SCHEMA&host=/socket/dir]
    sqlite:///path/to/home  (or sqlite:///path/to/home/ledger.sqlite, or a plain directory)

Without a URL the ledger is the SQLite file in the local home directory. The password may be
left out of the URL: it is then taken from PGPASSWORD or ~/.pgpass (PGPASSFILE), as libpq would.
Nothing here ever puts a password into a message: `redacted` is what errors show.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.errors import BadConfiguration

DATABASE_URL_VARIABLE = "SECRETS_LEDGER_DATABASE_URL"
POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_FILE = "ledger.sqlite"


class MalformedDatabaseUrl(BadConfiguration):
    """A database URL that names no store this tool can open (scheme, port, brackets, schema,
    database name): a malformed option value, a usage error (exit 2), not a failure of the
    store it names."""


@dataclass(frozen=True)
class PostgresLocation:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    schema: str = "public"

    @property
    def redacted(self) -> str:
        """The URL without its password: safe for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"postgresql://{self.user}@{host}:{self.port}/{self.dbname}"
        return text if self.schema == "public" else f"{text}?schema={self.schema}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if not self.host.startswith("/") else self.host

    @property
    def digest(self) -> str:
        """Names this database's local caches (views) without revealing it."""
        ident = f"{self.host}\x00{self.port}\x00{self.dbname}\x00{self.schema}"
        return hashlib.sha256(ident.encode()).hexdigest()[:12]

    @property
    def views_file(self) -> str:
        """This database's views cache in a home: one per database, so a home can follow more
        than one shared ledger."""
        return f"views-pg-{self.digest}.sqlite"

    def connect_kwargs(self) -> dict[str, str | int]:
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
        }


@dataclass(frozen=True)
class SQLiteLocation:
    home: Path


Location = PostgresLocation | SQLiteLocation


def configured_url(explicit: str | None = None) -> str:
    """The URL given on the command line, else in the environment, else '' (local SQLite)."""
    if explicit is not None and explicit.strip():
        return explicit.strip()
    return os.environ.get(DATABASE_URL_VARIABLE, "").strip()


def views_path(home: Path, url: str) -> Path:
    """Where the views cache of the ledger that `url` names (or '' for the local SQLite
    ledger) lives, with `home` as this host's home directory."""
    if not url:
        return home / "views.sqlite"
    location = parse(url)
    if isinstance(location, PostgresLocation):
        return home / location.views_file
    return location.home / "views.sqlite"


def parse(url: str) -> Location:
    """Parse a database URL (or a plain path to a home directory)."""
    text = url.strip()
    if not text:
        raise MalformedDatabaseUrl("empty database URL")
    if "://" not in text:
        return _sqlite_home(Path(text))
    scheme = text.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return _sqlite_home(Path(unquote(text.split("://", 1)[1])))
    if scheme not in POSTGRES_SCHEMES:
        raise MalformedDatabaseUrl(
            f"unsupported database URL scheme {scheme!r}: use postgresql://... or sqlite:///path"
        )
    return _postgres(text)


def _sqlite_home(path: Path) -> SQLiteLocation:
    path = path.expanduser()
    if path.suffix == ".sqlite":
        if path.name != SQLITE_FILE:
            raise MalformedDatabaseUrl(
                f"a SQLite ledger file is always named {SQLITE_FILE} "
                f"(its directory is the ledger's home): got {path.name}"
            )
        path = path.parent
    return SQLiteLocation(path.resolve())


def _postgres(text: str) -> PostgresLocation:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise MalformedDatabaseUrl(
            "malformed PostgreSQL URL (expected postgresql://user:password@host:port/dbname; "
            "percent-encode special characters in the password)"
        ) from None
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise MalformedDatabaseUrl(
            "the PostgreSQL URL names no database (expected postgresql://user@host:port/dbname)"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"schema", "host"})
    if unknown:
        raise MalformedDatabaseUrl(
            f"unsupported PostgreSQL URL parameter {unknown[0]!r} (supported: schema, host; "
            "other libpq settings such as PGSSLMODE go in the environment)"
        )
    host = unquote(parts.hostname or "") or query.get("host", [""])[0]
    if not host:
        host = os.environ.get("PGHOST", "") or "localhost"
    user = unquote(parts.username or "") or os.environ.get("PGUSER", "")
    if not user:
        import getpass

        user = getpass.getuser()
    schema = query.get("schema", ["public"])[0].strip() or "public"
    if not schema.replace("_", "").isalnum() or len(schema) > 63:
        raise MalformedDatabaseUrl(f"invalid schema name {schema!r} (letters, digits and _ only)")
    port_number = port or int(os.environ.get("PGPORT", "") or 5432)
    password = parts.password
    if password is not None:
        password = unquote(password)
    else:
        password = os.environ.get("PGPASSWORD") or _pgpass(host, port_number, dbname, user) or ""
    return PostgresLocation(host, port_number, dbname, user, password, schema)


# libpq's password file: a line per server; more than this is not one.
PGPASS_LIMIT = 1024 * 1024


def _pgpass(host: str, port: int, dbname: str, user: str) -> str | None:
    """The password libpq would take from the password file (~/.pgpass or PGPASSFILE)."""
    path = Path(os.environ.get("PGPASSFILE", "") or Path.home() / ".pgpass")
    from ledger.home_files import UnsafeFile, read_regular

    try:
        # Followed (the user's own file), but never waited on or read without a cap.
        lines = read_regular(path, PGPASS_LIMIT, follow=True).data.decode().splitlines()
    except (OSError, UnsafeFile, UnicodeDecodeError):
        return None
    wanted = ("localhost" if host.startswith("/") else host, str(port), dbname, user)
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _pgpass_fields(line)
        if len(fields) != 5:
            continue
        if all(f == "*" or f == w for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4]
    return None


def _pgpass_fields(line: str) -> list[str]:
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in line:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields
