"""Closed-loop HTTP load: N clients, each on one keep-alive connection, for a fixed time.

Each client sends its next request as soon as the previous answer is read (closed loop), so
throughput and latency are two views of the same run. Clients are threads spread over a few
worker processes (``python -m bench.load`` reading a JSON plan on stdin), so one Python
interpreter's GIL does not add its own queueing to the latencies at 32 clients.

Only loopback addresses are accepted. Every loop is bounded by the plan's end time.

A client whose spec ``vary``-es (the sign-in flood, ``bench.flood``) makes every request
unique: ``{n}`` in its body becomes a new token each time, and each request goes on a new
connection from a new loopback source address (127.a.b.c: Linux answers the whole 127/8 on
``lo``), as a flood from many machines would, so no per-address limit or failure budget turns
it into cheap refusals.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ClientSpec:
    """What one client sends, over and over: one method, path, headers and body."""

    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None
    expect: int = 200
    #: A new ``{n}`` in the body, a new connection and a new source address per request.
    vary: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "expect": self.expect,
            "vary": self.vary,
        }


@dataclass
class CellResult:
    """One (stack, operation, clients) cell: what was done and how long each request took."""

    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    reconnects: int = 0
    error_samples: list[str] = field(default_factory=list)
    #: CPU seconds spent in the measured window, by process group (``bench.cpu``).
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: Mean connections running / waiting on a lock / idle in a transaction (``bench.pgwait``).
    db_activity: dict[str, float] = field(default_factory=dict)
    #: Workers the server recycled (``max_requests``) while the cell ran, warm-ups included.
    recycles: int = 0
    #: Answers in the measured window by HTTP status (what a flood got back).
    statuses: dict[str, int] = field(default_factory=dict)

    @classmethod
    def merged(cls, parts: list[CellResult]) -> CellResult:
        """Slices of one cell (measured apart, ``bench.cells``) as one: requests, latencies,
        seconds and CPU add up; database activity is the time-weighted mean."""
        seconds = sum(part.seconds for part in parts)
        merged = cls(clients=parts[0].clients, seconds=seconds)
        for part in parts:
            merged.latencies_ms.extend(part.latencies_ms)
            merged.errors += part.errors
            merged.reconnects += part.reconnects
            merged.recycles += part.recycles
            merged.error_samples.extend(part.error_samples)
            for status, n in part.statuses.items():
                merged.statuses[status] = merged.statuses.get(status, 0) + n
            for name, value in part.cpu_seconds.items():
                merged.cpu_seconds[name] = merged.cpu_seconds.get(name, 0.0) + value
            for name, value in part.db_activity.items():
                weighted = value * part.seconds / seconds if seconds else 0.0
                merged.db_activity[name] = merged.db_activity.get(name, 0.0) + weighted
        return merged

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def other_cpu_share(self) -> float:
        """Share of all CPUs used by processes outside the run during the window (0..1)."""
        if "machine" not in self.cpu_seconds or not self.seconds:
            return 0.0
        ours = sum(v for k, v in self.cpu_seconds.items() if k != "machine")
        spare = max(0.0, self.cpu_seconds["machine"] - ours)
        return spare / self.seconds / (os.cpu_count() or 1)

    def cpu_ms_per_request(self) -> dict[str, float]:
        if not self.requests:
            return {}
        return {k: round(v * 1000 / self.requests, 3) for k, v in self.cpu_seconds.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "cpu_ms_per_request": self.cpu_ms_per_request(),
            "other_cpu_share": round(self.other_cpu_share(), 3),
            "db_activity": self.db_activity,
            "clients": self.clients,
            "seconds": self.seconds,
            "requests": self.requests,
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "errors": self.errors,
            "reconnects": self.reconnects,
            "recycles": self.recycles,
            "statuses": self.statuses,
            "error_samples": self.error_samples[:5],
        }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- one worker process -----------------------------------------------------------------------

#: Unique per request within this process (``vary``); the process id makes it unique overall.
_UNIQUE = itertools.count(1)


def _source_address(unique: int) -> str:
    """A loopback address of its own for this request: 127.<pid>.<n>.<n> (never .0 or .255)."""
    return f"127.{os.getpid() % 250 + 1}.{unique // 254 % 254 + 1}.{unique % 254 + 1}"


def _client(
    host: str,
    port: int,
    spec: dict[str, Any],
    measure_from: float,
    measure_to: float,
    out: dict[str, Any],
) -> None:
    """Loop until ``measure_to``; keep latencies of requests that ran wholly in the window."""
    body = spec["body"].encode() if spec["body"] is not None else None
    headers = dict(spec["headers"])
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    vary = bool(spec.get("vary"))
    if vary:
        headers["Connection"] = "close"
    latencies: list[float] = out["latencies_ms"]
    statuses: dict[str, int] = out["statuses"]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    consecutive_failures = 0
    try:
        while True:
            start = time.perf_counter()
            if start >= measure_to:
                break
            if vary:
                unique = next(_UNIQUE)
                body = spec["body"].replace("{n}", f"{os.getpid()}-{unique}").encode()
                conn.close()
                conn = http.client.HTTPConnection(
                    host, port, timeout=60, source_address=(_source_address(unique), 0)
                )
            try:
                conn.request(spec["method"], spec["path"], body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
                will_close = response.will_close
            except (http.client.HTTPException, OSError) as exc:
                # A worker recycled (max_requests) or closed an idle connection: reconnect.
                out["reconnects"] += 1
                consecutive_failures += 1
                if consecutive_failures > 20:
                    out["errors"] += 1
                    if len(out["error_samples"]) < 5:
                        out["error_samples"].append(f"connection: {exc!r}")
                    time.sleep(0.05)
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
                continue
            end = time.perf_counter()
            consecutive_failures = 0
            if will_close:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            if start < measure_from or end > measure_to:
                continue
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status != spec["expect"]:
                out["errors"] += 1
                if len(out["error_samples"]) < 5:
                    out["error_samples"].append(f"{status}: {payload[:200]!r}")
                continue
            latencies.append((end - start) * 1000.0)
    finally:
        conn.close()


def run_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """Run this process's share of clients; ``plan`` uses ``time.time()`` for the start."""
    host, port = plan["host"], int(plan["port"])
    if host not in LOOPBACK:
        raise SystemExit("the load generator only talks to loopback addresses")
    # Convert the shared wall-clock start into this process's monotonic clock.
    offset = time.perf_counter() - time.time()
    begin = plan["start_at"] + offset
    measure_from = begin + plan["warmup"]
    measure_to = measure_from + plan["seconds"]
    outs = [
        {"latencies_ms": [], "errors": 0, "reconnects": 0, "error_samples": [], "statuses": {}}
        for _ in plan["clients"]
    ]
    threads = [
        threading.Thread(
            target=_client, args=(host, port, spec, measure_from, measure_to, out), daemon=True
        )
        for spec, out in zip(plan["clients"], outs, strict=True)
    ]
    delay = begin - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    for thread in threads:
        thread.start()
    # This process's own CPU time over the measured window (the load generator's share).
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    cpu_from = time.process_time()
    time.sleep(max(0.0, measure_to - time.perf_counter()))
    cpu_seconds = time.process_time() - cpu_from
    for thread in threads:
        thread.join(timeout=plan["warmup"] + plan["seconds"] + 120)
    merged: dict[str, Any] = {
        "latencies_ms": [],
        "errors": 0,
        "reconnects": 0,
        "error_samples": [],
        "cpu_seconds": cpu_seconds,
        "statuses": {},
    }
    for out in outs:
        for status, n in out["statuses"].items():
            merged["statuses"][status] = merged["statuses"].get(status, 0) + n
        merged["latencies_ms"].extend(round(v, 4) for v in out["latencies_ms"])
        merged["errors"] += out["errors"]
        merged["reconnects"] += out["reconnects"]
        merged["error_samples"].extend(out["error_samples"])
    return merged


