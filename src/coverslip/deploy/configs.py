"""Configuration for the servers around Coverslip: nginx, Apache HTTPD, systemd and uWSGI.

Each generator is a pure function of the settings and the home, so the output can be
checked by the real server (``nginx -t``) in the tests.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from coverslip.config import Settings
from coverslip.deploy.servers import role_value, uwsgi_options
from coverslip.home import Home
from coverslip.web.files import INTERNAL_PREFIX

# The routes `coverslip thumbs` serves, under both OMERO prefixes.
THUMBNAIL_PATTERN = (
    r"^/(webgateway|webclient)/(render_thumbnail|render_birds_eye_view|get_thumbnails)(/|$)"
)
# NOTE: no trailing slash, or nginx answers POST /api/v2/images with a 301.
UPLOAD_PREFIX = "/api/v2/images"
# The routes whose body is an original file (uploaded, or staged for a later import),
# streamed rather than buffered by nginx.
UPLOAD_FILE_PATTERN = r"^/api/v2/images/[^/]+/(?:file|stage)$"
DOWNLOAD_PREFIXES = ("/webgateway/archived_files/", "/webclient/archived_files/")

MAINTENANCE_HTML = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>Coverslip: maintenance</title>"
    '</head><body style="font-family:sans-serif;margin:4em auto;max-width:36em">'
    "<h1>Back soon</h1><p>Coverslip is being restarted or maintained. "
    "Please try again in a minute.</p></body></html>"
)


def static_folder() -> Path:
    """Return the folder of the web app's static files (served by nginx or Apache)."""
    spec = importlib.util.find_spec("coverslip")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "web" / "static"


def nginx_size(size: int) -> str:
    """Return ``size`` bytes in nginx's notation (``0`` is no limit)."""
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _address(settings: Settings, role: str) -> str:
    host = role_value(settings, role, "host")
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{role_value(settings, role, 'port')}"


def _read_timeout(settings: Settings) -> int:
    return settings["web.timeout"] + 10


def nginx_locations(
    settings: Settings, home: Home, web: str, thumbs: str, max_body_size: int | None = None
) -> str:
    """Return the server-level directives and locations that proxy to ``web`` and ``thumbs``."""
    body = settings["images.size_cap"] if max_body_size is None else max_body_size
    timeout = _read_timeout(settings)
    maintenance = MAINTENANCE_HTML.replace("'", "&#39;")
    downloads = "\n".join(
        f"""
    location {prefix} {{
        proxy_buffering off;
        proxy_pass {web};
    }}"""
        for prefix in DOWNLOAD_PREFIXES
    )
    quiet = settings["web.body_timeout"]
    return f"""\
    client_max_body_size {nginx_size(body)};
    # A client that stops sending its request is dropped instead of holding a worker.
    client_header_timeout {quiet}s;
    client_body_timeout {quiet}s;
    sendfile on;

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Real-IP $remote_addr;
    # One id per request, in nginx's $request_id and in Coverslip's log lines and answers.
    proxy_set_header X-Request-ID $request_id;
    proxy_read_timeout {timeout}s;
    proxy_send_timeout {timeout}s;
    proxy_redirect off;

    # A friendly page while the application server is down or restarting.
    error_page 502 503 504 = @maintenance;
    location @maintenance {{
        default_type text/html;
        add_header Retry-After 30 always;
        return 503 '{maintenance}';
    }}

    location ^~ /static/ {{
        alias {static_folder()}/;
        expires 7d;
        access_log off;
    }}

    # Thumbnails go to `coverslip thumbs`, so that slow requests never queue them.
    location ~ {THUMBNAIL_PATTERN} {{
        proxy_pass {thumbs};
    }}

    # Original files, uploaded or staged, stream through when they say their length, and
    # downloads stream back. A chunked body is read whole first: over HTTP/1.0 to the
    # application nginx buffers chunked bodies, so one cut before its last chunk never
    # reaches an application server that cannot tell (Granian).
    location ~ {UPLOAD_FILE_PATTERN} {{
        proxy_http_version 1.0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_pass {web};
    }}

    # Every other body is small: nginx reads it whole first, so a slow client holds only
    # nginx, never an application thread.
    location {UPLOAD_PREFIX} {{
        proxy_buffering off;
        proxy_pass {web};
    }}
{downloads}

    # Downloads handed over with X-Accel-Redirect (web.sendfile = nginx); never reachable
    # from outside.
    location {INTERNAL_PREFIX}/ {{
        internal;
        alias {home.root}/;
    }}

    location / {{
        proxy_pass {web};
    }}
"""


def split_node(node: str) -> tuple[str, int | None]:
    """Return (host, port or None) of a node given as HOST, HOST:PORT, [V6] or [V6]:PORT."""
    host, colon, port = node.rpartition(":")
    if colon and port.isdigit() and (not host.startswith("[") or host.endswith("]")):
        return host, int(port)
    return node, None


def _servers(settings: Settings, role: str, nodes: Sequence[str], keepalive: str) -> str:
    """Return an upstream's ``server`` lines: this host's ``role``, or ``role`` on every node.

    A node without a port listens on ``role``'s port from the settings.
    """
    addresses = []
    for node in nodes:
        host, port = split_node(node)
        addresses.append(f"{host}:{port or role_value(settings, role, 'port')}")
    lines = "".join(
        f"\n    server {address} fail_timeout=0;"
        for address in addresses or [_address(settings, role)]
    )
    return f"{lines}{keepalive}"


