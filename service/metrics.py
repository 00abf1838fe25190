"""Prometheus metrics of one worker process.

Labels are bounded and never carry request data: `route` is the matched route's
template (or "unmatched"), `status` the HTTP status. Each app gets its own registry
so that several apps (tests) never share counters.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "route_label"]


def route_label(request: web.Request) -> str:
    """The matched route's template, or "unmatched": never the path, which may hold data."""
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "exposure_http_requests", "HTTP requests by route and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self.lookup_latency = Histogram(
            "exposure_lookup_seconds", "Time to normalise, fingerprint and look up one query",
            ["kind"], registry=self.registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
        )
        self.lookups = Counter(
            "exposure_lookups", "Lookups answered, by outcome",
            ["kind", "outcome"], registry=self.registry,
        )
        self.bulk_records = Counter(
            "exposure_bulk_records", "Lines processed by the bulk API", ["outcome"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "exposure_rate_limited", "Requests refused by a rate limit", ["route"],
            registry=self.registry,
        )
        self.index_info = Gauge(
            "exposure_index_info", "The generation being served (value 1)", ["generation"],
            registry=self.registry,
        )
        self.index_fingerprints = Gauge(
            "exposure_index_fingerprints", "Fingerprints in the generation being served",
            registry=self.registry,
        )
        self.index_rows = Gauge(
            "exposure_index_rows", "Breach rows behind the generation being served",
            registry=self.registry,
        )
        self.index_loaded_timestamp = Gauge(
            "exposure_index_loaded_timestamp_seconds", "When the generation was loaded",
            registry=self.registry,
        )
        self.index_swap_failures = Counter(
            "exposure_index_swap_failures", "Generations refused (verification failed)",
            registry=self.registry,
        )
        self.ready = Gauge("exposure_ready", "1 when an index is loaded", registry=self.registry)

    def count_request(self, route: str, method: str, status: int) -> None:
        # `labels()` takes a lock and builds a key on every call: keep the children.
        # The label values are bounded (route templates, methods, statuses).
        if method not in _METHODS:
            method = "OTHER"  # a client chooses the method: keep the label bounded
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(
                route, method, str(status))
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
