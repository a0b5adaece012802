"""Prometheus metrics: HTTP requests and jobs by phase (read from the store at scrape time)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from state.store import PHASES, Job, session_scope
from state.store.repository import count_by_phase


class JobsCollector(Collector):
    def __init__(self, database_url: str):
        self.url = database_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("astropt_jobs", "Jobs in the store by phase", labels=["phase"])
        up = GaugeMetricFamily(
            "astropt_store_up", "1 when the job store answered this scrape, else 0"
        )
        try:
            with session_scope(self.url) as session:
                counts: dict[str, int] | None = count_by_phase(session)
        except Exception:  # no numbers rather than zeros: a dead store is not an idle service
            counts = None
        up.add_metric([], 0 if counts is None else 1)
        if counts is not None:
            for phase in PHASES:
                gauge.add_metric([phase], counts.get(phase, 0))
        yield gauge
        yield up


class RunningJobsCollector(Collector):
    """Throughput, MFU, world size and GPU memory of the jobs running now (one series per job)."""

    def __init__(self, database_url: str):
        self.url = database_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "tokens_per_s": GaugeMetricFamily(
                "astropt_job_tokens_per_second", "Training tokens/s (all ranks)", labels=["job_id"]
            ),
            "mfu": GaugeMetricFamily(
                "astropt_job_mfu",
                "Model FLOPs utilisation (0-1; absent when the device's peak is unknown)",
                labels=["job_id"],
            ),
            "world_size": GaugeMetricFamily(
                "astropt_job_world_size", "Processes training the job", labels=["job_id"]
            ),
            "gpu_memory_peak_bytes": GaugeMetricFamily(
                "astropt_job_gpu_memory_peak_bytes", "Peak GPU memory of rank 0", labels=["job_id"]
            ),
        }
        try:
            with session_scope(self.url) as session:
                jobs = session.scalars(select(Job).where(Job.phase == "running").limit(1000)).all()
                rows = [
                    (
                        job.id,
                        {
                            "tokens_per_s": job.tokens_per_s,
                            "mfu": job.mfu,
                            "world_size": (job.resources or {}).get("world_size", 1),
                            "gpu_memory_peak_bytes": job.gpu_memory_peak_bytes,
                        },
                    )
                    for job in jobs
                ]
        except Exception:
            rows = []
        for job_id, values in rows:
            for key, family in families.items():
                if values[key] is not None:
                    family.add_metric([job_id], float(values[key]))
        yield from families.values()


class ServiceMetrics:
    """One registry per app, so several apps (tests) never clash."""

    def __init__(self, database_url: str):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "astropt_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "astropt_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.submitted = Counter("astropt_jobs_submitted", "Jobs submitted", registry=self.registry)
        self.registry.register(JobsCollector(database_url))
        self.registry.register(RunningJobsCollector(database_url))

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500  # an exception no handler turned into a response
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            self.requests.labels(request.method, route, str(status)).inc()
            self.latency.labels(request.method, route).observe(time.perf_counter() - start)
