"""The ``mlops-hooks`` command line.

Subcommands are small functions registered in :data:`COMMANDS`; each imports what it needs when
it runs, so ``mlops-hooks plugins`` never loads the server's stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlops_hooks.cli.serve import add_bind_options, add_serve
from mlops_hooks.cli.sync import add_sync
from mlops_hooks.cli.tensorboard_import import add_import_tensorboard

__all__ = ["build_parser", "main"]

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


def _cmd_emit(args: argparse.Namespace) -> int:
    from mlops_hooks import events as ev
    from mlops_hooks.publisher import DeliveryError, deliver

    try:
        payload = json.loads(args.json)
    except json.JSONDecodeError as exc:
        print(f"mlops-hooks emit: --json is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(payload, dict):
        print(f"mlops-hooks emit: --json must be a JSON object of the event's fields, got "
              f"{type(payload).__name__}", file=sys.stderr)
        return 2
    if "type" in payload and payload["type"] != args.type:
        print(f"mlops-hooks emit: --json has type {payload['type']!r} but TYPE is "
              f"{args.type!r}", file=sys.stderr)
        return 2
    try:
        event = ev.from_dict({**payload, "type": args.type})
    except ev.EventError as exc:
        print(f"mlops-hooks emit: invalid event: {exc}", file=sys.stderr)
        return 2
    try:
        ack = deliver(event, url=args.url, token=args.token, timeout=args.timeout)
    except ValueError as exc:
        print(f"mlops-hooks emit: {exc}", file=sys.stderr)
        return 2
    except DeliveryError as exc:
        print(f"mlops-hooks emit: {exc}", file=sys.stderr)
        return 2 if exc.rejected else 1
    print(ack.seq)
    if ack.duplicate:
        print(f"mlops-hooks emit: the server already had event {ack.event_id}", file=sys.stderr)
    return 0


def _add_emit(sub: Any) -> None:
    p = sub.add_parser(
        "emit", help="send one event to the server and print its seq",
        description="Send one event through the publisher (the path emit() takes) and print "
        "the seq the server acknowledged it with. Exit status: 0 delivered, 1 server "
        "unreachable within the timeout, 2 invalid event or arguments.",
    )
    p.add_argument("type", metavar="TYPE",
                   help="the event type, e.g. training_progress, model_deployed")
    p.add_argument("--json", default="{}", metavar="OBJECT",
                   help="the event's fields as a JSON object (default: {})")
    p.add_argument("--url", default=None,
                   help="server URL (default: $MLOPS_HOOKS_URL or ws://127.0.0.1:8001/ws)")
    p.add_argument("--token", default=None, help="publisher token (default: $MLOPS_HOOKS_TOKEN)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for the acknowledgement "
                   "(default: $MLOPS_HOOKS_FLUSH_TIMEOUT or 5)")
    p.set_defaults(handler=_cmd_emit)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser(
        "demo", help="server plus real training runs and traffic streaming to its dashboard",
        description="Start the server, print the dashboard URL and stream real work to it: a "
        "Lightning MLP on the digits, a learning-rate probe that fails, a GridSearchCV, a CSV "
        "upload, a deployment and prediction traffic; then serve until Ctrl-C. Exit status: "
        "0 done, 1 a part failed or the server could not start, 2 missing dependencies, "
        "130 interrupted.")
    add_bind_options(sp)
    sp.add_argument("--db", metavar="PATH", default=None,
                    help="SQLite history file; the demo's CSV, uploads and server log go "
                    "beside it (default: ~/.local/share/mlops-hooks/demo/history.sqlite3)")
    sp.add_argument("--no-train", dest="train", action="store_false",
                    help="only serve the dashboard (no training, no traffic)")
    sp.add_argument("--quick", action="store_true",
                    help="shrink the work to a few seconds (smoke test)")
    sp.add_argument("--exit-after-work", action="store_true",
                    help="stop once the work is done instead of serving until Ctrl-C")
    sp.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from mlops_hooks.cli.demo import DemoOptions, run_demo

    try:
        options = DemoOptions(host=args.host, port=args.port, db=args.db, train=args.train,
                              quick=args.quick, exit_after_work=args.exit_after_work)
    except ValueError as exc:
        print(f"mlops-hooks demo: {exc}", file=sys.stderr)
        return 2
    return run_demo(options)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mlops-hooks",
        description="Watch ML training runs live: serve the dashboard, send events, "
        "sync runs kept offline, import TensorBoard logs, list plugins, run the demo.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("plugins", help="list registered plugins, their origin and hooks")
    p.add_argument("--side", choices=("training", "server"), default="training",
                   help="which process's plugins to list (default: training)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_cmd_plugins)
    _add_emit(sub)
    add_sync(sub)

    add_serve(sub)
    _add_demo(sub)
    add_import_tensorboard(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
