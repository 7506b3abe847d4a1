"""Gunicorn configuration module: server hooks that log start, ready, fork, abort and exit.

`coverslip web start` passes every setting on the command line (which wins over this
module); this module only adds the hooks and a control socket per role, so that the web
app and the thumbnail service never share one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROLE = os.environ.get("COVERSLIP_ROLE", "web")
HOME = os.environ.get("COVERSLIP_HOME", "")

# Gunicorn ≥ 25 opens a control socket; the default path is shared by every instance.
control_socket = str(Path(HOME or ".") / "run" / f"{ROLE}-gunicorn.ctl")

EFFECTIVE = (
    "bind",
    "workers",
    "worker_class",
    "threads",
    "worker_connections",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "max_requests",
    "max_requests_jitter",
    "preload_app",
    "forwarded_allow_ips",
    "accesslog",
    "errorlog",
    "loglevel",
)


def effective_settings(cfg: Any) -> str:
    """Return the settings Gunicorn will run with, as ``name=value`` pairs."""
    values = []
    for name in EFFECTIVE:
        value = getattr(cfg, name, None)
        if name == "worker_class":
            value = cfg.worker_class_str
        values.append(f"{name}={value}")
    return " ".join(values)


def on_starting(server: Any) -> None:
    server.log.info("coverslip-%s starting in %s: %s", ROLE, HOME, effective_settings(server.cfg))


def when_ready(server: Any) -> None:
    server.log.info("coverslip-%s ready (master pid %s)", ROLE, os.getpid())


def post_fork(server: Any, worker: Any) -> None:
    server.log.info("coverslip-%s worker forked (pid %s)", ROLE, worker.pid)


def worker_abort(worker: Any) -> None:
    # NOTE: Gunicorn sends SIGABRT to a worker that missed web.timeout.
    worker.log.warning(
        "coverslip-%s worker %s aborted (a request took longer than web.timeout)",
        ROLE,
        worker.pid,
    )


def on_exit(server: Any) -> None:
    server.log.info("coverslip-%s stopped", ROLE)
