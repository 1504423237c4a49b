"""The report of ``run.py``: the machine, and one Markdown table of every comparison."""

from __future__ import annotations

import os
import platform
import statistics
from importlib import metadata
from typing import Any

Row = tuple[str, str, str, str, str, str, str]
HEADER: Row = ("benchmark", "case", "mlops-hooks", "baseline (same run)", "ratio", "target",
               "met")
MB = "MB"
QUEUE_BUDGET_MB = 4  # mlops-hooks serve --queue-size default, per subscriber


# ---------------------------------------------------------------------- machine

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    info = {"cpu": _cpu_model(), "logical_cpus": str(os.cpu_count())}
    try:
        import psutil

        info["cores"] = str(psutil.cpu_count(logical=False))
        info["ram"] = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        info["cores"], info["ram"] = "?", "?"
    info["os"] = platform.platform(terse=True)
    info["python"] = platform.python_version()
    for dist in ("torch", "lightning", "scikit-learn", "starlette", "uvicorn", "websockets",
                 "msgspec", "broadcaster"):
        info[dist] = _version(dist)
    info["load"] = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    return info


def machine_lines(info: dict[str, str]) -> list[str]:
    libs = ", ".join(f"{d} {info[d]}" for d in ("torch", "lightning", "scikit-learn",
                                                 "starlette", "uvicorn", "websockets",
                                                 "msgspec", "broadcaster"))
    return [f"- CPU: {info['cpu']}, {info['cores']} cores / {info['logical_cpus']} logical "
            f"CPUs; RAM {info['ram']}; {info['os']}",
            f"- Python {info['python']}; {libs}",
            f"- 1-minute load average at the start and after each part: {info['load']} "
            f"(anything above 0 is other work competing for the {info['logical_cpus']} CPUs)"]


# ---------------------------------------------------------------------- rows

def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def callback_rows(r: dict[str, Any]) -> list[Row]:
    steps, wall, cpu = r["steps"], r["wall"], r["cpu"]
    base = _median(wall["none"])
    per_step = base / steps * 1e6
    title = "callback overhead"
    rows: list[Row] = []
    for name, label, target in (("none again", "no callback again (A/A: this run's noise "
                                 "floor)", None),
                                ("server up", "MLOpsCallback, server up", 1.01),
                                ("server down", "MLOpsCallback, server down", 1.01),
                                ("no plugins", "MLOpsCallback alone (no plugin loaded)", None),
                                ("tqdm", "Lightning TQDMProgressBar (reference)", None)):
        if name not in wall:
            continue
        median = _median(wall[name])
        paired = _median([t / b for t, b in zip(wall[name], wall["none"], strict=True)])
        fastest = min(wall[name]) / min(wall["none"])
        rows.append((title, f"Lightning fit, {steps} steps, batch 1, {r['repeats']} "
                     f"interleaved repeats: {label}", f"{median / steps * 1e6:.1f} µs/step",
                     f"no callback {per_step:.1f} µs/step",
                     f"{paired:.3f} paired (medians {median / base:.3f}, fastest "
                     f"{fastest:.3f})", f"<= {target}" if target else "-",
                     _met(paired <= target) if target else "-"))
    cpu_paired = _median([t / b for t, b in zip(cpu["server up"], cpu["none"], strict=True)])
    rows.append((title, "MLOpsCallback, server up: CPU time of the training thread",
                 f"{_median(cpu['server up']) / steps * 1e6:.1f} µs/step",
                 f"no callback {_median(cpu['none']) / steps * 1e6:.1f} µs/step",
                 f"{cpu_paired:.3f} paired", "<= 1.01", _met(cpu_paired <= 1.01)))
    hook = r.get("hook")
    if hook:
        rows.append((title, f"MLOpsCallback.on_train_batch_end, timed directly (server up): "
                     f"{hook['calls']:,} calls in {steps:,} steps (paused between progress "
                     f"events)", f"median {hook['median']:.2f} µs a call; "
                     f"{hook['per_step']:.2f} µs a step on average",
                     f"a step without callback: {per_step:.1f} µs",
                     f"{hook['per_step'] / per_step:.2%} of a step", "-", "-"))
    inter = r.get("interleaved")
    if inter:
        rows.append((title, "MLOpsCallback in the callbacks on every other step of one fit "
                     "(server up, 3 fits): neighbouring steps with and without it",
                     f"{inter['on']:.1f} µs/step; paired difference median "
                     f"{inter['diff']:.2f} µs, mean {inter['mean_diff']:.2f} µs",
                     f"without it {inter['off']:.1f} µs/step",
                     f"{inter['ratio']:.4f} (A/A, a callback never entered: "
                     f"{inter.get('aa', float('nan')):.4f})",
                     "<= 1.01", _met(inter["ratio"] <= 1.01)))
    return rows


