"""``mlops-hooks serve``: its arguments, and running the server from them.

The demo's server process (:mod:`mlops_hooks.cli.demo._serve`) runs the same command through
:func:`main`, without going through the whole command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["add_bind_options", "add_serve", "main"]


def _size(text: str) -> int:
    """``'64MB'``, ``'512k'``, ``'1048576'`` → bytes (powers of 1024)."""
    units = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
             "g": 1024**3, "gb": 1024**3}
    raw = text.strip().lower()
    number = raw.rstrip("kmgb")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 1048576, 512KB or 100MB, "
                                         f"got {text!r}")
    return int(value * units[unit])


def add_bind_options(sp: argparse.ArgumentParser) -> None:
    """Add ``--host`` and ``--port`` (where a server listens) to ``sp``."""
    sp.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8001, help="TCP port (default 8001)")


def add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand to ``sub``."""
    sp = sub.add_parser(
        "serve", help="run the WebSocket broadcaster and dashboard",
        description="Serve the dashboard (GET /), subscribers (WS /ws), publishers "
        "(WS /ws/publish, POST /api/events), the REST fallback, uploads and /metrics.")
    add_bind_options(sp)
    sp.add_argument("--db", metavar="PATH", default=None,
                    help="SQLite history file, or :memory: (default: "
                    "~/.local/share/mlops-hooks/history.sqlite3)")
    sp.add_argument("--token", default=None,
                    help="publisher token (default: $MLOPS_HOOKS_TOKEN; none: open publishing)")
    sp.add_argument("--subscriber-token", default=None,
                    help="token dashboards must present (?token=); default: none")
    sp.add_argument("--backend", metavar="URL", default="memory://",
                    help="memory:// (default) or redis://host:port/db to share one stream "
                    "between servers")
    sp.add_argument("--metrics-interval", type=float, default=5.0, metavar="SECONDS",
                    help="seconds between system_metrics samples; 0 disables (default 5)")
    sp.add_argument("--stall-timeout", type=float, default=120.0, metavar="SECONDS",
                    help="seconds without events before a running run is marked stalled; "
                    "0 disables (default 120)")
    sp.add_argument("--crash-grace", type=float, default=5.0, metavar="SECONDS",
                    help="seconds a live run whose publisher disconnected has to come back "
                    "before it is marked crashed (default 5)")
    sp.add_argument("--heartbeat-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="seconds without a publisher's heartbeat before its runs wait out the "
                    "crash grace, and what runs left live by a restart wait for their "
                    "publishers; keep it above the publishers' ping interval (default 30)")
    sp.add_argument("--stall-factor", type=float, default=5.0, metavar="K",
                    help="a running run is stalled after K times its median step time "
                    "without a step (default 5) ...")
    sp.add_argument("--stall-floor", type=float, default=30.0, metavar="SECONDS",
                    help="... and never before this many seconds (default 30)")
    sp.add_argument("--replay-size", type=int, default=10_000, metavar="N",
                    help="events kept for ?since= replay (default 10000)")
    sp.add_argument("--upload-dir", metavar="DIR", default=None,
                    help="where uploaded files go (default: ~/.local/share/mlops-hooks/uploads)")
    sp.add_argument("--max-upload-size", type=_size, default=100 * 1024**2, metavar="SIZE",
                    help="largest accepted upload (default 100MB)")
    sp.add_argument("--upload-quota", type=_size, default=1024**3, metavar="SIZE",
                    help="total size the upload directory may reach; uploads beyond it get "
                    "507 (default 1GB)")
    sp.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                    help="extra browser origin allowed to connect (repeatable; * for any)")
    sp.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="extra Host name accepted (DNS-rebinding guard; repeatable; * for any)")
    sp.add_argument("--max-connections", type=int, default=1000, metavar="N",
                    help="cap on open dashboard (/ws) connections (default 1000)")
    sp.add_argument("--max-publishers", type=int, default=100, metavar="N",
                    help="cap on open /ws/publish connections, a budget of their own "
                    "(default 100)")
    sp.add_argument("--max-open-connections", type=int, default=None, metavar="N",
                    help="cap on all open TCP connections (default: as many as the "
                    "descriptor limit allows, less a reserve)")
    sp.add_argument("--request-timeout", type=float, default=5.0, metavar="SECONDS",
                    help="seconds a client has to send a whole request or WebSocket "
                    "handshake, and the longest pause in a request body (default 5)")
    sp.add_argument("--slow-close-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="seconds a closed slow dashboard has to read its close frame "
                    "before the connection is aborted (default 30)")
    sp.add_argument("--queue-size", type=_size, default=4 * 1024**2, metavar="SIZE",
                    help="byte budget of one subscriber's queue before it is closed with 4008 "
                    "(default 4MB)")
    sp.add_argument("--allow-relaunch", action="store_true",
                    help="let Retry/Retrain re-run a run's captured command line on this "
                         "machine (needs --token; see docs/security.md)")
    alerts = sp.add_argument_group(
        "alerts", "rules on every run's stream (docs/alerts.md), raised as system_alert events "
        "and sent to notifiers")
    alerts.add_argument("--alerts-config", metavar="PATH", default=None,
                        help="TOML file of rule thresholds and notifiers (Python 3.11+, or "
                        "the tomli package on 3.10)")
    alerts.add_argument("--alert-set", action="append", default=[], metavar="RULE.KEY=VALUE",
                        help="set one value, over the file (repeatable), e.g. "
                        "divergence.factor=3, finished.enabled=true, alerts.cooldown_s=600")
    alerts.add_argument("--notify", action="append", default=[], metavar="URL",
                        help="send alerts to an Apprise URL: slack://, discord://, tgram://, "
                        "ntfy://, mailto://, json://... (repeatable; needs the 'notify' extra)")
    alerts.add_argument("--webhook", action="append", default=[], metavar="URL",
                        help="POST each alert as JSON to this http(s) URL (repeatable)")
    alerts.add_argument("--public-url", metavar="URL", default=None,
                        help="the dashboard's URL as people reach it, for links in "
                        "notifications (default http://HOST:PORT)")
    sp.add_argument("--log-level", default="warning",
                    choices=("critical", "error", "warning", "info", "debug", "trace"),
                    help="server log level (default warning)")
    sp.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from mlops_hooks.server.alerts.config import AlertConfig, load_toml
    from mlops_hooks.server.config import ServerConfig

    token = args.token if args.token is not None else os.environ.get("MLOPS_HOOKS_TOKEN") or None
    try:
        alerts = AlertConfig.build(
            load_toml(args.alerts_config) if args.alerts_config else None,
            assignments=tuple(args.alert_set), notify=tuple(args.notify),
            webhooks=tuple(args.webhook))
        config = ServerConfig(
            host=args.host, port=args.port, db=args.db, token=token,
            subscriber_token=args.subscriber_token, backend=args.backend,
            metrics_interval=args.metrics_interval, stall_timeout=args.stall_timeout,
            crash_grace=args.crash_grace, heartbeat_timeout=args.heartbeat_timeout,
            stall_factor=args.stall_factor,
            stall_floor=args.stall_floor,
            replay_size=args.replay_size, upload_dir=args.upload_dir,
            max_upload_bytes=args.max_upload_size, upload_quota_bytes=args.upload_quota,
            allowed_origins=tuple(args.allowed_origin), allowed_hosts=tuple(args.allowed_host),
            max_connections=args.max_connections, max_publishers=args.max_publishers,
            max_open_connections=args.max_open_connections,
            request_timeout=args.request_timeout, slow_close_timeout=args.slow_close_timeout,
            queue_max_bytes=args.queue_size, alerts=alerts, public_url=args.public_url,
            allow_relaunch=args.allow_relaunch)
    except ValueError as exc:
        print(f"mlops-hooks serve: {exc}", file=sys.stderr)
        return 2
    from mlops_hooks.server.serve import run

    return run(config, log_level=args.log_level)


def main(argv: Sequence[str]) -> int:
    """Run ``mlops-hooks serve`` with ``argv`` as its arguments; returns the exit status."""
    parser = argparse.ArgumentParser(prog="mlops-hooks")
    add_serve(parser.add_subparsers(dest="command", required=True))
    return _cmd_serve(parser.parse_args(["serve", *argv]))
