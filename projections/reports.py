"""The compliance report: one deterministic document, rendered as Markdown, JSON, CSV or HTML.

Everything in it is a fold of the log up to the as-of position, so the same ledger and the same
as-of time give the same bytes: lists are sorted, nothing random (fingerprints, ids, hashes) is
shown, and the only date is the as-of date (by default the newest event's timestamp, not the
time the report was run).

Rotation status of live secrets comes from the rotation projection (projections/compliance.py,
`ledger.rotation.runs.assess`: catalogue rotation and warning days, 90 and 14 for unknown keys; a
manual set counts as a rotation, a rollback does not reset the age), so the report and
`secrets rotation status` never disagree. Deleted and destroyed secrets are listed with "n/a".
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.records import Denial, Incident, Rejection
from ledger.rotation.runs import DEFAULT_ROTATION_DAYS, DEFAULT_WARNING_DAYS
from ledger.secret import Secret
from projections.replay import Replayer, apply, empty
from projections.timefmt import iso, parse_iso

if TYPE_CHECKING:
    from ledger.application import SecretsLedger
    from ledger.integrity.verify import IntegrityReport
    from ledger.rotation.catalogue import Catalogue

FORMATS = ("md", "json", "csv", "html")


def _outcome(ended: bool, needs_value: int, failed: int) -> str:
    """What an emergency rotation's record says. `EmergencyRotationCompleted` means the command
    ended, not that the incident is over: secrets may still wait for a provider-issued value
    (`emergency-rotate --values-file` resumes the same incident) or have failed."""
    if not ended:
        return "command did not end (interrupted or still running)"
    if needs_value == 0 and failed == 0:
        return "command ended; every secret rotated"
    return f"command ended; open: {needs_value} still need a value, {failed} failed"


class _Facts:
    """The fold the report needs beyond the state: incidents, denials, rejections."""

    def __init__(self) -> None:
        self.state = empty()
        self.incidents: dict[str, dict[str, Any]] = {}
        self.emergency_versions: list[dict[str, Any]] = []
        self.denials: dict[str, Counter[str]] = {}
        self.rejections: Counter[tuple[str, str]] = Counter()

    def apply(self, position: int, event: Any) -> None:
        cls = type(event)
        if cls is Secret.VersionAdded and event.reason == "emergency":
            secret = self.state["secrets"].get(event.originator_id.hex)
            if secret is not None:
                self.emergency_versions.append(
                    {
                        "secret": f"{secret['environment']}/{secret['service']}/{secret['name']}",
                        "version": event.version,
                        "at": iso(event.timestamp),
                        "operator": event.operator,
                    }
                )
        elif cls is Incident.EmergencyRotationStarted:  # type: ignore[attr-defined]
            # Incident ids are random: keyed here, never shown (the report must be reproducible).
            self.incidents[event.originator_id.hex] = {
                "started_at": iso(event.timestamp),
                "operator": event.operator,
                "reason": event.reason,
                "command_ended": False,
                "completed": False,  # the former name of command_ended, kept for consumers
                "outcome": _outcome(False, 0, 0),
                "rotated": 0,
                "needs_value": 0,
                "failed": 0,
            }
        elif cls is Incident.EmergencyRotationCompleted:  # type: ignore[attr-defined]
            found = self.incidents.get(event.originator_id.hex)
            if found is not None:
                # A resumed emergency records this again: the newest one is what stands.
                found.update(
                    command_ended=True,
                    completed=True,
                    outcome=_outcome(True, len(event.needs_value), len(event.failed)),
                    rotated=len(event.rotated),
                    needs_value=len(event.needs_value),
                    failed=len(event.failed),
                )
        elif cls is Denial.AccessDenied:  # type: ignore[attr-defined]
            self.denials.setdefault(event.operator, Counter())[event.action] += 1
        elif cls is Rejection.ValidationFailed:  # type: ignore[attr-defined]
            self.rejections[(event.rule, f"{event.environment}/{event.service}/{event.name}")] += 1
        apply(self.state, position, event)


def _policy(catalogue: Catalogue, service: str, name: str) -> int:
    spec = catalogue.lookup(service, name)
    return spec.rotation_days if spec is not None else DEFAULT_ROTATION_DAYS


def build(
    ledger: SecretsLedger,
    *,
    as_of: datetime | None = None,
    position: int | None = None,
    catalogue: Catalogue | None = None,
    integrity: IntegrityReport | None = None,
) -> dict[str, Any]:
    """The report as data. `position` (else the last one stamped at or before `as_of`, else
    the head) cuts the log; `as_of` (else that position's timestamp) is the age reference."""
    from ledger.rotation.catalogue import load_catalogue

    catalogue = catalogue or load_catalogue(None)
    replayer = Replayer(ledger)
    if position is None:
        position = (
            replayer.position_at(as_of)
            if as_of is not None
            else ledger.recorder.max_notification_id() or 0
        )
    facts = _Facts()
    for at, event in replayer.events(0, position):
        facts.apply(at, event)
    state = facts.state
    moment = as_of or (parse_iso(state["timestamp"]) if state["timestamp"] else None)

    assessed: dict[tuple[str, str, str], str] = {}
    if moment is not None:
        from projections.compliance import compliance

        # The same cut as the inventory (by position), so both halves describe one state.
        for a in compliance(ledger, catalogue, moment, position=position).secrets:
            assessed[(a.address.environment, a.address.service, a.address.name)] = a.status
    inventory = []
    for s in state["secrets"].values():
        if s["current_version"] == 0:
            continue
        days = _policy(catalogue, s["service"], s["name"])
        age = None
        if moment is not None and s["last_rotation"]:
            age = max(0, (moment - parse_iso(s["last_rotation"])).days)
        lifecycle = "destroyed" if s["destroyed"] else "deleted" if s["deleted"] else "active"
        status = "n/a"
        if lifecycle == "active":
            # Both cuts are by position; "unknown" only if the projection could not see it.
            status = assessed.get((s["environment"], s["service"], s["name"]), "unknown")
        inventory.append(
            {
                "environment": s["environment"],
                "service": s["service"],
                "name": s["name"],
                "version": s["current_version"],
                "state": lifecycle,
                "last_rotation": s["last_rotation"] or "",
                "age_days": age,
                "rotation_days": days,
                "status": status,
            }
        )
    inventory.sort(key=lambda r: (r["environment"], r["service"], r["name"]))

    by_environment: Counter[tuple[str, str]] = Counter(
        (r["environment"], r["service"]) for r in inventory if r["state"] == "active"
    )
    statuses = Counter(r["status"] for r in inventory)
    roles: dict[str, list[str]] = {}
    for o in state["operators"].values():
        roles.setdefault(o["role"] or "(revoked)", []).append(o["name"])
    denied = [
        {"operator": who, "count": sum(c.values()), "actions": dict(sorted(c.items()))}
        for who, c in sorted(facts.denials.items())
    ]
    rejected = [
        {"rule": rule, "secret": target, "count": n}
        for (rule, target), n in sorted(facts.rejections.items())
    ]
    incidents = sorted(facts.incidents.values(), key=lambda i: (i["started_at"], i["reason"]))
    return {
        "title": "secrets-ledger compliance report",
        "as_of": iso(moment) if moment else None,
        "position": state["position"],
        "policy": (
            f"rotation every {DEFAULT_ROTATION_DAYS} days unless the key catalogue says "
            f"otherwise; due-soon {DEFAULT_WARNING_DAYS} days before"
        ),
        "summary": {
            "secrets": len(inventory),
            "active": sum(1 for r in inventory if r["state"] == "active"),
            "ok": statuses["ok"],
            "due_soon": statuses["due-soon"],
            "overdue": statuses["overdue"],
            # Values older than an emergency rotation that did not replace them
            # (ledger.rotation.runs).
            "emergency_pending": statuses["emergency-pending"],
            "exempt": statuses["exempt"],
            "emergency_rotations": len(incidents),
            "emergency_versions": len(facts.emergency_versions),
            "denied_access": sum(d["count"] for d in denied),
            "validation_failures": sum(r["count"] for r in rejected),
        },
        "inventory": inventory,
        "by_environment": [
            {"environment": env, "service": svc, "secrets": n}
            for (env, svc), n in sorted(by_environment.items())
        ],
        "emergency_rotations": incidents,
        "emergency_versions": sorted(
            facts.emergency_versions, key=lambda v: (v["at"], v["secret"], v["version"])
        ),
        "denied_access": denied,
        "validation_failures": rejected,
        "role_holders": [
            {"role": role, "operators": sorted(names)} for role, names in sorted(roles.items())
        ],
        "integrity": _integrity(integrity),
    }


def _integrity(report: IntegrityReport | None) -> dict[str, Any]:
    if report is None:
        return {"checked": False}
    fault = report.fault
    return {
        "checked": True,
        "ok": fault is None,
        "events_valid": report.events_valid,
        "events_checked": report.events_checked,
        "checkpoints_valid": report.checkpoints_valid,
        "checkpoints_checked": report.checkpoints_checked,
        "fault": None
        if fault is None
        else {"kind": fault.kind, "position": fault.position, "detail": fault.detail},
    }


# -- rendering ----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


_SECTIONS: list[tuple[str, str, list[str]]] = [
    (
        "inventory",
        "Inventory and rotation status",
        [
            "environment",
            "service",
            "name",
            "version",
            "state",
            "last_rotation",
            "age_days",
            "rotation_days",
            "status",
        ],
    ),
    (
        "by_environment",
        "Active secrets by environment and service",
        ["environment", "service", "secrets"],
    ),
    (
        "emergency_rotations",
        "Emergency rotations",
        ["started_at", "operator", "reason", "outcome", "rotated", "needs_value", "failed"],
    ),
    (
        "emergency_versions",
        "Versions written in emergencies",
        ["at", "secret", "version", "operator"],
    ),
    ("denied_access", "Denied access by operator", ["operator", "count", "actions"]),
    ("validation_failures", "Validation failures", ["rule", "secret", "count"]),
    ("role_holders", "Role holders", ["role", "operators"]),
]


# Column headings where the key alone would mislead.
_HEADINGS = {"needs_value": "still need a value"}


def _heading(column: str) -> str:
    return _HEADINGS.get(column, column.replace("_", " "))


def _integrity_line(doc: dict[str, Any]) -> str:
    i = doc["integrity"]
    if not i["checked"]:
        return "not checked"
    line = (
        f"{i['events_valid']}/{i['events_checked']} events valid, "
        f"{i['checkpoints_valid']}/{i['checkpoints_checked']} checkpoints valid"
    )
    if i["fault"]:
        line += f"; FAULT {i['fault']['kind']} at position {i['fault']['position']}"
    return line


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_md(doc: dict[str, Any]) -> str:
    out = [
        f"# {doc['title']}",
        "",
        f"As of {doc['as_of']} (ledger position {doc['position']}).",
        "",
        f"Policy: {doc['policy']}.",
        "",
        "## Summary",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {k.replace('_', ' ')} | {v} |" for k, v in doc["summary"].items()),
        "",
        "## Integrity",
        "",
        _integrity_line(doc),
        "",
    ]
    for key, title, columns in _SECTIONS:
        out += [f"## {title}", ""]
        rows = doc[key]
        if not rows:
            out += ["None.", ""]
            continue
        out.append("| " + " | ".join(_heading(c) for c in columns) + " |")
        out.append("|" + "---|" * len(columns))
        for row in rows:
            out.append("| " + " | ".join(_md_escape(_cell(row[c])) for c in columns) + " |")
        out.append("")
    return "\n".join(out)


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def render_csv(doc: dict[str, Any]) -> str:
    """The inventory with rotation status, one row per secret (the other sections are
    summaries best read in md, json or html)."""
    columns = _SECTIONS[0][2]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in doc["inventory"]:
        writer.writerow([_cell(row[c]) for c in columns])
    return buffer.getvalue()


def render_html(doc: dict[str, Any]) -> str:
    e = html.escape

    def table(columns: list[str], rows: Iterable[dict[str, Any]]) -> list[str]:
        lines = [
            "<table>",
            "<tr>" + "".join(f"<th>{e(_HEADINGS.get(c, c))}</th>" for c in columns) + "</tr>",
        ]
        lines += [
            "<tr>" + "".join(f"<td>{e(_cell(r[c]))}</td>" for c in columns) + "</tr>" for r in rows
        ]
        return [*lines, "</table>"]

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc['title'])}</title></head><body>",
        f"<h1>{e(doc['title'])}</h1>",
        f"<p>As of {e(str(doc['as_of']))} (ledger position {doc['position']}).</p>",
        f"<p>Policy: {e(doc['policy'])}.</p>",
        "<h2>Summary</h2>",
        *table(
            ["measure", "value"], [{"measure": k, "value": v} for k, v in doc["summary"].items()]
        ),
        "<h2>Integrity</h2>",
        f"<p>{e(_integrity_line(doc))}</p>",
    ]
    for key, title, columns in _SECTIONS:
        out.append(f"<h2>{e(title)}</h2>")
        out += table(columns, doc[key]) if doc[key] else ["<p>None.</p>"]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "md": render_md,
    "json": render_json,
    "csv": render_csv,
    "html": render_html,
}
