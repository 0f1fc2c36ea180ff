"""The domain's error hierarchy.

The domain raises these; only the CLI edge (commands/exit_codes.py) maps them to exit codes.
Messages never contain a secret value.
"""


class LedgerError(Exception):
    """Base of every error the ledger reports to an operator."""


class NotInitialized(LedgerError):
    """The ledger has not been created yet (run `secrets init`)."""


class NotFound(LedgerError):
    """An unknown secret, version or operator."""


class PermissionDenied(LedgerError):
    """The caller's session or role does not allow the action. Already recorded as a denial."""


class ValidationFailed(LedgerError):
    """A name, value or argument broke a documented rule."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class IntegrityFailure(LedgerError):
    """The ledger's history or the keychain disagree with what was recorded."""


class ConflictUnresolved(LedgerError):
    """Concurrent writers kept winning; retries ran out."""


class VersionConflict(ConflictUnresolved):
    """A check-and-set (`--if-version N`) found another current version: nothing written."""


class KeychainUnavailable(LedgerError):
    """No secure keychain could be used (missing, locked, refused, or insecure)."""


class LedgerUnavailable(LedgerError):
    """The event store cannot be opened or written (read-only, corrupt, locked)."""


class BadConfiguration(LedgerError):
    """A setting (such as the database URL) is malformed or names something unusable."""