# -- the coordinator ----------------------------------------------------------------------------


def run_cell(
    port: int,
    specs: list[ClientSpec],
    *,
    seconds: float,
    warmup: float,
    processes: int = 2,
    host: str = "127.0.0.1",
    probe: Callable[[], dict[str, float]] | None = None,
    cpus: set[int] | None = None,
) -> CellResult:
    """Run ``len(specs)`` concurrent clients against ``host:port`` and collect the results.

    ``probe`` (CPU seconds by process group, ``bench.cpu.snapshot``) is read at the start and
    the end of the measured window; the differences land in ``CellResult.cpu_seconds``.
    """
    if host not in LOOPBACK:
        raise ValueError("loopback only")
    processes = max(1, min(processes, len(specs)))
    shares: list[list[dict[str, Any]]] = [[] for _ in range(processes)]
    for index, spec in enumerate(specs):
        shares[index % processes].append(spec.as_dict())
    start_at = time.time() + 1.0  # time for the interpreters to start
    children = []
    for share in shares:
        plan = {
            "host": host,
            "port": port,
            "clients": share,
            "start_at": start_at,
            "warmup": warmup,
            "seconds": seconds,
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        children.append((child, json.dumps(plan)))
    result = CellResult(clients=len(specs), seconds=seconds)
    try:
        for child, plan_text in children:
            assert child.stdin is not None
            child.stdin.write(plan_text)
            child.stdin.close()
        if probe is not None:
            time.sleep(max(0.0, start_at + warmup - time.time()))
            before = probe()
            time.sleep(max(0.0, start_at + warmup + seconds - time.time()))
            after = probe()
            result.cpu_seconds = {name: after[name] - before.get(name, 0.0) for name in after}
        result.cpu_seconds["load"] = 0.0
        for child, _ in children:
            assert child.stdout is not None
            output = child.stdout.read()
            child.wait(timeout=warmup + seconds + 180)
            if child.returncode != 0:
                raise RuntimeError(f"load process failed with status {child.returncode}")
            part = json.loads(output)
            result.latencies_ms.extend(part["latencies_ms"])
            result.errors += part["errors"]
            result.reconnects += part["reconnects"]
            result.error_samples.extend(part["error_samples"])
            result.cpu_seconds["load"] += part["cpu_seconds"]
            for status, n in part["statuses"].items():
                result.statuses[status] = result.statuses.get(status, 0) + n
    finally:
        for child, _ in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return result


def main() -> None:
    plan = json.load(sys.stdin)
    json.dump(run_plan(plan), sys.stdout)


if __name__ == "__main__":
    main()
