"""``make bench``: every benchmark side by side with its baseline, in one table.

Parts (each in its own process, in this order; the measuring code is the owners' scripts):

* ``callback`` - Lightning fit, tiny model, 3000 steps at batch size 1: no callback /
  ``MLOpsCallback`` with the server up / with the server down / ``TQDMProgressBar``
  (``callback_overhead.py``). Target: ratio <= 1.01.
* ``emit`` - ``emit()`` in the calling thread, median and p99, server up and down, against an
  empty call timed in the same loop (``emit_cost.py``). Target: median <= 5 µs.
* ``fanout`` - one publisher to S = 10, 100, 500 subscribers in other processes: deliveries/s,
  publish→receive p50/p99, server CPU and RSS, against a naive Starlette loop and
  encode/broadcaster's memory backend (``fanout.py``). Target: no slower than the naive loop.
* ``paced`` - 100 subscribers at 200 events/s, same three servers. Target: p99 < 20 ms.
* ``stall`` - 5 of 50 subscribers never read, against 45 readers alone. Target: the readers
  within 1.2x, RSS bounded.
* ``history`` - ``/api/runs`` and one run's series with 1,000 runs x 2,000 points, against a
  naive implementation (no index, all points); ingest with series storage / without, as a
  ratio, and against the previous writer (a row per point) (``run_history.py``).
* ``sampler`` - the training machine's sampler (``host_metrics``) every 0.05 s, switched on and
  off every 100 steps of one Lightning fit: the ratio of neighbouring blocks' step times, with
  the same toggling at ``MLOPS_HOOKS_SYSTEM_INTERVAL=0`` as the A/A (``sampler_overhead.py``).
  Target: within the A/A's spread.

Usage::

    python benchmarks/run.py               # about 8 minutes on 2 cores
    python benchmarks/run.py --quick       # 3-4 minutes, smaller runs
    python benchmarks/run.py --parts callback,emit --json results.json

Numbers depend on the machine and on what else runs on it; compare the columns of one run.
Nothing here passes or fails a build: the "met" column only reads the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _run_report as report  # noqa: E402

MARKER = "@@bench-result@@ "
PART_NAMES = ("callback", "emit", "fanout", "paced", "stall", "history", "sampler")
PART_TIMEOUT = 900


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def _load() -> float:
    """The 1-minute load average (what else ran on the machine), or NaN where unknown."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def run_part(name: str, quick: bool) -> int:
    """Child mode: run one part and write its result as one marked JSON line on stdout."""
    import _run_parts as parts

    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the libraries print must not mix with the result
    try:
        result = parts.PARTS[name](quick, _log)
    except Exception as exc:  # reported in the table; the other parts still run
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    out.write(MARKER + json.dumps(result) + "\n")
    out.flush()
    return 0


def spawn_part(name: str, quick: bool) -> dict[str, Any]:
    """Run one part in a child process (its progress goes to our stderr)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name]
    if quick:
        command.append("--quick")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for var in ("MLOPS_HOOKS_URL", "MLOPS_HOOKS_DISABLE", "MLOPS_HOOKS_JSONL", "MLOPS_HOOKS_AUTO"):
        env.pop(var, None)
    try:
        process = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env,
                                 timeout=PART_TIMEOUT, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {PART_TIMEOUT} s"}
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(MARKER):
            return dict(json.loads(line[len(MARKER):]))
    return {"error": f"the part exited with {process.returncode} without a result"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (3-4 minutes)")
    parser.add_argument("--parts", default=",".join(PART_NAMES),
                        help=f"comma list of parts to run (default: {','.join(PART_NAMES)})")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results here")
    parser.add_argument("--part", choices=PART_NAMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        return run_part(args.part, args.quick)
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PART_NAMES))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PART_NAMES)}")

    info = report.machine()
    started = time.monotonic()
    results: dict[str, Any] = {}
    loads = [_load()]
    for name in chosen:
        t0 = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = spawn_part(name, args.quick)
        loads.append(_load())
        print(f"{name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    info["load"] = ", ".join(f"{value:.1f}" for value in loads)

    lines = [f"mlops-hooks benchmarks ({'quick' if args.quick else 'full'} run, "
             f"{elapsed / 60:.1f} min)", "", *report.machine_lines(info), "",
             *report.table(results)]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "quick": args.quick,
                                               "seconds": elapsed, "results": results},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
