"""Prometheus metrics of one engine and its server, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Counters and histograms; a private registry lets several servers live in one process (tests).

    Example:
        >>> metrics = Metrics()
        >>> metrics.cache.labels(result="hit").inc()
        >>> b"patentrank_cache_lookups_total" in metrics.render()
        True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "patentrank_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "patentrank_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "patentrank_stage_seconds",
            "Time per stage: tokenize, queue (waiting for a batch), model, cache",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_items = Histogram(
            "patentrank_batch_items", "Items per model call", ["model"], buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "patentrank_batch_requests",
            "Requests sharing one model call",
            ["model"],
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "patentrank_queue_depth", "Requests waiting or running per model", ["model"], registry=r
        )
        self.rejected = Counter(
            "patentrank_rejected",
            "Requests turned away: queue_full or deadline",
            ["model", "reason"],
            registry=r,
        )
        self.cache = Counter(
            "patentrank_cache_lookups", "Score cache lookups by result: hit or miss", ["result"], registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
