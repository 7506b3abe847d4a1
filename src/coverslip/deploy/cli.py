"""`coverslip web|thumbs start|stop|status|restart` and `coverslip config nginx|…`.

The groups read the home and command-line settings from the `coverslip` command's context
object (``.home`` and ``.flags``), so they attach to it without importing it.
"""

from __future__ import annotations

import getpass
import sys
import time
from typing import Any, NoReturn, Protocol

import click

from coverslip import config
from coverslip.deploy import checks, configs, process
from coverslip.deploy.checks import Exit, Refused
from coverslip.deploy.servers import Plan, plan
from coverslip.home import Home

ROLE_TEXT = {"web": "the web application", "thumbs": "the thumbnail service"}


class _State(Protocol):
    home: Home
    flags: dict[str, Any]


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def load_settings(state: _State, flags: dict[str, Any] | None = None) -> config.Settings:
    """Return the settings with ``flags`` on top; a bad one is refused with its exit code."""
    merged = {**state.flags, **{k: v for k, v in (flags or {}).items() if v is not None}}
    try:
        return state.home.settings(flags=merged)
    except config.SettingError as exc:
        raise checks.setting_refusal(exc) from None


def prepare(state: _State, role: str, flags: dict[str, Any]) -> tuple[config.Settings, Plan]:
    """Validate everything a start needs and return the settings and the plan."""
    settings = load_settings(state, flags)
    pid = process.running_pid(state.home, role)
    if pid is not None:
        raise Refused(f"{role} is already running (PID {pid})", Exit.ALREADY_RUNNING)
    result = plan(settings, state.home, role)
    # Workers build their own app from the environment: hand command-line settings down.
    for name, value in {**state.flags, **flags}.items():
        if value is not None:
            result.env[config.lookup(name).env] = str(value)
    checks.check_installed(settings)
    checks.check_workers(settings, role)
    checks.check_writable(state.home, result)
    checks.check_port(result)
    return settings, result


def _report(settings: config.Settings, result: Plan) -> None:
    """Print (and log) the settings the server cannot honour and the known pitfalls."""
    lines = result.notes + checks.warnings(settings, result)
    for line in lines:
        _warn(line)
    if lines and result.logs.error != "-":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(result.logs.error, "a") as log:
            log.writelines(f"{stamp} [WARNING] coverslip-{result.role}: {line}\n" for line in lines)


def _migrate(state: _State, settings: config.Settings) -> None:
    from coverslip.catalog import Catalog

    # NOTE: once, here, rather than in every worker at the same time.
    Catalog(state.home.catalog_url(settings)).migrate()


def start_role(state: _State, role: str, foreground: bool, flags: dict[str, Any]) -> None:
    """Validate, then start ``role`` detached (or become it with ``foreground``)."""
    try:
        settings, result = prepare(state, role, flags)
    except Refused as exc:
        _fail(str(exc), exc.code)
    _report(settings, result)
    _migrate(state, settings)
    where = f"http://{result.host}:{result.port}/"
    logs = "the terminal" if result.logs.error == "-" else result.logs.error
    if foreground:
        click.echo(f"{role}: {result.server} on {where} in the foreground; logs: {logs}")
        process.exec_foreground(result, state.home)
    try:
        pid = process.spawn(result, state.home)
    except RuntimeError as exc:
        _fail(str(exc), Exit.START_FAILED)
    click.echo(f"{role}: started {result.server} (PID {pid}) on {where}; logs: {logs}")


def stop_role(state: _State, role: str) -> None:
    try:
        graceful = load_settings(state)["web.graceful_timeout"]
    except Refused:
        graceful = config.lookup("web.graceful_timeout").default_value()
    pid = process.stop(state.home, role, graceful)
    click.echo(f"{role}: stopped (PID {pid})" if pid else f"{role}: NOT STARTED")


