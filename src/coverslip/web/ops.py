"""Operations endpoints: liveness and readiness for load balancers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from coverslip.services import Services


class Health:
    """`/healthz`: the process is up."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def _session_store(services: Services) -> Any:
    """Return the session store of the services, if they have one yet (SQL or Redis)."""
    store = getattr(services, "sessions", None)
    if store is None:
        store = getattr(getattr(services, "auth", None), "sessions", None)
    return store if callable(getattr(store, "ping", None)) else None


class Ready:
    """`/readyz`: the catalog and the session store can be reached; 503 naming what is down."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks: dict[str, Callable[[], Any]] = {"catalog": self.services.catalog.ping}
        store = _session_store(self.services)
        if store is not None:
            checks["sessions"] = store.ping
        down = {}
        for name, ping in checks.items():
            try:
                ping()
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                down[name] = (str(exc).splitlines() or [type(exc).__name__])[0]
        if down:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable", "down": down}
        else:
            resp.media = {"status": "ready"}


def add_routes(app: falcon.App, services: Services) -> None:
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(services))
