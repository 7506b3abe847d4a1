"""Prometheus metrics, summed over every worker process of a server.

The launcher gives each server (web, thumbs) its own folder in ``PROMETHEUS_MULTIPROC_DIR``,
emptied at start, and the job worker takes ``run/metrics-worker``; prometheus_client then keeps
each process's values in files there and ``/metrics`` adds them up (the web's adds the
worker's in). Without it (tests, tools) the values are the process's own.

# NOTE: prometheus_client chooses between the two when it is first imported, so it is
# imported on first use (in a worker, after the launcher set the folder), never at import.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


_LOCK = threading.Lock()
_MADE: list[Any] = []


def metrics() -> Any:
    """Return the metrics, created on the first call: requests and latency by route, the
    render stages (read, render, encode), cache hits and misses with their bytes, imported bytes.
    """
    if _MADE:
        return _MADE[0]
    with _LOCK:  # NOTE: two threads' first requests must not both register them
        if not _MADE:
            _MADE.append(_make())
    return _MADE[0]


def _make() -> Any:
    folder = os.environ.get(MULTIPROCESS_ENV)
    if folder:
        # NOTE: the launcher empties it; a server started otherwise still gets one.
        Path(folder).mkdir(parents=True, exist_ok=True)
    from prometheus_client import Counter, Histogram

    stage = Histogram(
        "coverslip_render_stage_seconds",
        "Time of each rendering stage: read, render, encode.",
        ["stage"],
        buckets=_LATENCY,
    )
    cache = Counter(
        "coverslip_render_cache", "Render cache lookups, by result (hit or miss).", ["result"]
    )
    cache_bytes = Counter(
        "coverslip_render_cache_bytes",
        "Bytes of renders served from the cache (hit) or rendered (miss).",
        ["result"],
    )
    # PERF: the children the render path moves are bound once, not looked up per request.
    return SimpleNamespace(
        requests=Counter(
            "coverslip_requests",
            "HTTP requests answered, by route template and status.",
            ["route", "status"],
        ),
        latency=Histogram(
            "coverslip_request_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=_LATENCY,
        ),
        read=stage.labels("read"),
        render=stage.labels("render"),
        encode=stage.labels("encode"),
        hit=cache.labels("hit"),
        miss=cache.labels("miss"),
        hit_bytes=cache_bytes.labels("hit"),
        miss_bytes=cache_bytes.labels("miss"),
        imported=Counter("coverslip_import_bytes", "Pixel bytes read from files by imports."),
        job_seconds=Histogram(
            "coverslip_job_seconds",
            "Time of background jobs, by kind and outcome (succeeded, failed, cancelled).",
            ["kind", "outcome"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400),
        ),
    )


def folder_of(run: Path, role: str) -> Path:
    """Return where the processes of ``role`` (web, thumbs, worker) keep their values."""
    return run / f"metrics-{role}"


def prepare(folder: Path) -> None:
    """Empty ``folder`` for a server about to start (files of an earlier run would add in)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def exposition(jobs: dict[str, int] | None = None, also: Sequence[Path] = ()) -> tuple[bytes, str]:
    """Return the text exposition of every metric and its media type.

    ``jobs`` is the number of jobs in each state, read from the catalog when scraped (the
    queue's depth is the catalog's to tell, whichever process is asked). ``also`` names the
    folders of other servers on this host whose values add in (the job worker's), when this
    one keeps its values in a folder too.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    metrics()  # every metric exists (at zero) before the first request that moves it
    registry = REGISTRY
    own = os.environ.get(MULTIPROCESS_ENV)
    if own:
        folders = [Path(own), *also]

        class _Folders:
            def collect(self) -> Any:
                files = [str(path) for folder in folders for path in folder.glob("*.db")]
                return MultiProcessCollector.merge(files, accumulate=True)

        registry = CollectorRegistry()
        registry.register(_Folders())
    text = generate_latest(registry)
    if jobs is not None:
        text += _jobs_text(jobs)
    return text, CONTENT_TYPE_LATEST


def _jobs_text(jobs: dict[str, int]) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    from coverslip.catalog.records import JOB_STATES

    family = GaugeMetricFamily("coverslip_jobs", "Background jobs in each state.", labels=["state"])
    for state in JOB_STATES:
        family.add_metric([state], jobs.get(state, 0))

    class _Jobs:
        def collect(self) -> list[GaugeMetricFamily]:
            return [family]

    registry = CollectorRegistry()
    registry.register(_Jobs())
    return generate_latest(registry)
