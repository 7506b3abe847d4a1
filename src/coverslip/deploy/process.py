"""Start, stop and inspect an application server through its pid file in run/."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from coverslip import metrics
from coverslip.deploy.servers import Plan
from coverslip.home import Home
from coverslip.metrics import MULTIPROCESS_ENV


def pid_file(home: Home, role: str) -> Path:
    return home.run / f"{role}.pid"


def _state(pid: int) -> str | None:
    """Return the /proc state letter of ``pid`` (None where /proc is not available)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """Tell whether process ``pid`` runs (a zombie does not)."""
    with contextlib.suppress(ChildProcessError, OSError):
        # NOTE: reap it if it is our own child (start and stop in one process, as in tests).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def group_members(pgid: int) -> list[int]:
    """Return the live processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def running_pid(home: Home, role: str) -> int | None:
    """Return the pid of the running ``role`` server, removing a stale pid file."""
    path = pid_file(home, role)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def write_files(plan: Plan) -> None:
    """Write the plan's files and empty its workers' metrics folder."""
    for path, text in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if MULTIPROCESS_ENV in plan.env:
        metrics.prepare(Path(plan.env[MULTIPROCESS_ENV]))


def _log_handle(plan: Plan) -> int | None:
    """Return a file descriptor of the error log, None to keep the terminal."""
    if plan.logs.error == "-":
        return None
    return os.open(plan.logs.error, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def exec_foreground(plan: Plan, home: Home) -> None:
    """Become the server (for systemd and containers), keeping this pid in the pid file."""
    write_files(plan)
    pid_file(home, plan.role).write_text(f"{os.getpid()}\n")
    handle = _log_handle(plan)
    if handle is not None:
        os.dup2(handle, 1)
        os.dup2(handle, 2)
    os.execvpe(plan.argv[0], plan.argv, {**os.environ, **plan.env})


def healthy(host: str, port: int) -> bool:
    """Tell whether ``GET /healthz`` answers 200: a worker has loaded the application."""
    connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    connection = http.client.HTTPConnection(connect_host, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def spawn(plan: Plan, home: Home, wait: float = 60.0) -> int:
    """Start the server detached, record its pid, and return it once /healthz answers.

    Raises RuntimeError (with the end of the error log) if it exits or never listens.
    """
    write_files(plan)
    handle = _log_handle(plan)
    process = subprocess.Popen(
        plan.argv,
        env={**os.environ, **plan.env},
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=handle,
        start_new_session=True,  # its own process group: stop reaches every worker
        cwd=home.root,
    )
    if handle is not None:
        os.close(handle)
    pid_file(home, plan.role).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file(home, plan.role).unlink(missing_ok=True)
            raise RuntimeError(
                f"{plan.server} exited with status {process.returncode} while starting"
                + _tail(plan.logs.error)
            )
        if healthy(plan.host, plan.port):
            return process.pid
        time.sleep(0.1)
    stop(home, plan.role, graceful=5)
    raise RuntimeError(
        f"{plan.server} did not answer on {plan.host}:{plan.port} within {wait:g} s"
        + _tail(plan.logs.error)
    )


def _tail(log: str, lines: int = 15) -> str:
    if log == "-":
        return ""
    try:
        text = Path(log).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"; the end of {log}:\n" + "\n".join(text)


def _wait(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.1)
    return done()


def stop(home: Home, role: str, graceful: float, margin: float = 5.0) -> int | None:
    """Stop the ``role`` server: TERM, wait ``graceful`` seconds, then KILL; return its pid.

    Leftover workers of its process group are killed too, and the pid file is removed.
    """
    pid = running_pid(home, role)
    if pid is None:
        return None
    # Only a server we started detached leads its own group; under systemd it does not.
    owns_group = os.getpgid(pid) == pid
    os.kill(pid, signal.SIGTERM)
    # NOTE: the servers kill their own workers after graceful_timeout; give them ``margin``.
    if not _wait(lambda: not alive(pid), graceful + margin):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL) if owns_group else os.kill(pid, signal.SIGKILL)
        _wait(lambda: not alive(pid), 5)
    if owns_group and not _wait(lambda: not group_members(pid), 2):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait(lambda: not group_members(pid), 5)
    pid_file(home, role).unlink(missing_ok=True)
    return pid
