"""Every setting of Coverslip, declared once, and the order in which they are loaded.

Load order, later wins: defaults → ``etc/coverslip.toml`` in the instance home →
environment (``COVERSLIP_WEB_WORKERS`` for ``web.workers``) → command-line flags.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

ENV_PREFIX = "COVERSLIP_"


class SettingError(ValueError):
    """A setting name or value that is not allowed."""


def _default_workers() -> int:
    return 2 * (os.cpu_count() or 1) + 1


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Return the number of bytes in a size such as ``512``, ``64M`` or ``2G``."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise ValueError("a size in bytes, optionally with K, M, G or T")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_base_url(text: str) -> str:
    """Return ``text`` as an absolute http(s) base URL: a host, no query or fragment.

    Empty text stays empty (no base URL). A trailing slash is dropped.
    """
    url = text.strip().rstrip("/")
    if not url:
        return ""
    # SECURITY: the value goes into Location headers and links; urlsplit would quietly drop
    # tabs and line breaks, so any whitespace or control character is refused outright.
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError(text)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise ValueError(text)
    if "?" in url or "#" in url:
        raise ValueError(text)
    _ = parts.port  # NOTE: raises ValueError for a port that is not a number up to 65535
    return url


@dataclass(frozen=True)
class Setting:
    """One setting: its name, type, default and one line of help."""

    name: str
    type: str  # str | int | float | bool | choice | list | size | url | store
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    default_doc: str | None = None  # shown instead of a computed default

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace(".", "_")

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def allowed(self) -> str:
        """Describe in words what values this setting takes."""
        if self.type == "choice":
            return "one of " + ", ".join(self.choices)
        if self.type == "bool":
            return "true or false"
        if self.type == "list":
            return "a comma-separated list"
        if self.type == "url":
            return "an absolute http(s) URL with a host and no query or fragment, or empty"
        if self.type == "store":
            return "file, or s3://bucket/prefix with a valid S3 bucket name"
        if self.type == "size":
            text = "a size in bytes (e.g. 512M, 2G; 0 for no limit)"
        elif self.type in ("int", "float"):
            text = "an integer" if self.type == "int" else "a number"
        else:
            return "text"
        if self.minimum is not None and self.maximum is not None:
            return f"{text} from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f"{text} of at least {self.minimum:g}"
        return text

    def convert(self, raw: Any) -> Any:
        """Return ``raw`` (text from a file, the environment or a flag) as this setting's type."""
        try:
            value = self._convert(raw)
        except (TypeError, ValueError):
            raise SettingError(
                f"{self.name}: {raw!r} is not allowed; expected {self.allowed()}"
            ) from None
        if self.type in ("int", "float", "size"):
            too_low = self.minimum is not None and value < self.minimum
            too_high = self.maximum is not None and value > self.maximum
            if too_low or too_high:
                raise SettingError(
                    f"{self.name}: {raw!r} is not allowed; expected {self.allowed()}"
                )
        return value

    def _convert(self, raw: Any) -> Any:
        kind = self.type
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            if isinstance(raw, bool | float):
                raise ValueError(raw)
            return int(str(raw).strip())
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if kind == "size":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return raw if isinstance(raw, int) else parse_size(str(raw))
        if kind == "choice":
            text = str(raw).strip()
            if text not in self.choices:
                raise ValueError(raw)
            return text
        if kind == "url":
            if not isinstance(raw, str):
                raise ValueError(raw)
            return parse_base_url(raw)
        if kind == "store":
            text = str(raw).strip().rstrip("/")
            if text != "file" and not _STORE.match(text):
                raise ValueError(raw)
            return text
        if kind == "list":
            if isinstance(raw, list):
                return [str(item) for item in raw]
            return [item.strip() for item in str(raw).split(",") if item.strip()]
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise ValueError(raw)
        return str(raw)


# pixels.store: "file", or s3://bucket/prefix (bucket names as S3 allows them, no "..").
_STORE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/(?!\.\.(/|$))[^/\\\0]+)*$")


def _s(name: str, type_: str, default: Any, doc: str, **kwargs: Any) -> Setting:
    return Setting(name, type_, default, doc, **kwargs)


