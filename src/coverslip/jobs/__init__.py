"""Background jobs: submitted by requests, carried by huey, run by worker processes.

huey carries a job's id from the process that submits it to a worker, on the queue that
``jobs.backend`` names (a SQLite file, Redis or PostgreSQL). The catalog's jobs table is
the truth of every job: its state, attempts, lease, progress and error.

# NOTE: huey takes a message off its queue before it runs it, so a worker killed in the
# middle would lose the job. Here every attempt holds a lease its worker renews; whoever
# finds a lease run out (every worker sweeps) tries the job again, with a growing delay, or
# fails it for good after ``jobs.attempts``. A message delivered twice finds its job
# already claimed and does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

from coverslip import metrics
from coverslip.catalog import Catalog, Job
from coverslip.config import Settings
from coverslip.errors import Conflict, CoverslipError, NoSpace
from coverslip.home import Home
from coverslip.logs import REQUEST_ID

log = logging.getLogger("coverslip.jobs")

HOST = socket.gethostname()
# How often a running attempt reports progress to the catalog at most, in seconds.
PROGRESS_EVERY = 1.0


class Cancelled(CoverslipError):
    """The job was cancelled while it ran."""


class Lost(Exception):
    """The attempt lost its job: its lease ran out and another attempt took over."""


class Handler(Protocol):
    """What one kind of job does, and how it is undone when it fails for good."""

    def run(self, job: Job, attempt: Attempt) -> None: ...

    def abandon(self, job: Job, reason: str) -> None: ...

    def retryable(self, job: Job) -> str | None:
        """Return why ``job`` cannot be tried again, or None if it can (and get it ready)."""
        ...


def worker_name() -> str:
    return f"{HOST}:{os.getpid()}"


def _pid_alive(worker: str) -> bool:
    """Tell whether the process named by ``worker`` ("host:pid") may still run."""
    host, _, pid = worker.rpartition(":")
    if host != HOST or not pid.isdigit():
        return True  # another machine's: only its lease tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _permanent(exc: BaseException) -> bool:
    """Tell whether trying again cannot help: the data or the request is at fault."""
    return isinstance(exc, CoverslipError) and not isinstance(exc, NoSpace)


@dataclass
class Attempt:
    """One attempt at a job in a worker: renews its lease, records progress, notices cancel."""

    jobs: Jobs
    job: Job
    claim: str
    lost: bool = False
    cancelled: bool = False

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._progress: dict[str, Any] = {}
        self._reported = 0.0
        self._thread = threading.Thread(
            target=self._beat, name=f"job-{self.job.id[:8]}", daemon=True
        )

    def __enter__(self) -> Attempt:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._progress and not self.lost:
            self._renew()  # the last progress, which a report less than a second ago held back

    def _beat(self) -> None:
        every = self.jobs.lease / 3
        while not self._stop.wait(every):
            self._renew()

    def _renew(self) -> None:
        with self._lock:
            values, self._progress = self._progress, {}
        job = self.jobs.catalog.renew_job(self.job.id, self.claim, self.jobs.lease, **values)
        if job is None:
            self.lost = True
        elif job.cancel:
            self.cancelled = True

    def check(self) -> None:
        """Raise if the attempt should stop: cancelled, or its job taken over."""
        if self.lost:
            raise Lost(self.job.id)
        if self.cancelled:
            raise Cancelled(f"job {self.job.id} was cancelled")

    def progress(self, done: int, total: int, unit: str = "bytes") -> None:
        """Record how far the job got (sent at most once a second); stop if told to."""
        with self._lock:
            self._progress = {"done": done, "total": total, "unit": unit}
        now = time.monotonic()
        if now - self._reported >= PROGRESS_EVERY:
            self._reported = now
            self._renew()
        self.check()

    def on_image(self, image_id: int) -> None:
        """Record that this job also creates ``image_id`` (so no sweep takes it for stuck)."""
        self.jobs.catalog.add_job_image(self.job.id, image_id)

    def on_fileset(self, fileset_id: int) -> None:
        """Record that this job made ``fileset_id`` (so that a later attempt can undo it)."""
        self.jobs.catalog.add_job_fileset(self.job.id, fileset_id)


class Jobs:
    """Submit, run, recover, retry and cancel background jobs of one instance."""

    def __init__(
        self, settings: Settings, home: Home, catalog: Catalog, handlers: Mapping[str, Handler]
    ) -> None:
        self.settings = settings
        self.home = home
        self.catalog = catalog
        self.handlers = dict(handlers)
        self.backend: str = settings["jobs.backend"]
        self.lease = float(settings["jobs.lease"])
        self.attempts = int(settings["jobs.attempts"])
        self.retry_delay = float(settings["jobs.retry_delay"])

    # -- the queue ----------------------------------------------------------------------

    @cached_property
    def queue(self) -> Any:
        """Return the huey instance of ``jobs.backend``, with the one task that runs a job."""
        import huey

        name = "coverslip"
        url = self.settings["jobs.url"]
        if self.backend == "redis":
            queue: huey.Huey = huey.RedisHuey(
                name, url=url or self.settings["sessions.redis_url"], results=False
            )
        elif self.backend == "postgresql":
            dsn = url or _libpq_dsn(self.settings["db.url"])
            if not dsn:
                raise CoverslipError("jobs.backend postgresql needs jobs.url or a db.url")
            queue = huey.PostgresHuey(name, dsn=dsn, results=False)
        elif self.backend == "inline":
            queue = huey.MemoryHuey(name, results=False, immediate=True)
        else:
            self.home.run.mkdir(parents=True, exist_ok=True)
            queue = huey.SqliteHuey(
                name, filename=str(self.home.run / "jobs.sqlite3"), results=False, fsync=True
            )
        # NOTE: registered with the queue, so that a worker's consumer finds it by name.
        self._task = queue.task(name="run_job")(self.run)
        return queue

    def _enqueue(self, job_id: str, delay: float = 0.0) -> None:
        self.queue  # noqa: B018 - builds the queue and its task
        if delay > 0 and self.backend != "inline":
            self._task.schedule((job_id,), delay=delay)
        else:
            self._task(job_id)

    def _on_queue(self) -> set[str]:
        """Return the ids of the jobs whose messages wait on the queue, now or scheduled."""
        found = set()
        for task in [*self.queue.pending(), *self.queue.scheduled()]:
            if task.args:
                found.add(str(task.args[0]))
        return found

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        image_id: int | None,
        job_input: dict[str, Any] | None = None,
        user_id: int | None = None,
    ) -> str:
        """Record a job and put it on the queue; return its id."""
        job_id = self.record(kind, image_id, job_input, user_id)
        self._enqueue(job_id)
        return job_id

    def record(
        self,
        kind: str,
        image_id: int | None,
        job_input: dict[str, Any] | None = None,
        user_id: int | None = None,
        state: str = "queued",
    ) -> str:
        """Record a job without queueing it (``state`` "receiving": its bytes still arrive)."""
        if kind not in self.handlers:
            raise ValueError(f"no job kind {kind!r}")
        job_id = str(uuid.uuid4())
        self.catalog.create_job(
            job_id,
            kind,
            image_id,
            job_input or {},
            user_id,
            self.attempts,
            state=state,
            request_id=REQUEST_ID.get() or "",
        )
        if state == "receiving":
            self.catalog.renew_job(job_id, None, self.lease)
        return job_id

    def received(self, job_id: str, done: int) -> bool:
        """Note ``done`` bytes arrived for a receiving job; tell whether it was cancelled."""
        job = self.catalog.renew_job(job_id, None, self.lease, done=done)
        return job is None or job.cancel

    def release(self, job_id: str, job_input: dict[str, Any]) -> None:
        """Queue a receiving job once its bytes are all stored.

        Under the inline backend the job runs here, and a failure that trying again cannot
        mend is raised to the caller (the upload answers with it).
        """
        if not self.catalog.move_job(
            job_id, ["receiving"], state="queued", input=job_input, lease_until=None
        ):
            raise Conflict(f"job {job_id} is no longer receiving")
        if self.backend == "inline":
            self.run(job_id, reraise=True)
        else:
            self._enqueue(job_id)

    def end(self, job_id: str, state: str, message: str) -> None:
        """End a job that never ran (its upload failed, for one)."""
        self.catalog.set_job(job_id, state=state, message=message[:4000], finished=_now())

    # -- running ------------------------------------------------------------------------

    def run(self, job_id: str, reraise: bool = False) -> None:
        """Run one attempt of a job (huey calls this in a worker); ``reraise`` a final failure."""
        claim = str(uuid.uuid4())
        job = self.catalog.claim_job(job_id, claim, worker_name(), self.lease)
        if job is None:
            return  # delivered twice, cancelled or gone
        handler = self.handlers[job.kind]
        token = REQUEST_ID.set(job.request_id or job.id)
        started = time.monotonic()
        log.info(
            "job started",
            extra={"fields": {"job": job.id, "kind": job.kind, "attempt": job.attempts}},
        )
        try:
            with Attempt(self, job, claim) as attempt:
                handler.run(job, attempt)
        except Lost:
            log.warning("job taken over", extra={"fields": {"job": job.id}})
            return
        except Cancelled as exc:
            self._finish(job, claim, handler, "cancelled", str(exc))
        except Exception as exc:  # noqa: BLE001 - a job records every failure
            if _permanent(exc) or job.attempts >= job.max_attempts:
                self._finish(job, claim, handler, "failed", str(exc) or type(exc).__name__)
                if reraise:
                    raise
            else:
                self._again(job, claim, f"attempt {job.attempts} failed: {exc}")
                if self.backend == "inline":
                    self.run(job.id, reraise)  # NOTE: inline, attempts follow at once
        else:
            self.catalog.set_job(
                job.id, claim, state="succeeded", message="", claim=None, finished=_now()
            )
            log.info("job succeeded", extra={"fields": {"job": job.id, "kind": job.kind}})
            metrics.metrics().job_seconds.labels(job.kind, "succeeded").observe(
                time.monotonic() - started
            )
        finally:
            REQUEST_ID.reset(token)

    def _again(self, job: Job, claim: str | None, message: str) -> None:
        """Put a job whose attempt failed back on the queue after a growing delay."""
        delay = self.retry_delay * 2 ** max(0, job.attempts - 1)
        if claim is not None:
            moved = self.catalog.set_job(
                job.id, claim, state="queued", claim=None, lease_until=None, message=message
            )
        else:
            moved = self.catalog.move_job(
                job.id, ["running"], state="queued", claim=None, lease_until=None, message=message
            )
        if moved:
            log.warning(
                "job will be tried again", extra={"fields": {"job": job.id, "reason": message}}
            )
            if self.backend != "inline":  # inline, run() tries again at once
                self._enqueue(job.id, delay)

    def _finish(
        self, job: Job, claim: str | None, handler: Handler, state: str, message: str
    ) -> None:
        """End a job for good: undo what it left, then record why."""
        try:
            handler.abandon(job, message)
        finally:
            self.catalog.set_job(
                job.id,
                claim,
                state=state,
                message=message[:4000],
                claim=None,
                lease_until=None,
                finished=_now(),
            )
            log.warning(
                f"job {state}",
                extra={"fields": {"job": job.id, "kind": job.kind, "reason": message}},
            )
            took = (_now() - job.started).total_seconds() if job.started else 0.0
            metrics.metrics().job_seconds.labels(job.kind, state).observe(took)

    # -- recovering ---------------------------------------------------------------------

    def sweep(self) -> int:
        """Recover jobs whose worker or request is gone, and images nothing holds; return how many."""
        recovered = 0
        expired = {job.id: job for job in self.catalog.expired_jobs()}
        for job in self.catalog.list_jobs(states=["running"], limit=1000):
            if job.id not in expired and not _pid_alive(job.worker):
                expired[job.id] = job
        for job in expired.values():
            recovered += 1
            handler = self.handlers[job.kind]
            if job.state == "receiving":
                self._finish(job, None, handler, "failed", "the upload was interrupted")
            elif job.attempts >= job.max_attempts:
                reason = f"its worker stopped during each of {job.attempts} attempts"
                self._finish(job, job.claim, handler, "failed", reason)
            else:
                self._again(job, None, f"its worker stopped during attempt {job.attempts}")
        # A queued job whose message is not on the queue (its submitter died before sending
        # it, or the message was lost) is sent again; a copy too many finds it claimed.
        waiting = self.catalog.list_jobs(states=["queued"], limit=1000)
        stale = [job for job in waiting if (_now() - job.updated).total_seconds() > self.lease]
        if stale:
            on_queue = self._on_queue()
            for job in stale:
                if job.id not in on_queue:
                    recovered += 1
                    self.catalog.set_job(job.id)  # its clock starts again
                    self._enqueue(job.id)
        for image_id, status in self.catalog.images_in_flight(quiet_for=self.lease):
            recovered += 1
            self._recover_image(image_id, status)
        return recovered

    def _recover_image(self, image_id: int, status: str) -> None:
        """Put back an image left saving or importing by a process that is gone."""
        from coverslip.imports import Importer
        from coverslip.pixels.objects import ObjectStore

        log.warning("image left in flight", extra={"fields": {"image": image_id, "status": status}})
        importer = Importer(
            self.home, self.catalog, objects=ObjectStore.from_settings(self.settings)
        )
        if status == "saving":
            importer.remove_files(image_id)
            for suffix in ("upload", "staged"):
                with contextlib.suppress(FileNotFoundError):
                    (self.home.staging / f"{image_id}.{suffix}").unlink()
            with contextlib.suppress(CoverslipError):
                self.catalog.set_status(
                    image_id, "queued", expect=["saving"], message="the upload was interrupted"
                )
                self.catalog.update_image(image_id, sha512=None, md5=None, original_size=None)
            return
        importer.undo_received(image_id)
        with contextlib.suppress(CoverslipError):
            self.catalog.set_status(
                image_id, "killed", expect=["importing"], message="the import was interrupted"
            )

    def requeue_mine(self) -> None:
        """Put this process's running jobs back on the queue at once (the worker stops)."""
        me = worker_name()
        for job in self.catalog.list_jobs(states=["running"], limit=1000):
            if job.worker == me and self.catalog.move_job(
                job.id,
                ["running"],
                state="queued",
                claim=None,
                lease_until=None,
                attempts=max(0, job.attempts - 1),  # a stop is not the job's failure
                message="its worker stopped; it runs again",
            ):
                self._enqueue(job.id, delay=1.0)

    # -- by hand ------------------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: at once if it waits, at its next progress report if it runs."""
        job = self.catalog.get_job(job_id)
        if not job.live:
            raise Conflict(f"job {job_id} is {job.state}; only a waiting or running job stops")
        if self.catalog.move_job(job_id, ["queued"], state="cancelled", finished=_now()):
            self.handlers[job.kind].abandon(job, "cancelled")
            self.catalog.set_job(job_id, message="cancelled")
        else:
            self.catalog.set_job(job_id, cancel=True)
        return self.catalog.get_job(job_id)

    def retry(self, job_id: str) -> Job:
        """Try a failed or cancelled job again from its first attempt."""
        job = self.catalog.get_job(job_id)
        if job.state not in ("failed", "cancelled"):
            raise Conflict(
                f"job {job_id} is {job.state}; only a failed or cancelled job is retried"
            )
        why = self.handlers[job.kind].retryable(job)
        if why is not None:
            raise Conflict(f"job {job_id} cannot run again: {why}")
        if not self.catalog.move_job(
            job_id,
            ["failed", "cancelled"],
            state="queued",
            attempts=0,
            cancel=False,
            message="",
            finished=None,
        ):
            raise Conflict(f"job {job_id} changed meanwhile")
        self._enqueue(job_id)
        return self.catalog.get_job(job_id)

    def depth(self) -> dict[str, int]:
        """Return the number of jobs in each state."""
        return self.catalog.count_jobs()

    def get(self, job_id: str) -> Job:
        return self.catalog.get_job(job_id)


def _now() -> datetime:
    return datetime.now(UTC)


def _libpq_dsn(url: str) -> str:
    """Return a libpq DSN for a SQLAlchemy PostgreSQL URL, or "" for any other database."""
    if not url.startswith("postgresql"):
        return ""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def progress_of(job: Job, at: datetime | None = None) -> dict[str, Any]:
    """Return a job's progress: done, total, unit, rate per second and seconds left."""
    moment = at or _now()
    rate = None
    eta = None
    if job.started is not None and job.done:
        elapsed = ((job.finished or moment) - job.started).total_seconds()
        if elapsed > 0:
            rate = job.done / elapsed
            if job.total > job.done and job.state == "running":
                eta = (job.total - job.done) / rate
    return {
        "done": job.done,
        "total": job.total or None,
        "unit": job.unit,
        "rate": None if rate is None else round(rate, 1),
        "eta_seconds": None if eta is None else round(eta, 1),
    }
