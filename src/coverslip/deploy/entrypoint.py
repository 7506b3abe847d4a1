"""Container entrypoint: check the environment, then become `coverslip web|thumbs start`.

    python -m coverslip.deploy.entrypoint web       # or thumbs; check; healthz; any command

Checks, each with one clear line: the instance home is writable, every setting is valid,
the service listens on an address reachable from outside the container, the catalog
(and Redis when sessions.backend is redis) answers within COVERSLIP_WAIT seconds (30).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

from coverslip import config
from coverslip.deploy.checks import writable
from coverslip.deploy.configs import coverslip_command
from coverslip.home import Home

EX_CONFIG = 78  # sysexits.h: configuration error


def _retry(what: Callable[[], object], seconds: float) -> str | None:
    """Call ``what`` until it succeeds or ``seconds`` pass; return the last error, or None."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            what()
            return None
        except Exception as exc:  # noqa: BLE001 - report whatever stops it
            if time.monotonic() >= deadline:
                return (str(exc).splitlines() or [type(exc).__name__])[0]
        time.sleep(1)


def problems(home: Home, role: str, wait: float = 30.0) -> list[str]:
    """Return what keeps ``role`` from starting in this container, one line each."""
    if not writable(home.root):
        return [f"COVERSLIP_HOME {home.root} is not writable (mount a volume there)"]
    try:
        settings = home.settings()
    except config.SettingError as exc:
        return [str(exc)]
    found = []
    host = settings[f"{role}.host"]
    if host in ("127.0.0.1", "localhost", "::1"):
        found.append(
            f"{role}.host is {host}: nothing outside the container can reach it; "
            f"set {config.lookup(f'{role}.host').env}=0.0.0.0"
        )
    from coverslip.catalog import Catalog

    catalog = Catalog(home.catalog_url(settings))
    error = _retry(catalog.ping, wait)
    if error:
        found.append(
            f"the catalog ({settings['db.url'] or 'catalog.sqlite'}) does not answer: {error}"
        )
    if settings["sessions.backend"] == "redis":
        import redis

        client = redis.Redis.from_url(settings["sessions.redis_url"], socket_timeout=2)
        error = _retry(client.ping, wait)
        if error:
            found.append(f"Redis at {settings['sessions.redis_url']} does not answer: {error}")
    return found


def healthz(home: Home) -> bool:
    """Tell whether the web application or the thumbnail service of this container is up."""
    import urllib.request

    settings = home.settings()
    for role in ("web", "thumbs"):
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(
            settings[f"{role}.host"], settings[f"{role}.host"]
        )
        url = f"http://{host}:{settings[f'{role}.port']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return True
        except OSError:
            continue
    return False


def main(argv: Sequence[str] | None = None) -> None:
    """Check, then exec the server; other commands go to `coverslip` unchanged."""
    args = list(sys.argv[1:] if argv is None else argv) or ["web"]
    if args[0] not in ("web", "thumbs", "check", "healthz"):
        os.execvp(coverslip_command()[0], [*coverslip_command(), *args])
    home = Home.from_env()
    if args[0] == "healthz":
        sys.exit(0 if healthz(home) else 1)
    roles = ["web", "thumbs"] if args[0] == "check" else [args[0]]
    wait = float(os.environ.get("COVERSLIP_WAIT", "30"))
    found = [line for role in roles for line in problems(home, role, wait)]
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if found:
        sys.exit(EX_CONFIG)
    if args[0] == "check":
        print("the environment is ready")
        return
    command = [*coverslip_command(), args[0], "start", "--foreground", *args[1:]]
    os.execvp(command[0], command)


if __name__ == "__main__":  # pragma: no cover
    main()
