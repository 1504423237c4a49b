"""Fan-out benchmark: mlops-hooks vs a naive Starlette loop vs encode/broadcaster, side by side.

One publisher (this process) sends lifecycle events (``activity_update``, never coalesced) as
fast as each server acknowledges them (a window of 32 in flight); S subscribers in separate
processes receive them. For each server and S in (10, 100, 500): deliveries per second,
publish→receive latency p50/p99 (``time.monotonic()``, system-wide on Linux) and the server's
peak RSS. Then the stalled-subscriber scenario: 50 subscribers of which 10% never read, against
the same 50 all reading: the readers' throughput and p99, how many events they got, and the
server's RSS over time.

Usage: ``python benchmarks/fanout.py [--quick]`` (a few minutes; ``--quick`` under one).
Not part of the test run: numbers depend on the machine; compare the rows with each other.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent
#: The subscriber process's script.
CLIENT = HERE / "_fanout_client.py"
WINDOW = 32
PUBLISH_DEADLINE = 15.0
#: Events of the stalled scenario: enough to fill a non-reader's socket buffers (about 3 MB on
#: Linux loopback) and then a 4 MB queue.
STALL_EVENTS = 4000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(kind: str, port: int) -> list[str]:
    if kind == "mlops-hooks":
        return [sys.executable, "-m", "mlops_hooks", "serve", "--port", str(port),
                "--db", ":memory:", "--metrics-interval", "0", "--stall-timeout", "0",
                "--max-connections", "5000", "--log-level", "error"]
    return [sys.executable, str(HERE / "_fanout_apps.py"), kind, str(port)]


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


class RssSampler(threading.Thread):
    """Samples a process's RSS every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.cpu_start = self.cpu_end = 0.0

    def cpu(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic() - t0, self.proc.memory_info().rss))
            except psutil.Error:
                return
            self.stop.wait(0.2)


@dataclass
class Result:
    server: str
    subscribers: int
    stalled: int
    messages: int
    sent: int = 0
    received: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)
    closed_slow: int | None = None
    cpu: float = 0.0
    #: CPU seconds of the subscriber processes while the events arrived.
    client_cpu: float = 0.0
    #: The user-space part of ``client_cpu``.
    client_user: float = 0.0

    @property
    def cpu_per_delivery(self) -> float:
        """Server CPU seconds (user + system) per delivered message, in microseconds."""
        return self.cpu / self.received * 1e6 if self.received else float("nan")

    @property
    def readers(self) -> int:
        return self.subscribers - self.stalled

    @property
    def rate(self) -> float:
        return self.received / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rss_max(self) -> float:
        return max((r for _, r in self.rss), default=0) / 2**20


