"""`coverslip worker run|start|stop|status` and `coverslip jobs list|show|retry|cancel`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import click

from coverslip.catalog.records import JOB_STATES, Job
from coverslip.cli_support import State, fail, guarded, pass_state, show
from coverslip.jobs import progress_of

ROLE = "worker"


@click.group()
def worker() -> None:
    """Run background jobs: imports of uploads, staged and web-downloaded files, deletions."""


@worker.command("run")
@click.option("--threads", type=int, help="Jobs run at once (jobs.threads).")
@pass_state
@guarded
def worker_run(state: State, threads: int | None) -> None:
    """Run a worker in the foreground (systemd, containers); TERM or Ctrl-C stops it."""
    from coverslip.jobs import worker as process

    process.run(state.services, threads)


@worker.command("start")
@pass_state
@guarded
def worker_start(state: State) -> None:
    """Start a worker in the background; it logs to log/worker.log."""
    from coverslip.deploy import process

    pid = process.running_pid(state.home, ROLE)
    if pid is not None:
        fail(f"worker is already running (PID {pid})", 3)
    if state.settings["jobs.backend"] == "inline":
        fail("jobs.backend is inline: jobs run where they are submitted, no worker is needed")
    pid = spawn(state)
    click.echo(f"worker: started (PID {pid}); logs: {state.home.log / 'worker.log'}")


def spawn(state: State, wait: float = 30.0) -> int:
    """Start `coverslip worker run` detached; return its pid once it has started."""
    from coverslip.deploy import process

    state.home.log.mkdir(parents=True, exist_ok=True)
    log_path = state.home.log / "worker.log"
    marker = process.pid_file(state.home, ROLE)
    marker.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "coverslip.cli", "--home", str(state.home.root), "worker", "run"]
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=state.home.root,
        )
    deadline = time.monotonic() + wait
    # The worker writes its pid file once its queue is open and lost jobs are recovered.
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-10:]
            fail(f"the worker exited with status {child.returncode}:\n" + "\n".join(tail), 4)
        if marker.exists() and marker.read_text().strip() == str(child.pid):
            return child.pid
        time.sleep(0.05)
    child.kill()
    fail(f"the worker did not start within {wait:g} s; see {log_path}", 4)


@worker.command("stop")
@pass_state
def worker_stop(state: State) -> None:
    """Stop the worker: its running jobs go back on the queue and start again later."""
    from coverslip.deploy import process

    pid = process.stop(state.home, ROLE, graceful=float(state.settings["web.graceful_timeout"]))
    click.echo(f"worker: stopped (PID {pid})" if pid else "worker: NOT STARTED")


@worker.command("status")
@pass_state
def worker_status(state: State) -> None:
    """Print RUNNING (PID n) and exit 0, or NOT STARTED and exit 1."""
    from coverslip.deploy import process

    pid = process.running_pid(state.home, ROLE)
    if pid is None:
        click.echo("worker: NOT STARTED")
        sys.exit(1)
    counts = state.services.catalog.count_jobs()
    waiting, running = counts.get("queued", 0), counts.get("running", 0)
    click.echo(f"worker: RUNNING (PID {pid}); {waiting} jobs waiting, {running} running")


# -- jobs -------------------------------------------------------------------------------


def job_row(job: Job) -> dict[str, Any]:
    progress = progress_of(job)
    done = progress["done"]
    total = progress["total"]
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "image": "" if job.image_id is None else job.image_id,
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "progress": f"{done}/{total} {job.unit}"
        if total
        else (f"{done} {job.unit}" if done else ""),
        "rate": "" if progress["rate"] is None else f"{progress['rate']:.0f}/s",
        "eta": "" if progress["eta_seconds"] is None else f"{progress['eta_seconds']:.0f} s",
        "created": job.created.strftime("%Y-%m-%d %H:%M:%S"),
        "message": job.message,
    }


@click.group()
def jobs() -> None:
    """List, inspect, retry and cancel background jobs."""


@jobs.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(JOB_STATES))
@click.option("--image", "image_id", type=int, help="Only the jobs of this image.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_state
@guarded
def jobs_list(
    state: State, states: tuple[str, ...], image_id: int | None, limit: int, as_json: bool
) -> None:
    """List jobs, newest first."""
    found = state.services.catalog.list_jobs(
        states=list(states) or None, image_id=image_id, limit=limit
    )
    columns = ["id", "kind", "state", "image", "attempts", "progress", "eta", "message"]
    show([job_row(job) for job in found], columns, as_json, title="Jobs")


@jobs.command("show")
@click.argument("job_id")
@pass_state
@guarded
def jobs_show(state: State, job_id: str) -> None:
    """Print one job as JSON: state, attempts, progress, error."""
    job = state.services.catalog.get_job(job_id)
    row = {**job_row(job), "images": list(job.images), "input": job.input, "worker": job.worker}
    row["progress"] = progress_of(job)
    click.echo(json.dumps(row, indent=2, default=str))


@jobs.command("retry")
@click.argument("job_id")
@pass_state
@guarded
def jobs_retry(state: State, job_id: str) -> None:
    """Run a failed or cancelled job again from its first attempt."""
    job = state.services.jobs.retry(job_id)
    click.echo(f"job {job.id}: {job.state}")


@jobs.command("cancel")
@click.argument("job_id")
@pass_state
@guarded
def jobs_cancel(state: State, job_id: str) -> None:
    """Cancel a job: at once if it waits, at its next progress report if it runs."""
    job = state.services.jobs.cancel(job_id)
    click.echo(f"job {job.id}: {'cancelled' if job.state == 'cancelled' else 'cancelling'}")
