"""The operating guide's command names, accepted as hidden aliases.

The team's guide (`bun run secrets:list`, `secrets:rotate:status`, ...) reads as `secrets
secrets:list`; each of its names is taken as the command it stands for. Hidden: neither help
nor docs/cli.md list them, so the CLI keeps one name per command. Kept free of imports: the
entry point (commands/launch.py) resolves them before anything else loads.
"""

from __future__ import annotations

# Every `secrets:` name in the operating guide, and the command it is.
GUIDE: dict[str, str] = {
    "secrets:list": "list",
    "secrets:set": "set",
    "secrets:delete": "delete",
    "secrets:rotate": "rotate",
    "secrets:emergency-rotate": "emergency-rotate",
    "secrets:provision": "provision",
    "secrets:rotate:status": "rotate-status",
    "secrets:versions": "versions",
    "secrets:rollback": "rollback",
}


def resolve(args: list[str]) -> list[str]:
    """`args` with a leading guide name replaced by its command."""
    if args and args[0] in GUIDE:
        return [GUIDE[args[0]], *args[1:]]
    return args


def suggestion(args: list[str], known: set[str]) -> str | None:
    """The command a mistyped command line most likely meant, as `secrets WORD`, or None:
    two words of one command (`rotate status`), or a guide-style colon name."""
    words = [arg for arg in args if not arg.startswith("-")]
    if not words:
        return None
    first = words[0]
    if len(words) > 1 and f"{first}-{words[1]}" in known:
        return f"secrets {first}-{words[1]}"
    dashed = first.removeprefix("secrets:").replace(":", "-")
    if dashed in known and dashed != first:
        return f"secrets {dashed}"
    return None  # a near spelling: click's own message names it already
