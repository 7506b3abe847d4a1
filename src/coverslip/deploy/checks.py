"""What is checked before an application server starts, and the warnings it gets.

Each refusal has its own exit code so that scripts and systemd can tell them apart.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import tempfile
from enum import IntEnum
from pathlib import Path

from coverslip.config import SettingError, Settings
from coverslip.deploy.servers import Plan, role_value, uwsgi_binary
from coverslip.home import Home

# A link an upload is assumed to get at least (100 Mbit/s); see upload_timeout_warning.
UPLOAD_BYTES_PER_SECOND = 12 * 1024 * 1024


class Exit(IntEnum):
    """Exit codes of `coverslip web|thumbs start`."""

    OK = 0
    ERROR = 1  # any other bad setting
    ALREADY_RUNNING = 3
    PORT_BUSY = 4
    NOT_WRITABLE = 5
    WORKER_CLASS = 6
    WORKERS = 7
    NOT_INSTALLED = 8
    START_FAILED = 9


class Refused(Exception):
    """A reason not to start, with its exit code."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


def setting_refusal(exc: SettingError) -> Refused:
    """Return the refusal for a bad setting: worker counts and classes get their own codes."""
    message = str(exc)
    if message.startswith(("web.workers:", "thumbs.workers:")):
        return Refused(message, Exit.WORKERS)
    if message.startswith("web.worker_class:"):
        return Refused(message, Exit.WORKER_CLASS)
    return Refused(message, Exit.ERROR)


def check_installed(settings: Settings) -> None:
    """Refuse an application server or worker class that is not installed."""
    server = settings["web.application_server"]
    if server == "uwsgi":
        if uwsgi_binary() is None:
            raise Refused("uwsgi is not installed: pip install uwsgi", Exit.NOT_INSTALLED)
    elif importlib.util.find_spec(server) is None:
        raise Refused(f"{server} is not installed: pip install {server}", Exit.NOT_INSTALLED)
    worker_class = settings["web.worker_class"]
    if server == "gunicorn" and worker_class == "gevent" and not importlib.util.find_spec("gevent"):
        raise Refused(
            "web.worker_class is gevent but gevent is not installed: pip install gevent, "
            "or choose gthread",
            Exit.WORKER_CLASS,
        )


def check_workers(settings: Settings, role: str) -> None:
    """Refuse fewer than one worker or thread."""
    for name in ("workers", "threads"):
        value = role_value(settings, role, name)
        if value < 1:
            key = f"{role}.{name}" if f"{role}.{name}" in settings else f"web.{name}"
            raise Refused(f"{key}: {value} is not allowed; at least 1", Exit.WORKERS)


def writable(folder: Path) -> bool:
    """Tell whether a file can be created in ``folder`` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_writable(home: Home, plan: Plan) -> None:
    """Refuse a run/ or log folder the server could not write its pid file or logs to."""
    folders = [home.run]
    for target in (plan.logs.access, plan.logs.error):
        if target and target != "-":
            folders.append(Path(target).parent)
    for folder in folders:
        if not writable(folder):
            raise Refused(f"{folder} is not a writable folder", Exit.NOT_WRITABLE)


def port_free(host: str, port: int) -> bool:
    """Tell whether ``host:port`` can be bound (as the servers bind it, reusing the address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise Refused(
                f"cannot listen on {host}:{port}: {exc.strerror}", Exit.PORT_BUSY
            ) from None
    return True


def check_port(plan: Plan) -> None:
    """Refuse a port another process listens on."""
    if not port_free(plan.host, plan.port):
        raise Refused(
            f"{plan.host}:{plan.port} is in use by another process "
            f"(set {plan.role}.port or stop that process)",
            Exit.PORT_BUSY,
        )


def in_container() -> bool:
    """Tell whether this process runs in a container (Docker, Podman, Kubernetes)."""
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    # NOTE: podman and systemd-nspawn set a lower-case `container` variable.
    if os.environ.get("container") or os.environ.get("KUBERNETES_SERVICE_HOST"):  # noqa: SIM112
        return True
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        return False
    return any(word in cgroup for word in ("docker", "kubepods", "containerd", "libpod"))


def warnings(settings: Settings, plan: Plan, container: bool | None = None) -> list[str]:
    """Return the known pitfalls of this configuration, one sentence each."""
    found = []
    cores = os.cpu_count() or 1
    workers = role_value(settings, plan.role, "workers")
    if workers > 2 * cores + 1:
        found.append(
            f"{workers} workers on {cores} cores: more than 2 × cores + 1 = {2 * cores + 1} "
            "spends time switching between processes"
        )
    timeout_warning = upload_timeout_warning(settings, plan)
    if timeout_warning:
        found.append(timeout_warning)
    if plan.server == "gunicorn" and settings["web.worker_class"] == "sync":
        found.append(
            "sync workers serve one client each and need a proxy that buffers whole requests "
            "and responses; the generated nginx config streams uploads and downloads, so a "
            "slow client holds a worker: use gthread or gevent"
        )
    if plan.host in ("0.0.0.0", "::", "") and not (
        in_container() if container is None else container
    ):
        found.append(
            f"{plan.role} listens on {plan.host or 'every address'} outside a container: "
            "clients can bypass nginx; bind 127.0.0.1 and let nginx face the network"
        )
    return found


def upload_timeout_warning(settings: Settings, plan: Plan) -> str | None:
    """Warn when web.timeout cuts uploads of the size images.size_cap allows."""
    if plan.role != "web":
        return None
    per_request = plan.server == "uwsgi" or (
        plan.server == "gunicorn" and settings["web.worker_class"] == "sync"
    )
    if not per_request:
        return None
    timeout = settings["web.timeout"]
    cap = settings["images.size_cap"]
    if cap == 0:
        return (
            f"web.timeout is {timeout} s and images.size_cap is 0 (no cap): {plan.server} ends "
            "any upload that takes longer; raise web.timeout or set a cap"
        )
    needed = cap / UPLOAD_BYTES_PER_SECOND
    if needed > timeout:
        return (
            f"web.timeout is {timeout} s but an upload of images.size_cap "
            f"({cap} bytes) takes about {needed:.0f} s at 100 Mbit/s; raise web.timeout"
        )
    return None
