"""Operations endpoints: liveness and readiness for load balancers."""

from __future__ import annotations

import falcon

from coverslip.services import Services


class Health:
    """`/healthz`: the process is up."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """`/readyz`: the catalog can be reached; 503 naming what is down otherwise."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        down = {}
        try:
            self.services.catalog.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            down["catalog"] = str(exc).splitlines()[0]
        if down:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable", "down": down}
        else:
            resp.media = {"status": "ready"}


def add_routes(app: falcon.App, services: Services) -> None:
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(services))
