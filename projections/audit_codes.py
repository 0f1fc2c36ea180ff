"""The HBSE audit code catalogue. Once released, a code never changes meaning."""

from __future__ import annotations

from typing import Final

CODES: Final[dict[str, str]] = {
    "HBSE-001": "secret value read",
    "HBSE-002": "secret version added (set)",
    "HBSE-003": "secret deleted, restored or destroyed",
    "HBSE-004": "secret rotated (scheduled, manual or emergency rotation)",
    "HBSE-005": "secret rolled back to an earlier version",
    "HBSE-006": "access denied (unauthorized access attempt)",
    "HBSE-007": "validation failed (value or name rejected)",
    "HBSE-008": "emergency rotation started or completed",
    "HBSE-009": "secret provisioned",
    "HBSE-010": "operator session opened or closed",
    "HBSE-011": "operator role granted, revoked or token issued",
    "HBSE-012": "old version's value pruned by the retention policy",
    "HBSE-013": "integrity check failed",
    "HBSE-014": "ledger initialised or reconfigured",
    "HBSE-015": "signed checkpoint recorded",
}

REASON_CODES: Final[dict[str, tuple[str, str]]] = {
    "manual": ("HBSE-002", "set"),
    "rotation": ("HBSE-004", "rotate"),
    "emergency": ("HBSE-004", "emergency-rotate"),
    "rollback": ("HBSE-005", "rollback"),
    "provision": ("HBSE-009", "provision"),
}

# Event class (qualified name) -> (code, action) for every event other than VersionAdded.
EVENT_CODES: Final[dict[str, tuple[str, str]]] = {
    "Secret.Registered": ("HBSE-002", "register"),
    "Secret.Deleted": ("HBSE-003", "delete"),
    "Secret.Restored": ("HBSE-003", "restore"),
    "Secret.Destroyed": ("HBSE-003", "destroy"),
    "Secret.VersionPruned": ("HBSE-012", "prune"),
    "ReadReceipt.SecretRead": ("HBSE-001", "get"),
    "Denial.AccessDenied": ("HBSE-006", "denied"),
    "Rejection.ValidationFailed": ("HBSE-007", "validate"),
    "GrantRejection.GrantRefused": ("HBSE-007", "grant"),
    "Incident.EmergencyRotationStarted": ("HBSE-008", "emergency-rotate"),
    "Incident.EmergencyRotationCompleted": ("HBSE-008", "emergency-rotate"),
    "Operator.Registered": ("HBSE-011", "grant"),
    "Operator.RoleGranted": ("HBSE-011", "grant"),
    "Operator.Revoked": ("HBSE-011", "revoke"),
    "Operator.TokenIssued": ("HBSE-011", "issue-token"),
    "Operator.SessionOpened": ("HBSE-010", "login"),
    "Operator.SessionClosed": ("HBSE-010", "logout"),
    "IntegrityAlarm.IntegrityCheckFailed": ("HBSE-013", "verify"),
    "LedgerSettings.Initialized": ("HBSE-014", "init"),
    "LedgerSettings.RetentionChanged": ("HBSE-014", "configure"),
    "LedgerSettings.FingerprintKeyExported": ("HBSE-014", "export-key"),
    "LedgerSettings.FingerprintKeyImported": ("HBSE-014", "import-key"),
    "LedgerSettings.SeniorEngineersChanged": ("HBSE-011", "senior-engineers"),
    "LedgerSettings.VaultChosen": ("HBSE-014", "choose-vault"),
    "Checkpoint.CheckpointSigned": ("HBSE-015", "checkpoint"),
    "RotationRun.Started": ("HBSE-004", "rotate"),
    "RotationRun.BatchEnded": ("HBSE-004", "rotate"),
    "RotationRun.Abandoned": ("HBSE-004", "rotate"),
    "ScheduleChange.ScheduleChanged": ("HBSE-004", "rotate-schedule"),
}
