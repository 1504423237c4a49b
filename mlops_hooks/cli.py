"""The ``mlops-hooks`` command line.

Subcommands are small functions registered in :data:`COMMANDS`; each imports what it needs when
it runs, so ``mlops-hooks plugins`` never loads the server's stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_plugins(args: argparse.Namespace) -> int:
    from mlops_hooks.manager import create_plugin_manager

    pm = create_plugin_manager(args.side)
    rows = pm.describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no plugins registered")
        return 0
    width = max(len(r["name"]) for r in rows)
    origin_width = max(len(r["origin"]) for r in rows)
    for row in rows:
        hooks = ", ".join(row["hooks"]) or "(no hooks)"
        print(f"{row['name']:<{width}}  {row['origin']:<{origin_width}}  {hooks}")
    return 0


def _not_yet(issue: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(f"mlops-hooks {args.command}: not available yet (tracked in {issue})",
              file=sys.stderr)
        return 2

    return handler


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mlops-hooks",
        description="Watch ML training runs live: serve the dashboard, send events, "
        "list plugins, run the demo.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("plugins", help="list registered plugins, their origin and hooks")
    p.add_argument("--side", choices=("training", "server"), default="training",
                   help="which process's plugins to list (default: training)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_cmd_plugins)

    for name, text, issue in (
        ("serve", "run the WebSocket broadcaster and dashboard (not available yet)", "issue 3"),
        ("emit", "send one event to the server (not available yet)", "issue 4"),
        ("demo", "server plus a real training run streaming to it (not available yet)",
         "issue 7"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.set_defaults(handler=_not_yet(issue))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