def emit_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for row in r["rows"]:
        cost, base = row["cost"], row["baseline"]
        delivered = ""
        if row["delivered"]:
            acked, total = row["delivered"]
            delivered = f", {acked / max(1, total):.0%} delivered"
        rows.append(("emit() cost", f"server {row['server']}, {row['pace']}, {row['calls']:,} "
                     f"calls{delivered}",
                     f"median {cost['median']:.2f} µs, p99 {cost['p99']:.2f} µs",
                     f"empty call: median {base['median']:.2f} µs, p99 {base['p99']:.2f} µs",
                     f"{cost['median'] / base['median']:.1f}x (median)", "median <= 5 µs",
                     _met(cost["median"] <= 5.0)))
    return rows


def _by(results: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(x["server"], x["subscribers"]): x for x in results}


def fanout_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    runs = _by(r["results"])
    for s in sorted({x["subscribers"] for x in r["results"]}):
        me, naive, bro = runs[("mlops-hooks", s)], runs[("naive", s)], runs[("broadcaster", s)]
        case = f"S={s}, {me['messages']:,} events as fast as acknowledged"

        def pair(key: str, fmt: str, me: dict[str, Any] = me, naive: dict[str, Any] = naive,
                 bro: dict[str, Any] = bro) -> tuple[str, str]:
            return (f"naive {format(naive[key], fmt)} · broadcaster {format(bro[key], fmt)}",
                    f"{me[key] / naive[key]:.2f}x · {me[key] / bro[key]:.2f}x")

        base, ratio = pair("rate", ",.0f")
        rows.append(("fan-out", f"{case}: deliveries/s ({me['delivered']:.0%} delivered)",
                     f"{me['rate']:,.0f}", base, ratio, ">= 1x naive",
                     _met(me["rate"] >= naive["rate"])))
        base, ratio = pair("p99", ".1f")
        rows.append(("fan-out", f"{case}: publish→receive p50 / p99 ms",
                     f"{me['p50']:.1f} / {me['p99']:.1f}", base + " (p99)", ratio, "-", "-"))
        base, ratio = pair("cpu_us", ".1f")
        rows.append(("fan-out", f"{case}: server CPU µs per delivery", f"{me['cpu_us']:.1f}",
                     base, ratio, "-", "-"))
        base, ratio = pair("rss_max", ".0f")
        rows.append(("fan-out", f"{case}: server RSS max {MB}", f"{me['rss_max']:.0f}", base,
                     ratio, "-", "-"))
    return rows


def paced_rows(r: dict[str, Any]) -> list[Row]:
    runs = {x["server"]: x for x in r["results"]}
    me, naive, bro = runs["mlops-hooks"], runs["naive"], runs["broadcaster"]
    rounds = r.get("rounds", 1)
    kept = f", median of {rounds} interleaved rounds" if rounds > 1 else ""
    return [("fan-out, paced",
             f"100 subscribers x {r['rate']:.0f} events/s for {r['seconds']} s{kept}: "
             f"p50 / p99 ms ({me['delivered']:.0%} delivered)",
             f"{me['p50']:.1f} / {me['p99']:.1f}",
             f"naive {naive['p99']:.1f} · broadcaster {bro['p99']:.1f} (p99)",
             f"{me['p99'] / naive['p99']:.2f}x · {me['p99'] / bro['p99']:.2f}x",
             "p99 < 20 ms", _met(me["p99"] < 20.0))]


