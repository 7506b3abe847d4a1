"""Turn the settings into the command line of Granian, Gunicorn or uWSGI.

Every setting either maps onto an option of the chosen server or, when the server has no
such option and the setting was changed from its default, is named in ``Plan.notes`` so
that `coverslip web start` reports it once instead of dropping it silently.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverslip import metrics
from coverslip.config import Settings
from coverslip.home import Home
from coverslip.logs import ACCESS_LOG_ENV
from coverslip.metrics import MULTIPROCESS_ENV

SERVERS = ("granian", "gunicorn", "uwsgi")
ROLES = ("web", "thumbs")
# What each server loads (coverslip.deploy.targets); Gunicorn calls factories with "()".
TARGETS = {
    ("granian", "web"): "coverslip.deploy.targets:web_granian",
    ("granian", "thumbs"): "coverslip.deploy.targets:thumbs_granian",
    ("gunicorn", "web"): "coverslip.deploy.targets:web_gunicorn()",
    ("gunicorn", "thumbs"): "coverslip.deploy.targets:thumbs_gunicorn()",
    ("uwsgi", "web"): "coverslip.deploy.targets:web_uwsgi",
    ("uwsgi", "thumbs"): "coverslip.deploy.targets:thumbs_uwsgi",
}


@dataclass(frozen=True)
class Logs:
    """Where one role logs: a file path, "-" for the terminal, or None (no access log)."""

    access: str | None
    error: str


@dataclass
class Plan:
    """How to run one role: the command, its environment, and what it cannot honour."""

    role: str
    server: str
    host: str
    port: int
    argv: list[str]
    env: dict[str, str]
    logs: Logs
    notes: list[str] = field(default_factory=list)
    files: dict[Path, str] = field(default_factory=dict)  # written before the server starts


def role_value(settings: Settings, role: str, name: str) -> Any:
    """Return ``thumbs.<name>`` for the thumbnail service where it exists, else ``web.<name>``."""
    own = f"{role}.{name}"
    return settings[own] if own in settings else settings[f"web.{name}"]


def changed(settings: Settings, name: str) -> bool:
    """Tell whether ``name`` was set by the administrator rather than left at its default."""
    return settings.sources.get(name, "default") != "default"


def log_targets(settings: Settings, home: Home, role: str) -> Logs:
    """Return the access and error log of ``role``: log/ in production, the terminal otherwise."""
    production = settings["web.env"] == "production"

    def resolve(value: str, kind: str) -> str | None:
        if value == "-":
            return "-"
        if value:
            path = Path(value)
            return str(path if path.is_absolute() else home.log / path)
        if production:
            return str(home.log / f"{role}-{kind}.log")
        return None if kind == "access" else "-"

    access = resolve(role_value(settings, role, "access_log"), "access")
    error = resolve(role_value(settings, role, "error_log"), "error") or "-"
    return Logs(access, error)


def uwsgi_binary() -> str | None:
    """Return the uwsgi executable beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "uwsgi"
    return str(beside) if beside.exists() else shutil.which("uwsgi")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def plan(settings: Settings, home: Home, role: str = "web") -> Plan:
    """Return the plan that runs ``role`` under web.application_server."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    server = settings["web.application_server"]
    build = {"granian": _granian, "gunicorn": _gunicorn, "uwsgi": _uwsgi}[server]
    result = Plan(
        role=role,
        server=server,
        host=role_value(settings, role, "host"),
        port=role_value(settings, role, "port"),
        argv=[],
        env={
            "COVERSLIP_HOME": str(home.root),
            "COVERSLIP_ROLE": role,
            MULTIPROCESS_ENV: str(metrics.folder_of(home.run, role)),
        },
        logs=log_targets(settings, home, role),
    )
    if result.logs.access is not None:
        # The application writes the access log itself, in one format under every server.
        result.env[ACCESS_LOG_ENV] = result.logs.access
    build(settings, home, result)
    result.argv += shlex.split(settings["web.args"])
    return result


def _unsupported(settings: Settings, plan: Plan, name: str, why: str) -> None:
    if changed(settings, name):
        plan.notes.append(f"{name} = {settings[name]!r} is not honoured by {plan.server}: {why}")


# Blocking threads per Granian worker beyond web.threads (see ``granian_threads``).
SPARE_THREADS = 3


def granian_threads(settings: Settings) -> int:
    """Return Granian's blocking threads per worker: web.threads and SPARE_THREADS more.

    # SECURITY: Granian reads a request body on the thread that runs the request, with no
    # timeout; a client that sends headers and then goes quiet held a worker's only thread
    # and stalled every request sent to that worker. The spare threads, idle otherwise,
    # serve them meanwhile (measured: none of 30 requests waited; before, they timed out).
    # One spare was not enough behind nginx, which streams uploads: two quiet uploads on one
    # worker held both its threads until nginx dropped them (web.body_timeout).
    """
    return int(settings["web.threads"]) + SPARE_THREADS


def _granian(settings: Settings, home: Home, plan: Plan) -> None:
    graceful = settings["web.graceful_timeout"]
    log_config = {
        "formatters": {
            "generic": {
                "()": "logging.Formatter",
                "fmt": f"%(asctime)s [%(levelname)s] coverslip-{plan.role}: %(message)s",
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "generic",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {"_granian": {"handlers": ["console"], "propagate": False}},
    }
    config_file = home.run / f"{plan.role}-granian-logging.json"
    plan.files[config_file] = json.dumps(log_config, indent=2)
    plan.argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--factory",
        TARGETS["granian", plan.role],
        "--host",
        plan.host,
        "--port",
        str(plan.port),
        "--workers",
        str(role_value(settings, plan.role, "workers")),
        "--blocking-threads",
        str(granian_threads(settings)),
        "--backpressure",
        str(settings["web.worker_connections"]),
        "--workers-kill-timeout",
        str(max(1, graceful)),
        "--respawn-failed-workers",
        "--log-level",
        settings["web.log_level"],
        "--log-config",
        str(config_file),
    ]
    if settings["web.keepalive"] == 0:
        plan.argv.append("--no-http1-keep-alive")
    else:
        _unsupported(settings, plan, "web.keepalive", "it keeps idle connections without a timeout")
    _unsupported(settings, plan, "web.timeout", "it has no per-request timeout")
    _unsupported(
        settings, plan, "web.max_requests", "it recycles workers by age (--workers-lifetime)"
    )
    _unsupported(settings, plan, "web.max_requests_jitter", "it recycles workers by age")
    _unsupported(settings, plan, "web.preload", "each worker loads the application itself")
    _unsupported(settings, plan, "web.worker_class", "it applies to gunicorn only")


def _gunicorn(settings: Settings, home: Home, plan: Plan) -> None:
    worker_class = settings["web.worker_class"]
    plan.argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:coverslip.deploy.gunicorn_conf",
        "--bind",
        _host_port(plan.host, plan.port),
        "--workers",
        str(role_value(settings, plan.role, "workers")),
        "--worker-class",
        worker_class,
        "--timeout",
        str(settings["web.timeout"]),
        "--graceful-timeout",
        str(settings["web.graceful_timeout"]),
        "--keep-alive",
        str(settings["web.keepalive"]),
        "--max-requests",
        str(settings["web.max_requests"]),
        "--max-requests-jitter",
        str(settings["web.max_requests_jitter"]),
        "--forwarded-allow-ips",
        ",".join(settings["web.forwarded_allow_ips"]),
        "--log-level",
        settings["web.log_level"],
        "--error-logfile",
        "-",
        "--name",
        f"coverslip-{plan.role}",
    ]
    if worker_class == "gthread":
        plan.argv += ["--threads", str(settings["web.threads"])]
    else:
        # NOTE: Gunicorn turns sync workers into gthread ones when threads > 1.
        _unsupported(settings, plan, "web.threads", f"{worker_class} workers run no threads")
    if worker_class in ("gthread", "gevent"):
        plan.argv += ["--worker-connections", str(settings["web.worker_connections"])]
    else:
        _unsupported(settings, plan, "web.worker_connections", "sync workers serve one client")
    if settings["web.preload"]:
        plan.argv.append("--preload")
    plan.argv.append(TARGETS["gunicorn", plan.role])


def uwsgi_options(settings: Settings, home: Home, role: str = "web") -> list[tuple[str, str]]:
    """Return the uWSGI options of ``role`` as (name, value) pairs, for the command or an ini."""
    host = role_value(settings, role, "host")
    port = role_value(settings, role, "port")
    options = [
        ("master", "true"),
        ("http-socket", _host_port(host, port)),
        ("module", TARGETS["uwsgi", role]),
        ("processes", str(role_value(settings, role, "workers"))),
        ("threads", str(settings["web.threads"])),
        ("enable-threads", "true"),
        ("single-interpreter", "true"),
        ("need-app", "true"),
        # NOTE: uWSGI reloads on SIGTERM unless told otherwise; we stop with SIGTERM.
        ("die-on-term", "true"),
        ("harakiri", str(settings["web.timeout"])),
        ("worker-reload-mercy", str(settings["web.graceful_timeout"])),
        ("reload-mercy", str(settings["web.graceful_timeout"])),
        ("buffer-size", "32768"),
        ("procname-prefix-spaced", f"coverslip-{role}"),
        ("env", f"COVERSLIP_HOME={home.root}"),
        ("env", f"COVERSLIP_ROLE={role}"),
        ("env", f"{MULTIPROCESS_ENV}={metrics.folder_of(home.run, role)}"),
    ]
    if sys.prefix != sys.base_prefix:
        options.append(("virtualenv", sys.prefix))
    if not settings["web.preload"]:
        options.append(("lazy-apps", "true"))
    if settings["web.max_requests"]:
        options.append(("max-requests", str(settings["web.max_requests"])))
        if settings["web.max_requests_jitter"]:
            # NOTE: uWSGI staggers by worker number instead of at random; same purpose.
            options.append(("max-requests-delta", str(settings["web.max_requests_jitter"])))
    # The application writes the access log (logs.configure_access), as under every server.
    options.append(("disable-logging", "true"))
    access = log_targets(settings, home, role).access
    if access is not None:
        options.append(("env", f"{ACCESS_LOG_ENV}={access}"))
    return options


def _uwsgi(settings: Settings, home: Home, plan: Plan) -> None:
    plan.argv = [uwsgi_binary() or "uwsgi"]
    for name, value in uwsgi_options(settings, home, plan.role):
        # NOTE: on uWSGI's command line a boolean option takes no value.
        plan.argv += [f"--{name}"] if value == "true" else [f"--{name}", value]
    _unsupported(settings, plan, "web.keepalive", "its http-socket closes each connection")
    _unsupported(settings, plan, "web.worker_connections", "it serves one client per thread")
    _unsupported(settings, plan, "web.worker_class", "it applies to gunicorn only")
    _unsupported(settings, plan, "web.log_level", "it has no log levels")