SETTINGS: tuple[Setting, ...] = (
    # The web application server.
    _s(
        "web.env",
        "choice",
        "development",
        "development logs to the terminal; production logs to log/.",
        choices=("development", "production"),
    ),
    _s(
        "web.application_server",
        "choice",
        "granian",
        "The application server that runs the WSGI app.",
        choices=("granian", "gunicorn", "uwsgi"),
    ),
    _s("web.host", "str", "127.0.0.1", "Address the web application listens on."),
    _s("web.port", "int", 4080, "Port the web application listens on.", minimum=1, maximum=65535),
    _s(
        "web.workers",
        "int",
        _default_workers,
        "Worker processes of the web application.",
        minimum=1,
        maximum=1024,
        default_doc="2 × cores + 1",
    ),
    _s(
        "web.worker_class",
        "choice",
        "gthread",
        "Gunicorn worker class.",
        choices=("sync", "gthread", "gevent"),
    ),
    _s(
        "web.threads",
        "int",
        1,
        "Threads per worker (Granian blocking threads, Gunicorn gthread, uWSGI); 1 is fastest for rendering.",
        minimum=1,
        maximum=1024,
    ),
    _s(
        "web.worker_connections",
        "int",
        1000,
        "Maximum simultaneous clients per gevent worker.",
        minimum=1,
    ),
    _s(
        "web.body_timeout",
        "int",
        30,
        "Seconds nginx waits for the next part of a request header or body (config nginx).",
        minimum=1,
        maximum=3600,
    ),
    _s(
        "web.timeout",
        "int",
        60,
        "Seconds a worker may spend on one request before it is restarted.",
        minimum=1,
    ),
    _s(
        "web.graceful_timeout",
        "int",
        30,
        "Seconds workers get to finish on stop before they are killed.",
        minimum=0,
    ),
    _s(
        "web.keepalive",
        "int",
        5,
        "Seconds to wait for the next request on a keep-alive connection.",
        minimum=0,
    ),
    _s(
        "web.max_requests",
        "int",
        0,
        "Restart a worker after this many requests (0: never).",
        minimum=0,
    ),
    _s(
        "web.max_requests_jitter",
        "int",
        0,
        "Random extra requests added to web.max_requests per worker.",
        minimum=0,
    ),
    _s("web.preload", "bool", False, "Load the application before forking workers."),
    _s(
        "web.prefix",
        "str",
        "",
        "URL prefix the application is mounted under behind a proxy (e.g. /coverslip).",
    ),
    _s(
        "web.public_url",
        "url",
        "",
        "Public base URL of the site for absolute links, e.g. https://images.example.org "
        "(empty: a trusted proxy's X-Forwarded-Host, else web.host and web.port).",
    ),
    _s("web.public.enabled", "bool", True, "Let anonymous visitors read images in public groups."),
    _s(
        "web.forwarded_allow_ips",
        "list",
        ["127.0.0.1", "::1"],
        "Proxies whose X-Forwarded-* headers are trusted.",
    ),
    _s(
        "web.sendfile",
        "choice",
        "none",
        "How downloads are sent: streamed by the worker, or handed to nginx with X-Accel-Redirect.",
        choices=("none", "nginx"),
    ),
    _s("web.args", "str", "", "Extra raw arguments passed to the application server."),
    _s(
        "web.access_log",
        "str",
        "",
        "Access log path (empty: log/web-access.log in production, none in development).",
    ),
    _s(
        "web.error_log",
        "str",
        "",
        "Error log path (empty: log/web-error.log in production, the terminal in development).",
    ),
    _s(
        "web.log_level",
        "choice",
        "info",
        "Log level of the application server and of Coverslip's own log lines (debug: one per request).",
        choices=("debug", "info", "warning", "error"),
    ),
    _s(
        "web.log_format",
        "choice",
        "logfmt",
        "Format of Coverslip's own log lines (in the error log): logfmt or JSON lines.",
        choices=("logfmt", "json"),
    ),
    # The thumbnail service.
    _s("thumbs.host", "str", "127.0.0.1", "Address the thumbnail service listens on."),
    _s(
        "thumbs.port",
        "int",
        4081,
        "Port the thumbnail service listens on.",
        minimum=1,
        maximum=65535,
    ),
    _s(
        "thumbs.workers",
        "int",
        _default_workers,
        "Worker processes of the thumbnail service.",
        minimum=1,
        maximum=1024,
        default_doc="2 × cores + 1",
    ),
    _s(
        "thumbs.access_log",
        "str",
        "",
        "Access log path (empty: log/thumbs-access.log in production, none in development).",
    ),
    _s(
        "thumbs.error_log",
        "str",
        "",
        "Error log path (empty: log/thumbs-error.log in production, the terminal in development).",
    ),
    _s(
        "thumbs.batch_max",
        "int",
        50,
        "Most distinct ids one get_thumbnails request may ask for.",
        minimum=1,
        maximum=1000,
    ),
    _s(
        "thumbs.default_size",
        "int",
        96,
        "Longest side in pixels of the default thumbnail.",
        minimum=16,
        maximum=1024,
    ),
    # Background jobs.
    _s(
        "jobs.backend",
        "choice",
        "sqlite",
        "Queue of background jobs (imports, deleting files): a SQLite file in run/ (one host), "
        "Redis or PostgreSQL (many hosts), or inline (each job runs at once in the process "
        "that submits it; for scripts and tests).",
        choices=("sqlite", "redis", "postgresql", "inline"),
    ),
    _s(
        "jobs.url",
        "str",
        "",
        "Redis URL or PostgreSQL DSN of the queue; empty takes sessions.redis_url for redis "
        "and db.url for postgresql.",
    ),
    _s(
        "jobs.threads",
        "int",
        1,
        "Jobs one worker process runs at once.",
        minimum=1,
        maximum=64,
    ),
    _s(
        "jobs.attempts",
        "int",
        3,
        "Times a job is tried before it fails for good (a killed worker counts as one).",
        minimum=1,
        maximum=20,
    ),
    _s(
        "jobs.retry_delay",
        "float",
        5.0,
        "Seconds before a failed attempt is tried again; doubles with each attempt.",
        minimum=0,
    ),
    _s(
        "jobs.lease",
        "float",
        30.0,
        "Seconds a running job stays claimed without a sign of life from its worker; then "
        "it is tried again elsewhere.",
        minimum=2,
    ),
    # Sessions.
    _s(
        "sessions.backend",
        "choice",
        "sql",
        "Where sessions live: the catalog (one host) or Redis (many hosts).",
        choices=("sql", "redis"),
    ),
    _s(
        "sessions.redis_url",
        "str",
        "redis://127.0.0.1:6379/0",
        "Redis URL used when sessions.backend is redis.",
    ),
    _s(
        "sessions.cookie_age",
        "int",
        14 * 24 * 3600,
        "Seconds a session lives at most after login.",
        minimum=60,
    ),
    _s(
        "sessions.idle_timeout",
        "int",
        24 * 3600,
        "Seconds without a request after which a session ends.",
        minimum=60,
    ),
    _s(
        "sessions.expire_at_browser_close",
        "bool",
        False,
        "Send session cookies without an expiry date.",
    ),
    # Signing in.
    _s(
        "login.max_failures_user",
        "int",
        5,
        "Failed sign-ins for one username within login.window before each next attempt waits.",
        minimum=1,
    ),
    _s(
        "login.max_failures_address",
        "int",
        50,
        "Failed sign-ins from one client address within login.window before attempts wait.",
        minimum=1,
    ),
    _s(
        "login.window",
        "int",
        900,
        "Seconds failed sign-ins are counted for, from the first one.",
        minimum=1,
    ),
    _s(
        "login.max_delay",
        "int",
        30,
        "Longest wait (seconds; 2, 4, 8 … after each failure) before a sign-in is tried again.",
        minimum=1,
        maximum=3600,
    ),
    # The catalog.
    _s(
        "db.url",
        "str",
        "",
        "SQLAlchemy URL of the catalog (empty: catalog.sqlite in the instance home).",
    ),
    _s(
        "db.connect_timeout",
        "int",
        5,
        "Seconds to wait for a PostgreSQL connection; /readyz waits at most this long too.",
        minimum=1,
        maximum=300,
    ),
    _s(
        "db.statement_timeout",
        "int",
        30,
        "Seconds one PostgreSQL statement may run; a server that stops answering is given up.",
        minimum=1,
        maximum=86400,
    ),
    # Pixels and imports.
    _s(
        "pixels.tile_size",
        "choice",
        "256",
        "Chunk and tile edge of new pyramids in pixels.",
        choices=("256", "512"),
    ),
    _s(
        "pixels.codec",
        "choice",
        "lz4",
        "Chunk compression of new pyramids (blosc lz4, blosc zstd, or none).",
        choices=("lz4", "zstd", "none"),
    ),
    _s(
        "pixels.store",
        "store",
        "file",
        "Where new pyramids and originals go: file (the instance home) or an S3-compatible "
        "object store, s3://bucket/prefix. Credentials come from AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY or the standard AWS files.",
    ),
    _s(
        "pixels.s3_endpoint",
        "str",
        "",
        "URL of the S3-compatible service (empty: AWS itself), e.g. http://10.0.0.5:8333.",
    ),
    _s("pixels.s3_region", "str", "us-east-1", "Region the object store signs requests for."),
    _s(
        "pixels.s3_timeout",
        "float",
        10.0,
        "Seconds to wait for the object store to connect or answer before a request gets 503.",
        minimum=0.1,
    ),
    _s("imports.thumbnail", "bool", True, "Write the default thumbnail at import time."),
    # The images API.
    _s(
        "images.size_cap",
        "size",
        0,
        "Largest original that may be uploaded (0: no cap).",
        minimum=0,
    ),
    _s(
        "images.user_quota",
        "size",
        0,
        "Total bytes of originals one user may store (0: no quota).",
        minimum=0,
    ),
    _s(
        "images.unzip_max_bytes",
        "size",
        64 * 1024**3,
        "Largest total a zipped OME-Zarr upload may unpack to (a zip bomb is refused with 413).",
        minimum=1,
    ),
    _s(
        "images.unzip_max_files",
        "int",
        1_000_000,
        "Most files a zipped OME-Zarr upload may hold.",
        minimum=1,
    ),
    _s(
        "images.web_download_allowed_hosts",
        "list",
        [],
        "Hosts that web-download imports may fetch from.",
    ),
    _s(
        "downloads.enabled", "bool", True, "Allow downloading original files (groups may override)."
    ),
    _s(
        "downloads.from_store",
        "choice",
        "stream",
        "How originals kept in the object store are sent: streamed through the server, or a "
        "redirect to a presigned URL valid for 5 minutes (the client must reach the store).",
        choices=("stream", "redirect"),
    ),
    # Rendering limits.
    _s(
        "render.max_pixels",
        "int",
        64 * 1024 * 1024,
        "Largest output (width × height) a single render may produce.",
        minimum=1,
    ),
    _s(
        "render.source_tiles",
        "bool",
        True,
        "Send a slide's own JPEG tiles as its file stores them when a request asks for exactly "
        "one of them with settings that change no pixel (8-bit RGB, full windows): the same "
        "pixels, without decoding and encoding them again.",
    ),
    _s(
        "iiif.aliases",
        "list",
        [],
        "IIIF identifiers that name an image, as name=id (e.g. 67352ccc-d1b0-11e1-89ae-279075081939=7).",
    ),
    _s(
        "iiif.max_area",
        "int",
        16 * 1024 * 1024,
        "Largest IIIF output (width × height) in pixels, announced as maxArea.",
        minimum=1,
    ),
    _s(
        "iiif.jpeg_quality",
        "int",
        90,
        "libjpeg quality (1-100) of IIIF JPEG answers.",
        minimum=1,
        maximum=100,
    ),
    _s(
        "iiif.jpeg_chroma",
        "choice",
        "4:4:4",
        "Colour resolution of IIIF JPEG answers: 4:4:4 keeps small saturated details true "
        "(the IIIF validator's colour checks need it); 4:2:0 encodes about twice as fast.",
        choices=("4:4:4", "4:2:0"),
    ),
    _s(
        "metrics.from_anywhere",
        "bool",
        False,
        "Answer /metrics to every caller, proxied ones too; by default only to this host.",
    ),
    _s(
        "cache.enabled",
        "bool",
        True,
        "Keep rendered thumbnails and tiles, in memory and on disk.",
    ),
    _s(
        "cache.max_bytes",
        "size",
        2 * 1024**3,
        "Most bytes of rendered output on disk, shared by all workers; least recently used "
        "go first (0: no disk cache).",
        minimum=0,
        default_doc="2G",
    ),
    _s(
        "cache.memory_bytes",
        "size",
        64 * 1024**2,
        "Most bytes of rendered output each worker process keeps in memory, in front of the "
        "disk (0: none).",
        minimum=0,
        default_doc="64M",
    ),
    _s(
        "cache.backend",
        "choice",
        "disk",
        "Where the shared tier of rendered output lives: files under cache/ (one host), or "
        "Redis (every node). With redis, change notices (settings saved, sign-outs) also go "
        "through Redis, so every node sees them on its next request.",
        choices=("disk", "redis"),
    ),
    _s(
        "cache.redis_url",
        "str",
        "",
        "Redis URL of the shared render cache and change notices (empty: sessions.redis_url).",
    ),
    _s(
        "cache.redis_ttl",
        "int",
        7 * 24 * 3600,
        "Seconds a rendered output stays in Redis after it was made (give Redis a maxmemory "
        "and an allkeys-lru policy to cap it by size).",
        minimum=60,
    ),
)

