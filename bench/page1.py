"""Page 1 of a short and of a long conversation, one client, requests interleaved.

Alternating the two paths (small, large, small, large, ...) on one keep-alive connection means
both see the same server state (warm workers, the same moment of autovacuum or checkpoint),
so the ratio of their medians reflects only the history's length.
"""

from __future__ import annotations

import http.client
import time
from typing import Any

from bench.load import percentile


def measure(
    port: int, paths: tuple[str, str], headers: dict[str, str], samples: int, warmup: int = 20
) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    timings: tuple[list[float], list[float]] = ([], [])
    try:
        for i in range(warmup + samples):
            for which, path in enumerate(paths):
                for _attempt in range(3):
                    start = time.perf_counter()
                    try:
                        conn.request("GET", path, headers=headers)
                        response = conn.getresponse()
                        body = response.read()
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                        continue
                    elapsed = (time.perf_counter() - start) * 1000.0
                    if response.status != 200:
                        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
                    if response.will_close:
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    if i >= warmup:
                        timings[which].append(elapsed)
                    break
                else:
                    raise RuntimeError(f"GET {path}: connection keeps failing")
    finally:
        conn.close()
    small, large = timings
    small_p50, large_p50 = percentile(small, 50), percentile(large, 50)
    return {
        "small_p50_ms": round(small_p50, 3),
        "large_p50_ms": round(large_p50, 3),
        "small_p99_ms": round(percentile(small, 99), 3),
        "large_p99_ms": round(percentile(large, 99), 3),
        "ratio_p50": round(large_p50 / small_p50, 4) if small_p50 else float("nan"),
    }
