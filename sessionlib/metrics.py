"""Telemetry from the workers: what they asked of their pools, and what they got.

The exporter shows what is stored (sessions by state); only the workers know
the demand that goes unmet. Opt in by giving a pool a :class:`PoolMetrics`::

    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    metrics = PoolMetrics(registry=registry)
    pool = MongoSessions(URL, db="pools", collection="telegram", metrics=metrics)
    start_http_server(9100, registry=registry)   # or the worker's own /metrics

One :class:`PoolMetrics` serves any number of pools (pass the same object to
each; series are labelled by ``database`` and ``collection``). Nothing is
registered anywhere unless asked: without *registry* it makes a private one
(:attr:`PoolMetrics.registry`).

Sample output (labels ``database="pools",collection="tg"`` shortened to ``…``)::

    sessionpool_worker_handouts_total{…,result="got"} 812.0
    sessionpool_worker_handouts_total{…,result="empty"} 31.0
    sessionpool_worker_handout_seconds_bucket{…,le="0.005"} 790.0
    sessionpool_worker_lease_wait_seconds_bucket{…,le="1.0"} 120.0
    sessionpool_worker_reports_total{…,kind="success"} 770.0
    sessionpool_worker_stale_leases_total{…} 2.0
    sessionpool_worker_errors_total{…,error="OperationTimeoutError"} 1.0

Cardinality, per pool and worker process: 2 ``result`` values; 2 histograms
of 13 buckets (plus ``_sum``, ``_count``, ``_created``); at most 6 report
``kind`` values (``success``, ``locked``, ``blocked``, ``released``,
``deactivated``, ``activated``: scoped locks count as ``locked`` or
``blocked``, so scopes add no series); one stale-lease counter; one
``error`` value per class of :data:`ERRORS`. About 50 series per pool per
process; the shipped rules sum them by ``database, collection``, across worker
processes.

Every counter starts at 0 the moment a pool with these metrics is built
(:meth:`PoolMetrics.watch`), so ``rate()`` and ``increase()`` see the first
empty hand-out, the first stale lease and the first error, not only the
second: a counter that appears at 1 shows no increase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

from .exceptions import (
    DatabaseError,
    DuplicateSessionError,
    OperationTimeoutError,
    PermissionDeniedError,
    ServerClockError,
    ServerUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ERRORS", "HANDOUT_BUCKETS", "REPORT_KINDS", "WAIT_BUCKETS", "PoolMetrics"]

HANDOUT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds: one hand-out command, from a millisecond to the default timeout."""

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
"""Seconds a lease waited for a session, from none to five minutes."""

POOL_LABELS = ("database", "collection")

RESULTS = ("got", "empty")
"""The ``result`` of a hand-out attempt."""

REPORT_KINDS = ("success", "locked", "blocked", "released", "deactivated", "activated")
"""The ``kind`` of a report (scoped locks count as ``locked`` or ``blocked``)."""

ERRORS = (
    DatabaseError,
    ServerUnavailableError,
    OperationTimeoutError,
    DuplicateSessionError,
    PermissionDeniedError,
    ServerClockError,
)
"""The error classes a server call can end with; each has its ``error`` series from the start."""


class PoolMetrics:
    """Prometheus metrics of the pool calls a worker process makes.

    Args:
        registry: Where to register the metrics; a private
            ``CollectorRegistry`` when omitted (never the global one).
        handout_buckets: Histogram buckets of hand-out latency, in seconds.
        wait_buckets: Histogram buckets of lease wait time, in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        handout_buckets: Sequence[float] = HANDOUT_BUCKETS,
        wait_buckets: Sequence[float] = WAIT_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.handouts = Counter(
            "sessionpool_worker_handouts",
            "Hand-out attempts of this process, by result: got a session, or empty.",
            [*POOL_LABELS, "result"],
            registry=self.registry,
        )
        self.handout_seconds = Histogram(
            "sessionpool_worker_handout_seconds",
            "Time one hand-out command took, as this process saw it.",
            POOL_LABELS,
            buckets=handout_buckets,
            registry=self.registry,
        )
        self.lease_wait_seconds = Histogram(
            "sessionpool_worker_lease_wait_seconds",
            "Time a lease waited for a session, whether it got one or gave up.",
            POOL_LABELS,
            buckets=wait_buckets,
            registry=self.registry,
        )
        self.reports = Counter(
            "sessionpool_worker_reports",
            "Reports this process made, by kind (success, locked, blocked, released, ...).",
            [*POOL_LABELS, "kind"],
            registry=self.registry,
        )
        self.stale_leases = Counter(
            "sessionpool_worker_stale_leases",
            "Reports refused because the session had been handed out again (StaleLeaseError).",
            POOL_LABELS,
            registry=self.registry,
        )
        self.errors = Counter(
            "sessionpool_worker_errors",
            "Errors of the server calls of this process, by sessionlib error class.",
            [*POOL_LABELS, "error"],
            registry=self.registry,
        )

    def watch(self, database: str, collection: str) -> None:
        """Create every series of pool *database.collection* at 0; safe to call again.

        A pool calls it when it is built and when it is bound to another
        collection, so each series exists before its first event.
        """
        for result in RESULTS:
            self.handouts.labels(database, collection, result)
        for kind in REPORT_KINDS:
            self.reports.labels(database, collection, kind)
        for error in ERRORS:
            self.errors.labels(database, collection, error.__name__)
        self.stale_leases.labels(database, collection)
        self.handout_seconds.labels(database, collection)
        self.lease_wait_seconds.labels(database, collection)

    def handed_out(self, database: str, collection: str, *, got: bool, seconds: float) -> None:
        """Count a hand-out attempt that took *seconds*."""
        self.handouts.labels(database, collection, "got" if got else "empty").inc()
        self.handout_seconds.labels(database, collection).observe(seconds)

    def waited(self, database: str, collection: str, seconds: float) -> None:
        """Observe a lease's wait for a session."""
        self.lease_wait_seconds.labels(database, collection).observe(max(0.0, seconds))

    def reported(self, database: str, collection: str, kind: str) -> None:
        """Count a report of *kind* that was written."""
        self.reports.labels(database, collection, kind).inc()

    def stale(self, database: str, collection: str) -> None:
        """Count a report refused as stale."""
        self.stale_leases.labels(database, collection).inc()

    def failed(self, database: str, collection: str, error: BaseException) -> None:
        """Count a server call that failed with *error* (one of sessionlib's classes)."""
        self.errors.labels(database, collection, type(error).__name__).inc()