REGISTRY: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def lookup(name: str) -> Setting:
    """Return the setting called ``name`` or raise a SettingError naming it."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise SettingError(
            f"unknown setting {name!r}; `coverslip config list --defaults` lists them"
        ) from None


@dataclass(frozen=True)
class Settings(Mapping[str, Any]):
    """The effective value of every setting, and where each came from."""

    data: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def __iter__(self) -> Any:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def with_values(self, overrides: Mapping[str, Any], source: str = "flag") -> Settings:
        """Return a copy with ``overrides`` converted, validated and applied."""
        values = dict(self.data)
        sources = dict(self.sources)
        for name, raw in overrides.items():
            values[name] = lookup(name).convert(raw)
            sources[name] = source
        return Settings(values, sources)


def read_file(path: Path) -> dict[str, Any]:
    """Return the settings stored in ``path`` as a flat dict of dotted names."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"{path}: not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and name not in REGISTRY:
                walk(name, value)
            else:
                flat[name] = value

    walk("", data)
    return flat


def write_file(path: Path, values: Mapping[str, Any]) -> None:
    """Write ``values`` (dotted names) to ``path`` as nested TOML tables, atomically."""
    tree: dict[str, Any] = {}
    for name in sorted(values):
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = values[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(tree))
    tmp.replace(path)


