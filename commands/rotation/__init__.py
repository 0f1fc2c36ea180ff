"""Rotation commands: rotate (one, due, all; schedule), rotate-status, emergency-rotate,
provision. Each lives in a module of its own; `register` puts them on the root app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from commands.rotation.emergency import emergency_rotate
    from commands.rotation.provision import provision
    from commands.rotation.rotate import rotate_app, rotate_status
    from commands.rotation.schedule import schedule_app

    rotate_app.add_typer(schedule_app, name="schedule")
    app.add_typer(rotate_app, name="rotate")
    app.command("rotate-status")(rotate_status)
    app.command("emergency-rotate")(emergency_rotate)
    app.command("provision")(provision)
