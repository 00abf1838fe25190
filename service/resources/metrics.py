"""Prometheus metrics of one worker process.

Labels are bounded and never carry request data: `route` is the matched route's
template (or "unmatched"), `status` the HTTP status. Each app gets its own registry
so that several apps (tests) never share counters.

The series touched by every request (requests by route, single lookups and their
latency) are plain Python numbers exported by a collector at scrape time:
prometheus_client takes a lock and walks its label cache on every `inc`/`observe`,
which cost more than the rest of the bookkeeping of a request. They are only ever
updated and read on the event loop's thread, so they need no lock. The names, types,
labels, values and `_created` series on /metrics are those prometheus_client's own
Counter and Histogram would show.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Hashable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from service.resources.logs import dropped_lines

__all__ = ["CONTENT_TYPE_LATEST", "CounterFamily", "HistogramFamily", "Metrics", "route_label"]


def route_label(request: web.Request) -> str:
    """The matched route's template, or "unmatched": never the path, which may hold data."""
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
LOOKUP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
# Whole requests: a /v1/check answers in about a millisecond, a bulk stream of millions
# of lines takes minutes.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 300.0, 1800.0)
Labels = tuple[Hashable, ...]  # label values in `labelnames` order; str() at scrape time


def _created_series() -> bool:
    # prometheus_client's own switch (PROMETHEUS_DISABLE_CREATED_SERIES, or
    # disable_created_metrics()), so that these series follow the others.
    return bool(getattr(_prometheus_metrics, "_use_created", True))


class CounterFamily:
    """A labelled counter as a dict of numbers; `labels(...).inc()` as in prometheus_client."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._values: dict[Labels, float] = {}
        self._created: dict[Labels, float] = {}
        registry.register(self)

    def inc(self, labels: Labels, amount: float = 1) -> None:
        values = self._values
        if labels in values:
            values[labels] += amount
        else:
            values[labels] = amount
            self._created[labels] = time.time()

    def labels(self, *values: str) -> _BoundCounter:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}")
        return _BoundCounter(self, values)

    def value(self, *labels: Hashable) -> float:
        return self._values.get(labels, 0)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = _created_series()
        for labels, value in list(self._values.items()):
            family.add_metric([str(v) for v in labels], value,
                              created=self._created[labels] if created else None)
        yield family


class _BoundCounter:
    def __init__(self, family: CounterFamily, labels: Labels) -> None:
        self._family, self._labels = family, labels

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self._family.inc(self._labels, amount)


class HistogramFamily:
    """A labelled histogram as lists of bucket counts (not cumulative until scraped)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry, buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._bounds = (*sorted(buckets), float("inf"))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}
        self._created: dict[Labels, float] = {}
        registry.register(self)

    def observe(self, labels: Labels, value: float) -> None:
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * len(self._bounds)
            self._sums[labels] = 0.0
            self._created[labels] = time.time()
        # The first bucket whose upper bound is >= value ("le"), as prometheus_client.
        counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sums[labels] += value

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        created = _created_series()
        bounds = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        for labels, counts in list(self._counts.items()):
            values = [str(v) for v in labels]
            cumulative = itertools.accumulate(counts)
            family.add_metric(values, list(zip(bounds, cumulative, strict=True)),
                              self._sums[labels])
            if created:
                family.add_sample(self.name + "_created", dict(zip(self.labelnames, values,
                                                                   strict=True)),
                                  self._created[labels])
        yield family


_SINGLE: Labels = ("single",)
_SINGLE_FOUND: Labels = ("single", "found")
_SINGLE_NOT_FOUND: Labels = ("single", "not_found")


class _LogDrops:
    """Log lines this process could not write (service.resources.logs.LogSink)."""

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "exposure_log_lines_dropped",
            "Log lines dropped because the log could not take them (a full pipe or disk)",
            value=dropped_lines())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Registration order is the order on /metrics.
        self.requests = CounterFamily(
            "exposure_http_requests", "HTTP requests by route and status",
            ["route", "method", "status"], self.registry,
        )
        self.lookup_latency = HistogramFamily(
            "exposure_lookup_duration_seconds",
            "Time to normalise, fingerprint and look up one query",
            ["kind"], self.registry, buckets=LOOKUP_BUCKETS,
        )
        self.lookups = CounterFamily(
            "exposure_lookups", "Lookups answered, by outcome",
            ["kind", "outcome"], self.registry,
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
        self.key_usage_write_failures = Counter(
            "exposure_key_usage_write_failures",
            "Flushes of per-key usage counts that the key store refused (kept in memory and "
            "retried at the next flush)", registry=self.registry)
        self.index_swap_failures = Counter(
            "exposure_index_swap_failures", "Generations refused (verification failed)",
            registry=self.registry,
        )
        self.ready = Gauge("exposure_ready", "1 when an index is loaded", registry=self.registry)
        self.request_duration = HistogramFamily(
            "exposure_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer (a bulk stream "
            "included), by route", ["route", "method"], self.registry, buckets=HTTP_BUCKETS,
        )
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
        # process_start_time_seconds...: read from /proc at scrape time (Linux).
        ProcessCollector(registry=self.registry)
        self.registry.register(_LogDrops())

    def count_request(self, route: str, method: str, status: int, seconds: float = 0.0) -> None:
        if method not in _METHODS:
            method = "OTHER"  # a client chooses the method: keep the label bounded
        self.requests.inc((route, method, status))
        self.request_duration.observe((route, method), seconds)

    def single_lookup(self, seconds: float, found: bool) -> None:
        """One `/v1/check` lookup: its latency and its outcome."""
        self.lookup_latency.observe(_SINGLE, seconds)
        self.lookups.inc(_SINGLE_FOUND if found else _SINGLE_NOT_FOUND)

    def render(self) -> bytes:
        return generate_latest(self.registry)