def load(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Return the settings: defaults, then the file, then the environment, then flags."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        values[setting.name] = setting.default_value()
        sources[setting.name] = "default"
    layers: list[tuple[str, Iterable[tuple[str, Any]]]] = []
    if config_file is not None:
        layers.append((str(config_file), read_file(config_file).items()))
    env = os.environ if environ is None else environ
    layers.append(("environment", [(s.name, env[s.env]) for s in SETTINGS if s.env in env]))
    layers.append(("flag", (flags or {}).items()))
    for source, items in layers:
        for name, raw in items:
            if raw is None:
                continue
            values[name] = lookup(name).convert(raw)
            sources[name] = source
    return Settings(values, sources)


def describe_default(setting: Setting) -> str:
    """Return the default as shown in docs and ``config list --defaults``."""
    if setting.default_doc:
        return setting.default_doc
    value = setting.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(value) if value else "(empty)"
    if value == "":
        return "(empty)"
    return str(value)


def render_docs() -> str:
    """Return docs/configuration.md, generated from the registry."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from src/coverslip/config.py by `make docs`; do not edit by hand. -->",
        "",
        "Settings are read in this order, later wins: the defaults below, then",
        "`etc/coverslip.toml` in the instance home (`coverslip config set NAME VALUE` writes it),",
        "then environment variables, then command-line flags.",
        "",
        "```sh",
        "coverslip config set web.workers 9",
        "COVERSLIP_WEB_PORT=8080 coverslip serve",
        "coverslip config list --defaults",
        "```",
        "",
    ]
    section = ""
    for setting in SETTINGS:
        head = setting.name.split(".")[0]
        if head != section:
            section = head
            lines += [
                f"## {section}",
                "",
                "| setting | environment | default | allowed | description |",
                "|---|---|---|---|---|",
            ]
        lines.append(
            f"| `{setting.name}` | `{setting.env}` | {describe_default(setting)} "
            f"| {setting.allowed()} | {setting.doc} |"
        )
        if (
            setting is SETTINGS[-1]
            or SETTINGS[SETTINGS.index(setting) + 1].name.split(".")[0] != head
        ):
            lines.append("")
    return "\n".join(lines)
