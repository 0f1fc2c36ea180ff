"""`secrets tmux`: Ctrl-Space then S opens the secrets dashboard window (or switches to it).

The configuration lives in one marked block of the user's tmux configuration, so `install`
can tell it is already there (a second install changes nothing) and `uninstall` can remove
exactly what `install` added and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from commands import runtime

tmux_app = typer.Typer(
    help="tmux integration: Ctrl-Space then S opens the secrets dashboard window.",
    no_args_is_help=True,
)

BEGIN = "# >>> secrets-ledger tmux >>>"
END = "# <<< secrets-ledger tmux <<<"
DASHBOARD = "dashboard --watch 5"
WINDOW = "secrets"
TABLE = "secrets"

CommandOpt = Annotated[
    str | None,
    typer.Option(
        "--command",
        help="What the window runs (default: this `secrets` by its full path, with "
        f"`{DASHBOARD}`).",
        show_default=False,
    ),
]
PrefixOpt = Annotated[
    bool,
    typer.Option(
        "--prefix",
        help="Make C-Space the tmux prefix (then prefix S) instead of a C-Space S chord "
        "that leaves your prefix alone.",
    ),
]
FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="tmux configuration file (default: ~/.tmux.conf, or the XDG one if only it exists).",
        show_default=False,
    ),
]


def _quote(command: str) -> str:
    """`command` as one double-quoted tmux word: tmux expands `$` and `\\` escapes in there."""
    from ledger.errors import ValidationFailed

    if any(c in command for c in "\n\r\x00") or not command.strip():
        raise ValidationFailed("tmux-command", "--command must be one non-empty line")
    escaped = command.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def this_secrets() -> str:
    """The running `secrets` as a shell command by absolute path: the tmux server's PATH is
    not the shell's that ran `install` and may lack it (then the window closed at once,
    saying nothing)."""
    import shlex
    import sys

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name != "__main__.py" and os.access(script, os.X_OK):
        return shlex.quote(os.path.abspath(script))
    # `python -m commands`: the same interpreter, so the same installed package.
    return f"{shlex.quote(sys.executable)} -m commands"


def default_command() -> str:
    return f"{this_secrets()} {DASHBOARD}"


def unreachable(command: str) -> str | None:
    """A warning when the program `command` starts is not found on this PATH, else None."""
    import shlex
    import shutil

    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or "=" in words[0] or shutil.which(words[0]) is not None:
        return None
    return (
        f"warning: {words[0]!r} is not found on this PATH, and the tmux server's may be "
        "shorter still; give --command a full path"
    )


def snippet_text(command: str | None = None, prefix: bool = False) -> str:
    command = command or default_command()
    # `new-window -S` selects the window if one of that name exists: "opens or switches to".
    # remain-on-exit failed: a command that fails leaves its window and its message on
    # screen instead of closing at once; set in the same binding, before tmux can see the
    # program exit (tmux runs a binding's commands before it handles a child's exit).
    open_window = (
        f"new-window -S -n {WINDOW} {_quote(command)} \\; set-option -w remain-on-exit failed"
    )
    if prefix:
        bindings = [
            "# C-Space is the prefix; prefix S opens (or switches to) the secrets dashboard.",
            "set-option -g prefix C-Space",
            "bind-key C-Space send-prefix",
            f"bind-key S {open_window}",
        ]
    else:
        bindings = [
            "# C-Space then S opens (or switches to) the secrets dashboard; the prefix is",
            "# left alone. C-Space enters a key table of its own, S acts in that table.",
            f"bind-key -n C-Space switch-client -T {TABLE}",
            f"bind-key -T {TABLE} S {open_window}",
        ]
    return "\n".join(
        [
            BEGIN,
            "# Added by `secrets tmux install`; `secrets tmux uninstall` removes this block.",
            *bindings,
            END,
        ]
    )


def default_config() -> Path:
    """The file tmux reads: ~/.tmux.conf, else the XDG location when only that one exists."""
    home_conf = Path.home() / ".tmux.conf"
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "tmux" / "tmux.conf"
    if not home_conf.exists() and xdg.exists():
        return xdg
    return home_conf


def _split(text: str, path: Path) -> tuple[list[str], int | None, int | None]:
    """Lines of `text`, and the indices of our BEGIN and END markers (None when absent)."""
    from ledger.errors import ValidationFailed

    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == END]
    if not begins and not ends:
        return lines, None, None
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        # Someone edited the markers: guessing what to remove could delete their lines.
        raise ValidationFailed(
            "tmux-config",
            f"{path} has unmatched or repeated secrets-ledger markers; fix them by hand",
        )
    return lines, begins[0], ends[0]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    tmp = path.with_name(path.name + ".secrets-ledger.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install_block(path: Path, block: str) -> bool:
    """Add or update the marked block; False when the file already holds exactly `block`."""
    text = path.read_text() if path.exists() else ""
    lines, begin, end = _split(text, path)
    new_block = [line + "\n" for line in block.splitlines()]
    if begin is None or end is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        updated = [*lines, *new_block]
    else:
        if [line.rstrip("\r\n") for line in lines[begin : end + 1]] == block.splitlines():
            return False
        updated = [*lines[:begin], *new_block, *lines[end + 1 :]]
    _write(path, "".join(updated))
    return True


def uninstall_block(path: Path) -> bool:
    """Remove the marked block; False when there is none."""
    if not path.exists():
        return False
    lines, begin, end = _split(path.read_text(), path)
    if begin is None or end is None:
        return False
    _write(path, "".join([*lines[:begin], *lines[end + 1 :]]))
    return True


@tmux_app.command("snippet")
def snippet(command: CommandOpt = None, prefix: PrefixOpt = False) -> None:
    """Print the tmux configuration block (to paste by hand or review before installing).

    Example: secrets tmux snippet --prefix
    """
    print(snippet_text(command, prefix))


@tmux_app.command("install")
def install(file: FileOpt = None, command: CommandOpt = None, prefix: PrefixOpt = False) -> None:
    """Add the block to your tmux configuration (idempotent: a second install changes nothing).

    Example: secrets tmux install && tmux source-file ~/.tmux.conf
    """
    path = file or default_config()
    warning = unreachable(command) if command else None
    if warning:
        runtime.info(warning)
    if install_block(path, snippet_text(command, prefix)):
        runtime.info(f"installed in {path}; reload with: tmux source-file {path}")
    else:
        runtime.info(f"already installed in {path}; nothing changed")


@tmux_app.command("uninstall")
def uninstall(file: FileOpt = None) -> None:
    """Remove exactly the block `secrets tmux install` added; nothing else changes.

    Bindings already loaded stay in a running tmux server until it restarts.

    Example: secrets tmux uninstall
    """
    path = file or default_config()
    if uninstall_block(path):
        runtime.info(f"removed from {path}")
    else:
        runtime.info(f"not installed in {path}; nothing changed")
