"""Request counts and latencies, for ``GET /stats`` (JSON) and ``GET /metrics`` (Prometheus).

Standard library only; one lock; updated once per request by the access-log middleware.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

__all__ = ["Metrics"]

# Histogram bucket bounds of request latency, in seconds (Prometheus ``le`` labels).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Latencies kept per endpoint for the percentiles of /stats (the most recent ones).
RECENT_LATENCIES = 10_000


class Metrics:
    """Counters and latency records of one app."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, route, status)
        self._recent: dict[str, deque] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sums: Counter[str] = Counter()
        self.in_flight = 0
        self.reloads = 0
        self.reload_failures = 0

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        with self._lock:
            self.requests[(method, route, status)] += 1
            recent = self._recent.get(route)
            if recent is None:
                recent = self._recent[route] = deque(maxlen=RECENT_LATENCIES)
                self._buckets[route] = [0] * (len(LATENCY_BUCKETS) + 1)
            recent.append(seconds)
            counts = self._buckets[route]
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1  # +Inf
            self._sums[route] += seconds

    def latency_percentiles(self) -> dict[str, dict[str, float]]:
        """Per route: count and the p50/p90/p99 latency (milliseconds) of recent requests."""
        with self._lock:
            recent = {route: np.fromiter(values, float) for route, values in self._recent.items()}
        out = {}
        for route, values in sorted(recent.items()):
            if len(values):
                p50, p90, p99 = np.percentile(values, [50, 90, 99]) * 1000
                out[route] = {
                    "count": len(values),
                    "p50_ms": round(float(p50), 3),
                    "p90_ms": round(float(p90), 3),
                    "p99_ms": round(float(p99), 3),
                }
        return out

    def request_counts(self) -> list[dict]:
        """Every (method, route, status) seen and its count."""
        with self._lock:
            items = sorted(self.requests.items())
        return [{"method": m, "route": r, "status": s, "count": c} for (m, r, s), c in items]

    def prometheus(
        self, gauges: dict[str, tuple[str, float]], counters: dict[str, tuple[str, float]]
    ) -> str:
        """The Prometheus text exposition format (version 0.0.4) of every metric.

        ``gauges`` and ``counters``: extra ``name -> (help, value)`` from the app.
        """
        lines = []

        def header(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            requests = sorted(self.requests.items())
            buckets = {route: list(counts) for route, counts in self._buckets.items()}
            sums = dict(self._sums)
            in_flight = self.in_flight
        header("sparse_ir_requests_total", "counter", "HTTP requests answered")
        for (method, route, status), count in requests:
            lines.append(
                f'sparse_ir_requests_total{{method="{method}",route="{_label(route)}",'
                f'status="{status}"}} {count}'
            )
        header("sparse_ir_request_duration_seconds", "histogram", "time from request to response")
        for route, counts in sorted(buckets.items()):
            label = _label(route)
            for bound, count in zip(LATENCY_BUCKETS, counts):
                lines.append(
                    f'sparse_ir_request_duration_seconds_bucket{{route="{label}",'
                    f'le="{bound}"}} {count}'
                )
            lines.append(
                f'sparse_ir_request_duration_seconds_bucket{{route="{label}",'
                f'le="+Inf"}} {counts[-1]}'
            )
            lines.append(
                f'sparse_ir_request_duration_seconds_sum{{route="{label}"}} {sums[route]:.6f}'
            )
            lines.append(
                f'sparse_ir_request_duration_seconds_count{{route="{label}"}} {counts[-1]}'
            )
        header("sparse_ir_requests_in_flight", "gauge", "requests being answered")
        lines.append(f"sparse_ir_requests_in_flight {in_flight}")
        for name, (help_text, value) in gauges.items():
            header(name, "gauge", help_text)
            lines.append(f"{name} {value:g}")
        for name, (help_text, value) in counters.items():
            header(name, "counter", help_text)
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
