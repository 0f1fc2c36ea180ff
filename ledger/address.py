"""The natural key of a secret: (environment, service, name)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from uuid import NAMESPACE_URL, UUID, uuid5

DEFAULT_ENVIRONMENT = "default"
ENVIRONMENT_VARIABLE = "SECRETS_LEDGER_ENVIRONMENT"

# Ids are uuid5 of the natural key so that every process and host derives the same id.
_SECRET_NAMESPACE = uuid5(NAMESPACE_URL, "https://secrets-ledger.invalid/secret")


def default_environment() -> str:
    return os.environ.get(ENVIRONMENT_VARIABLE, "").strip() or DEFAULT_ENVIRONMENT


@dataclass(frozen=True, order=True)
class SecretAddress:
    environment: str
    service: str
    name: str

    @classmethod
    def parse(cls, environment: str, service: str, name: str) -> SecretAddress:
        """A validated address; raises ValidationFailed on a bad name."""
        from ledger.names import validate_address

        validate_address(environment, service, name)
        return cls(environment, service, name)

    @property
    def id(self) -> UUID:
        return secret_id(self.environment, self.service, self.name)

    def __str__(self) -> str:
        return f"{self.environment}/{self.service}/{self.name}"


def secret_id(environment: str, service: str, name: str) -> UUID:
    return uuid5(_SECRET_NAMESPACE, f"{environment}\x00{service}\x00{name}")