def _closed_slow(port: int) -> int | None:
    """``mlops_hooks_closed_slow_total`` from the server's /metrics."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("mlops_hooks_closed_slow_total "):
            return int(float(line.split()[1]))
    return None


def message(i: int, payload: int) -> str:
    return json.dumps({"type": "activity_update", "activity": {
        "id": f"bench-{i}", "title": "bench", "description": "x" * payload or None,
        "metadata": {"t": time.monotonic()}}})


async def publish(url: str, count: int, payload: int) -> tuple[int, float]:
    """Send ``count`` events with up to WINDOW unacknowledged; returns (sent, start time)."""
    async with connect(url, compression=None, ping_interval=None) as ws:
        slots = asyncio.Semaphore(WINDOW)
        acked = 0

        async def read_acks() -> None:
            nonlocal acked
            async for _ in ws:
                acked += 1
                slots.release()

        reader = asyncio.create_task(read_acks())
        start = time.monotonic()
        sent = 0

        async def send_all() -> None:
            nonlocal sent
            for i in range(count):
                await slots.acquire()
                await ws.send(message(i, payload))
                sent += 1
            while acked < sent:
                await asyncio.sleep(0.01)

        # A server may stop acknowledging (the naive loop behind a stalled client). wait_for
        # rather than asyncio.timeout: Python 3.10 runs this too.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(send_all(), PUBLISH_DEADLINE)
        reader.cancel()
        return sent, start


def run_case(kind: str, subscribers: int, stalled: int, messages: int, payload: int,
             procs: int) -> Result:
    result = Result(kind, subscribers, stalled, messages)
    port = free_port()
    server = subprocess.Popen(server_command(kind, port), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    clients: list[subprocess.Popen[str]] = []
    outs: list[str] = []
    try:
        wait_listening(port, server)
        sampler = RssSampler(server.pid)
        sampler.start()
        readers, stuck = subscribers - stalled, stalled
        with tempfile.TemporaryDirectory() as tmp:
            for p in range(procs):
                n_read = readers // procs + (1 if p < readers % procs else 0)
                n_stuck = stuck // procs + (1 if p < stuck % procs else 0)
                out = os.path.join(tmp, f"lat{p}.bin")
                outs.append(out)
                clients.append(subprocess.Popen(
                    [sys.executable, str(CLIENT),
                     f"ws://127.0.0.1:{port}/ws", str(n_read), str(n_stuck), str(messages),
                     out], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            for client in clients:
                assert client.stdout is not None
                if client.stdout.readline().strip() != "ready":
                    raise RuntimeError("a subscriber process failed to connect")
            sampler.cpu_start = sampler.cpu()
            for client in clients:
                assert client.stdin is not None
                client.stdin.write("go\n")
                client.stdin.flush()
            result.sent, start = asyncio.run(
                publish(f"ws://127.0.0.1:{port}/ws/publish", messages, payload))
            last = start
            reports = []
            for client in clients:
                assert client.stdout is not None
                reports.append(json.loads(client.stdout.readline()))
            result.cpu = sampler.cpu() - sampler.cpu_start
            for client in clients:
                assert client.stdin is not None
                client.stdin.write("bye\n")
                client.stdin.flush()
            for client, out, report in zip(clients, outs, reports, strict=True):
                client.wait(timeout=60)
                result.received += report["received"]
                result.closes += report["closes"]
                result.client_cpu += report.get("cpu", 0.0)
                result.client_user += report.get("cpu_user", 0.0)
                last = max(last, report["last"])
                values = array.array("d")
                with open(out, "rb") as fh:
                    values.frombytes(fh.read())
                result.latencies += values.tolist()
            result.elapsed = last - start
        sampler.stop.set()
        sampler.join()
        result.rss = sampler.samples
        if kind == "mlops-hooks":
            result.closed_slow = _closed_slow(port)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        server.terminate()
        try:
            server.wait(3)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return result


SERVERS = ("mlops-hooks", "naive", "broadcaster")


def fanout_table(results: list[Result]) -> str:
    lines = ["| server | subscribers | events | delivered | deliveries/s | vs naive | "
             "server CPU µs/delivery | p50 ms | p99 ms | server RSS max MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    naive = {r.subscribers: r.rate for r in results if r.server == "naive"}
    for r in results:
        base = naive.get(r.subscribers) or float("nan")
        lines.append(
            f"| {r.server} | {r.subscribers} | {r.sent} | "
            f"{r.received / max(1, r.readers * r.messages):.1%} | {r.rate:,.0f} | "
            f"{r.rate / base:.2f}x | {r.cpu_per_delivery:.1f} | {r.pct(0.5):.1f} | "
            f"{r.pct(0.99):.1f} | {r.rss_max:.0f} |")
    return "\n".join(lines)


def stall_table(pairs: list[tuple[Result, Result]]) -> str:
    lines = ["| server | run | readers | readers got | deliveries/s | "
             "server CPU µs/delivery | p99 ms | RSS MB start → max → end | "
             "slow subscribers closed (4008) |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for healthy, stalled in pairs:
        for label, r in (("no stall", healthy), (f"{r_pct(stalled)} stalled", stalled)):
            rss = [s for _, s in r.rss] or [0]
            closes = "-" if r.closed_slow is None else str(r.closed_slow)
            lines.append(
                f"| {r.server} | {label} | {r.readers} | "
                f"{r.received / max(1, r.readers * r.messages):.1%} | {r.rate:,.0f} | "
                f"{r.cpu_per_delivery:.1f} | {r.pct(0.99):.1f} | {rss[0] / 2**20:.0f} → "
                f"{max(rss) / 2**20:.0f} → {rss[-1] / 2**20:.0f} | {closes} |")
    return "\n".join(lines)


def r_pct(result: Result) -> str:
    return f"{result.stalled}/{result.subscribers}"


def _median(results: list[Result]) -> Result:
    """The run with the median rate (whole runs are kept together: rate, latency and RSS)."""
    ordered = sorted(results, key=lambda r: r.rate)
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a quarter of the events in the fan-out table")
    parser.add_argument("--sizes", default="10,100,500", help="subscriber counts")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every fan-out case, interleaved, and keep the median run")
    parser.add_argument("--no-stall", action="store_true", help="skip the stalled scenario")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"fan-out benchmark on {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}), "
          f"Python {sys.version.split()[0]}; every server under uvicorn (websockets-sansio, "
          "no compression); publisher window 32, 200-byte events\n", flush=True)
    runs: dict[tuple[str, int], list[Result]] = {}
    for _ in range(args.rounds):
        for subscribers in sizes:
            messages = max(100, int(60_000 * scale) // subscribers)
            for kind in SERVERS:
                result = run_case(kind, subscribers, 0, messages, payload=200,
                                  procs=1 if subscribers <= 10 else 2)
                runs.setdefault((kind, subscribers), []).append(result)
                print(f"  {kind:12} S={subscribers:<4} {result.rate:>10,.0f} deliveries/s "
                      f"{result.cpu_per_delivery:6.1f} µs CPU/delivery", flush=True)
    results = [_median(runs[(kind, s)]) for s in sizes for kind in SERVERS]
    print("\n" + fanout_table(results) + "\n", flush=True)
    if args.no_stall:
        return
    pairs = []
    for kind in SERVERS:
        healthy = run_case(kind, 45, 0, STALL_EVENTS, payload=2000, procs=2)
        stalled = run_case(kind, 50, 5, STALL_EVENTS, payload=2000, procs=2)
        pairs.append((healthy, stalled))
        print(f"  stall scenario {kind:12} done", flush=True)
    print(f"\nStalled subscribers: 5 of 50 never read; {STALL_EVENTS} events of 2 KB. The 45 "
          "readers compared with a run of 45 readers and no stalled ones.\n")
    print(stall_table(pairs))


if __name__ == "__main__":
    main()
