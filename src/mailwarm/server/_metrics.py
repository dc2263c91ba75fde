"""Request metrics for ``GET /metrics``: counts and latencies per route template."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics", "install_metrics"]


class Metrics:
    """One registry per app, so several apps (tests, a host app) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mailwarm_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mailwarm_http_request_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5),
        )


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every request; routes are labelled by template (``/accounts/{id}``),
    never by the ids in the path, so label sets stay small."""

    @app.middleware("http")
    async def _measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.requests.labels(request.method, template, str(status)).inc()
            metrics.latency.labels(request.method, template).observe(time.perf_counter() - started)
