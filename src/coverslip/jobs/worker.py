"""The worker process: huey's consumer running jobs, and a sweep that recovers lost ones.

TERM stops it at once: the jobs it was running go back on the queue (a stop is not a
failure) and the next worker starts them afresh. INT (Ctrl-C) lets them finish first.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from coverslip import logs, metrics
from coverslip.services import Services

log = logging.getLogger("coverslip.jobs")


def pid_file(services: Services) -> Path:
    return services.home.run / "worker.pid"


def run(services: Services, threads: int | None = None) -> None:
    """Run jobs until a signal stops this process."""
    settings = services.settings
    logs.configure(settings["web.log_format"], settings["web.log_level"])
    logging.getLogger("huey").setLevel(logging.WARNING)
    jobs = services.jobs
    if jobs.backend == "inline":
        raise SystemExit("jobs.backend is inline: jobs run where they are submitted, not here")
    # The web's /metrics adds in what this process counts (job times, imported bytes) from
    # this folder. NOTE: set before prometheus_client is first imported, which fixes its mode.
    folder = metrics.folder_of(services.home.run, "worker")
    os.environ[metrics.MULTIPROCESS_ENV] = str(folder)
    metrics.prepare(folder)
    services.catalog.migrate()
    recovered = jobs.sweep()
    consumer = jobs.queue.create_consumer(
        workers=threads or int(settings["jobs.threads"]),
        worker_type="thread",
        periodic=False,
        initial_delay=0.05,
        max_delay=0.5,
    )
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(jobs.lease / 3):
            try:
                jobs.sweep()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("sweep failed")

    sweeper = threading.Thread(target=sweep, name="job-sweep", daemon=True)
    sweeper.start()
    path = pid_file(services)
    path.write_text(f"{os.getpid()}\n")
    log.info(
        "worker started",
        extra={
            "fields": {"backend": jobs.backend, "threads": consumer.workers, "recovered": recovered}
        },
    )
    try:
        consumer.run()
    finally:
        stop.set()
        jobs.requeue_mine()
        if path.read_text().strip() == str(os.getpid()):
            path.unlink(missing_ok=True)
        log.info("worker stopped")