def control_group(role: str) -> click.Group:
    """Return the `start|stop|status|restart` group of ``role`` ("web" or "thumbs")."""
    prefix = role

    @click.group(name=role, help=f"Start, stop and inspect {ROLE_TEXT[role]}.")
    def group() -> None:
        pass

    def server_options(func: Any) -> Any:
        func = click.option(
            "--foreground", is_flag=True, help="Run in the foreground (systemd, containers)."
        )(func)
        func = click.option("--workers", type=int, help=f"Worker processes ({prefix}.workers).")(
            func
        )
        func = click.option("--port", type=int, help=f"Port ({prefix}.port).")(func)
        func = click.option("--host", help=f"Address ({prefix}.host).")(func)
        return func

    def flags_of(host: str | None, port: int | None, workers: int | None) -> dict[str, Any]:
        return {f"{prefix}.host": host, f"{prefix}.port": port, f"{prefix}.workers": workers}

    @group.command(help=f"Start {ROLE_TEXT[role]} under web.application_server.")
    @server_options
    @click.pass_obj
    def start(
        state: _State, host: str | None, port: int | None, workers: int | None, foreground: bool
    ) -> None:
        start_role(state, role, foreground, flags_of(host, port, workers))

    @group.command(help=f"Stop {ROLE_TEXT[role]}: TERM, web.graceful_timeout, then KILL.")
    @click.pass_obj
    def stop(state: _State) -> None:
        stop_role(state, role)

    @group.command(help="Print RUNNING (PID n) and exit 0, or NOT STARTED and exit 1.")
    @click.pass_obj
    def status(state: _State) -> None:
        pid = process.running_pid(state.home, role)
        if pid is None:
            click.echo("NOT STARTED")
            sys.exit(1)
        click.echo(f"RUNNING (PID {pid})")

    @group.command(help=f"Stop {ROLE_TEXT[role]} if it runs, then start it.")
    @server_options
    @click.pass_obj
    def restart(
        state: _State, host: str | None, port: int | None, workers: int | None, foreground: bool
    ) -> None:
        stop_role(state, role)
        start_role(state, role, foreground, flags_of(host, port, workers))

    return group


web = control_group("web")
thumbs = control_group("thumbs")


class _Size(click.ParamType):
    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return config.parse_size(str(value))
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)


_max_body = click.option(
    "--max-body-size",
    type=_Size(),
    help="Largest request body, e.g. 2G; 0 for no limit (default: images.size_cap).",
)
_http = click.option("--http", type=int, default=80, show_default=True, help="Port to listen on.")


def _settings(state: _State) -> config.Settings:
    try:
        return load_settings(state)
    except Refused as exc:
        _fail(str(exc), exc.code)


@click.command("nginx")
@_http
@click.option("--servername", default="$hostname", show_default=True, help="server_name.")
@_max_body
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A machine running `coverslip web` (repeat for each; default port web.port). "
    "Default: this one.",
)
@click.option(
    "--thumbs-node",
    "thumbs_nodes",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A machine running `coverslip thumbs` (repeat; default: each --node's host on "
    "thumbs.port).",
)
@click.pass_obj
def config_nginx(
    state: _State,
    http: int,
    servername: str,
    max_body_size: int | None,
    nodes: tuple[str, ...],
    thumbs_nodes: tuple[str, ...],
) -> None:
    """Print an nginx site for web and thumbs, on this machine or on several nodes."""
    site = configs.nginx(
        _settings(state), state.home, http, servername, max_body_size, nodes, thumbs_nodes or None
    )
    click.echo(site, nl=False)


@click.command("nginx-location")
@_max_body
@click.pass_obj
def config_nginx_location(state: _State, max_body_size: int | None) -> None:
    """Print nginx locations to include in an existing server block."""
    click.echo(configs.nginx_location(_settings(state), state.home, max_body_size), nl=False)


@click.command("apache")
@_http
@click.option("--servername", default="localhost", show_default=True, help="ServerName.")
@_max_body
@click.pass_obj
def config_apache(state: _State, http: int, servername: str, max_body_size: int | None) -> None:
    """Print an Apache HTTPD site (mod_proxy_http; chunked uploads streamed)."""
    click.echo(
        configs.apache(_settings(state), state.home, http, servername, max_body_size), nl=False
    )


_role = click.argument("role", type=click.Choice(["web", "thumbs"]), default="web")


@click.command("systemd")
@click.argument("role", type=click.Choice(["web", "thumbs", "worker"]), default="web")
@click.option("--user", default=getpass.getuser, show_default="you", help="User= of the unit.")
@click.pass_obj
def config_systemd(state: _State, role: str, user: str) -> None:
    """Print a systemd unit for web (default), thumbs or the job worker."""
    click.echo(configs.systemd(_settings(state), state.home, role, user), nl=False)


@click.command("uwsgi")
@_role
@click.pass_obj
def config_uwsgi(state: _State, role: str) -> None:
    """Print a uWSGI ini (HTTP mode, chunked input) for web (default) or thumbs."""
    click.echo(configs.uwsgi_ini(_settings(state), state.home, role), nl=False)


CONFIG_COMMANDS = (config_nginx, config_nginx_location, config_apache, config_systemd, config_uwsgi)


def add_config_commands(group: click.Group) -> None:
    """Attach `nginx`, `nginx-location`, `apache`, `systemd` and `uwsgi` to `coverslip config`."""
    for command in CONFIG_COMMANDS:
        if command.name not in group.commands:
            group.add_command(command)


def register(main: click.Group) -> None:
    """Attach `web`, `thumbs` and the config generators to the `coverslip` command (idempotent)."""
    for group in (web, thumbs):
        if group.name not in main.commands:
            main.add_command(group)
    config_group = main.commands.get("config")
    if isinstance(config_group, click.Group):
        add_config_commands(config_group)