def nginx(
    settings: Settings,
    home: Home,
    http: int = 80,
    server_name: str = "$hostname",
    max_body_size: int | None = None,
    nodes: Sequence[str] = (),
    thumbs_nodes: Sequence[str] | None = None,
) -> str:
    """Return an nginx site: upstreams for web and thumbs, and a server using them.

    ``nodes`` (HOST or HOST:PORT) run ``coverslip web``, ``thumbs_nodes`` run ``coverslip
    thumbs`` (by default the hosts of ``nodes``, on ``thumbs.port``); none means this machine.
    """
    if thumbs_nodes is None:
        thumbs_nodes = [split_node(node)[0] for node in nodes]
    # NOTE: uWSGI's http-socket closes every connection; reusing one races with that close,
    # and nginx does not retry a POST that lost the race (a 502 for an upload), so uWSGI
    # upstreams get a fresh connection per request.
    keepalive = "" if settings["web.application_server"] == "uwsgi" else "\n    keepalive 32;"
    locations = nginx_locations(
        settings, home, "http://coverslip_web", "http://coverslip_thumbs", max_body_size
    )
    return f"""\
# Coverslip site for nginx, generated by `coverslip config nginx` for {home.root}.
upstream coverslip_web {{{_servers(settings, "web", nodes, keepalive)}
}}

upstream coverslip_thumbs {{{_servers(settings, "thumbs", thumbs_nodes, keepalive)}
}}

server {{
    listen {http};
    server_name {server_name};

{locations}}}
"""


def nginx_location(settings: Settings, home: Home, max_body_size: int | None = None) -> str:
    """Return directives to include inside an existing nginx ``server`` block."""
    locations = nginx_locations(
        settings,
        home,
        f"http://{_address(settings, 'web')}",
        f"http://{_address(settings, 'thumbs')}",
        max_body_size,
    )
    return (
        "# Coverslip locations, generated by `coverslip config nginx-location`;\n"
        "# include this file inside a server { } block.\n" + locations
    )


def apache(
    settings: Settings,
    home: Home,
    http: int = 80,
    server_name: str = "localhost",
    max_body_size: int | None = None,
) -> str:
    """Return an Apache HTTPD site proxying with mod_proxy_http, streaming chunked uploads."""
    body = settings["images.size_cap"] if max_body_size is None else max_body_size
    web = _address(settings, "web")
    thumbs = _address(settings, "thumbs")
    static = static_folder()
    pattern = THUMBNAIL_PATTERN.replace("(/|$)", "(/.*)?$")
    return f"""\
# Coverslip site for Apache HTTPD, generated by `coverslip config apache` for {home.root}.
# Needs: a2enmod proxy proxy_http headers
<VirtualHost *:{http}>
    ServerName {server_name}

    # Uploads may be of any size up to images.size_cap (0: no limit), and are streamed
    # to the application server chunked instead of being spooled first.
    LimitRequestBody {body if body < 2**31 else 0}
    SetEnv proxy-sendchunked 1
    ProxyRequests Off
    ProxyPreserveHost On
    ProxyTimeout {_read_timeout(settings)}
    RequestHeader set X-Forwarded-Proto "expr=%{{REQUEST_SCHEME}}"

    Alias /static/ "{static}/"
    <Directory "{static}">
        Require all granted
    </Directory>
    ProxyPass /static/ !

    # Thumbnails go to `coverslip thumbs`.
    ProxyPassMatch "{pattern}" "http://{thumbs}/$1/$2$3"
    ProxyPass / "http://{web}/"
    ProxyPassReverse / "http://{web}/"

    ErrorDocument 502 "{MAINTENANCE_HTML.replace('"', "'")}"
    ErrorDocument 503 "{MAINTENANCE_HTML.replace('"', "'")}"
</VirtualHost>
"""


def coverslip_command() -> list[str]:
    """Return how to run `coverslip` from this installation."""
    beside = Path(sys.executable).parent / "coverslip"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("coverslip")
    return [found] if found else [sys.executable, "-m", "coverslip.cli"]


def systemd(settings: Settings, home: Home, role: str = "web", user: str = "coverslip") -> str:
    """Return a systemd unit that runs `coverslip <role> start --foreground` (the job
    worker: `coverslip worker run`)."""
    verb = ["run"] if role == "worker" else ["start", "--foreground"]
    command = " ".join([*coverslip_command(), role, *verb])
    what = {"web": "web application", "thumbs": "thumbnail service"}.get(role, "job worker")
    stop_seconds = settings["web.graceful_timeout"] + 15
    return f"""\
# Coverslip {what}, generated by `coverslip config systemd {role}`.
# Install as /etc/systemd/system/coverslip-{role}.service, then:
#   systemctl daemon-reload && systemctl enable --now coverslip-{role}
[Unit]
Description=Coverslip {what}
After=network-online.target postgresql.service redis-server.service
Wants=network-online.target

[Service]
Type=exec
User={user}
Environment=COVERSLIP_HOME={home.root}
WorkingDirectory={home.root}
ExecStart={command}
# TERM lets workers finish for web.graceful_timeout; whatever is left is then killed.
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec={stop_seconds}
Restart=on-failure
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def uwsgi_ini(settings: Settings, home: Home, role: str = "web") -> str:
    """Return a uWSGI ini for HTTP mode; chunked bodies are read with uwsgi.chunked_read()."""
    lines = [
        f"; Coverslip {role} under uWSGI, generated by `coverslip config uwsgi`.",
        f"; Run with: uwsgi --ini coverslip-{role}.ini",
        "[uwsgi]",
    ]
    lines += [f"{name} = {value}" for name, value in uwsgi_options(settings, home, role)]
    return "\n".join(lines) + "\n"