def stall_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for pair in r["pairs"]:
        healthy, stalled = pair["healthy"], pair["stalled"]
        server = stalled["server"]
        mine = server == "mlops-hooks"
        case = f"{server}, 5 of 50 subscribers never read, {r['events']:,} events of 2 KB"
        ratio = stalled["rate"] / healthy["rate"] if healthy["rate"] else 0.0
        rows.append(("stalled subscribers", f"{case}: the 45 readers' deliveries/s "
                     f"({stalled['delivered']:.0%} delivered)", f"{stalled['rate']:,.0f}",
                     f"no stalled one: {healthy['rate']:,.0f}", f"{ratio:.2f}x",
                     ">= 0.83x (within 1.2x)" if mine else "-",
                     _met(ratio >= 1 / 1.2) if mine else "-"))
        p99 = stalled["p99"] / healthy["p99"] if healthy["p99"] else float("inf")
        rows.append(("stalled subscribers", f"{case}: the readers' p99 ms",
                     f"{stalled['p99']:.1f}", f"no stalled one: {healthy['p99']:.1f}",
                     f"{p99:.2f}x", "within 1.2x" if mine else "-",
                     _met(p99 <= 1.2) if mine else "-"))
        bound = stalled["rss_start"] + stalled["subscribers"] * QUEUE_BUDGET_MB
        closes = (f"; {stalled['closed_slow']} slow subscriber(s) closed with 4008"
                  if stalled.get("closed_slow") else "")
        rows.append(("stalled subscribers", f"{case}: server RSS start → max → end {MB}"
                     f"{closes}",
                     f"{stalled['rss_start']:.0f} → {stalled['rss_max']:.0f} → "
                     f"{stalled['rss_end']:.0f}",
                     f"no stalled one: max {healthy['rss_max']:.0f}",
                     f"{stalled['rss_max'] / healthy['rss_max']:.2f}x (max)",
                     f"<= {bound:.0f} (start + {stalled['subscribers']} queues x "
                     f"{QUEUE_BUDGET_MB} MB)" if mine else "-",
                     _met(stalled["rss_max"] <= bound) if mine else "-"))
    return rows


def history_rows(r: dict[str, Any]) -> list[Row]:
    serving, ingest = r["serving"], r["ingest"]
    case = f"{serving['runs']:,} runs x {serving['points']:,} steps x {serving['keys']} series"
    rows: list[Row] = []
    for name, label in (("runs", "GET /api/runs"), ("runs_500", "GET /api/runs?limit=500"),
                        ("runs_group", "GET /api/runs?group="),
                        ("series", "GET /api/runs/{id}/metrics")):
        ours, naive = serving["ours"][name]["median_ms"], serving["naive"][name]["median_ms"]
        rows.append(("run history", f"{label}, {case}", f"{ours:.2f} ms",
                     f"naive (no index, all points): {naive:.2f} ms",
                     f"{naive / ours:.1f}x faster", "faster than naive", _met(ours < naive)))
    case = f"ingest of training_progress ({ingest['events']:,} events, 7 new points each)"
    rows.append(("run history", case,
                 f"{_median(ingest['with']):,.0f} events/s with series (packed)",
                 f"{_median(ingest['without']):,.0f} events/s without",
                 f"{ingest['ratio']:.3f} (CPU/event: {ingest['cpu_ratio']:.3f})", "-", "-"))
    if "rows" in ingest:  # the previous writer, a row per point, in the same run
        rows.append(("run history", case,
                     f"{_median(ingest['rows']):,.0f} events/s with series (a row per point)",
                     f"{_median(ingest['without']):,.0f} events/s without",
                     f"{ingest['ratio_rows']:.3f} (CPU/event: {ingest['cpu_ratio_rows']:.3f})",
                     "-", "-"))
    store = r.get("store")
    if store:
        rows.append(("run history", f"series writes alone, committed every 250 events "
                     f"({store['events']:,} events, 7 points each)",
                     f"packed {_median(store['wall']['packed']):.1f} µs/event",
                     f"a row per point (previous) {_median(store['wall']['rows']):.1f} µs/event",
                     f"{store['wall_ratio']:.3f} (CPU: {store['cpu_ratio']:.3f})", "-", "-"))
    return rows


def sampler_rows(r: dict[str, Any]) -> list[Row]:
    s, aa = r["sampler"], r["aa"]
    case = (f"host sampler every {r['interval']} s, on/off every {r['block']} steps of one "
            f"Lightning fit ({r['steps']:,} steps, batch 1, server up), {r['fits']} fits")
    return [("host sampler", case, f"{s['on_us']:.1f} µs/step on",
             f"{s['off_us']:.1f} µs/step off; A/A (interval 0) {aa['ratio']:.4f} "
             f"({aa['low']:.4f}-{aa['high']:.4f})",
             f"{s['ratio']:.4f} ({s['low']:.4f}-{s['high']:.4f})", "within the A/A spread",
             _met(s["ratio"] <= max(aa["high"], 1.01)))]


ROWS = {"callback": callback_rows, "emit": emit_rows, "fanout": fanout_rows,
        "paced": paced_rows, "stall": stall_rows, "history": history_rows,
        "sampler": sampler_rows}


def table(results: dict[str, Any]) -> list[str]:
    """The Markdown table of every part that produced results (failed parts get one row)."""
    rows: list[Row] = []
    for part, build in ROWS.items():
        if part not in results:
            continue
        data = results[part]
        if "error" in data:
            rows.append((part, f"did not run: {data['error']}", "-", "-", "-", "-", "-"))
            continue
        rows.extend(build(data))
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|---:|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
