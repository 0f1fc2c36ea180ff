"""New values for keys whose rotation kind is ``generated``, from the OS CSPRNG (`secrets`).

``generated_password``
    40 characters drawn uniformly from ``PASSWORD_ALPHABET``: the 52 ASCII letters, the 10 digits
    and the four RFC 3986 "unreserved" punctuation marks ``- _ . ~`` (66 symbols, so about 241
    bits of entropy). These need no quoting or percent-encoding in URLs, connection strings, shell
    words, TOML/JSON/YAML strings or ``.env`` files. Every password has at least one lower-case
    letter, one upper-case letter, one digit and one punctuation mark, and starts and ends with
    a letter or digit (so it is never read as a command-line option). Those guarantees are met by
    rejection sampling: whole candidates are drawn until one qualifies (about 4 in 5 do), so
    every qualifying password is equally likely. Each result passes
    `ledger.validation.validate_value` for its spec.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import Final

from ledger.rotation.catalogue import KeySpec

__all__ = ["ALPHABET_SYMBOLS", "PASSWORD_ALPHABET", "PASSWORD_LENGTH", "generate_value"]

PASSWORD_LENGTH: Final = 40
ALPHABET_SYMBOLS: Final = "-_.~"
PASSWORD_ALPHABET: Final = (
    string.ascii_lowercase + string.ascii_uppercase + string.digits + ALPHABET_SYMBOLS
)
_EDGE: Final = frozenset(string.ascii_letters + string.digits)
_CLASSES: Final = tuple(
    frozenset(chars)
    for chars in (
        string.ascii_lowercase,
        string.ascii_uppercase,
        string.digits,
        ALPHABET_SYMBOLS,
    )
)


def _qualifies(candidate: str) -> bool:
    return (
        candidate[0] in _EDGE
        and candidate[-1] in _EDGE
        and all(not chars.isdisjoint(candidate) for chars in _CLASSES)
    )


def _password() -> str:
    while True:
        candidate = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))
        if _qualifies(candidate):
            return candidate


_GENERATORS: Final[dict[str, Callable[[], str]]] = {"generated_password": _password}


def generate_value(spec: KeySpec) -> str:
    """A fresh random value for `spec`; ValueError unless its rotation kind is ``generated``."""
    if spec.rotation != "generated":
        raise ValueError(
            f"{spec.service}/{spec.name} has rotation {spec.rotation!r}: "
            "only 'generated' keys can be generated"
        )
    generator = _GENERATORS.get(spec.format)
    if generator is None:
        raise ValueError(f"{spec.service}/{spec.name}: cannot generate format {spec.format!r}")
    return generator()
