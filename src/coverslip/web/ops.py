"""Operations endpoints: liveness and readiness for load balancers."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import falcon

from coverslip import logs
from coverslip.metrics import exposition, folder_of, metrics
from coverslip.services import Services
from coverslip.web.middleware import COOKIE, PROXY_ADDR, request_token

log = logging.getLogger("coverslip.web.requests")


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


class Probe:
    """Run one check in a thread of its own and wait for it a bounded time.

    # NOTE: a server that stops answering would hold a probing request for as long as the
    # driver waits; here the request gives up after ``timeout``, and while one probe is
    # still stuck no second one is started.
    """

    def __init__(self, check: Callable[[], Any], timeout: float) -> None:
        self.check = check
        self.timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._outcome: dict[str, Any] = {}
        self._done = threading.Event()

    def __call__(self) -> tuple[bool, Any]:
        """Return (True, the check's result) or (False, why it failed or took too long)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._outcome, self._done = {}, threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._outcome, self._done), daemon=True
                )
                self._thread.start()
            outcome, done = self._outcome, self._done
        if not done.wait(self.timeout):
            return False, f"no answer within {self.timeout:g} s"
        if "error" in outcome:
            return False, outcome["error"]
        return True, outcome.get("result")

    def _run(self, outcome: dict[str, Any], done: threading.Event) -> None:
        try:
            outcome["result"] = self.check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            outcome["error"] = (str(exc).splitlines() or [type(exc).__name__])[0]
        finally:
            done.set()


def is_loopback(address: str | None) -> bool:
    """Return whether ``address`` is this host (the trusted-proxy wrapper has set it)."""
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


# Headers a proxy adds naming the client it forwards for (nginx sends the first and the last).
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def from_this_host(req: falcon.Request) -> bool:
    """Return whether the request was made on this host itself, not relayed by a proxy.

    # SECURITY: behind a proxy on this host every request arrives from loopback. The
    # launcher's wrapper replaces REMOTE_ADDR with the client's a trusted proxy names and
    # keeps the proxy's under PROXY_ADDR. A request that names a client it
    # was forwarded for, or that a launcher rewrote, is from elsewhere, trusted proxy or not.
    """
    if req.env.get(PROXY_ADDR) is not None:
        return False
    if any(req.get_header(name) is not None for name in FORWARDING_HEADERS):
        return False
    return is_loopback(req.remote_addr)


class Ready:
    """`/readyz`: the catalog, the session store and the object store answer in time; 503 naming what is down.

    What went wrong (host, port, driver message) is shown only to administrators and to
    requests made on this host (not relayed by a proxy); anyone else learns only which part
    is down.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        timeout = float(services.settings["db.connect_timeout"])
        self.timeout = timeout
        self.probes = {
            "catalog": Probe(services.catalog.ping, timeout),
            "sessions": Probe(self._ping_sessions, timeout),
        }
        objects = services.pixels.objects
        if objects is not None:
            self.probes["objects"] = Probe(objects.ping, timeout)

    def _ping_sessions(self) -> None:
        store = _session_store(self.services)
        if store is not None:
            store.ping()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        down = {}
        for name, probe in self.probes.items():
            ok, why = probe()
            if not ok:
                down[name] = why
        resp.cache_control = ["no-store"]
        if not down:
            resp.media = {"status": "ready"}
            return
        resp.status = falcon.HTTP_503
        resp.media = {"status": "unavailable", "down": sorted(down)}
        # SECURITY: driver messages name the database host and port.
        if from_this_host(req) or self._is_admin(req):
            resp.media["details"] = down

    def _is_admin(self, req: falcon.Request) -> bool:
        """Return whether the request is signed in as an administrator (bounded in time)."""
        token, key = request_token(req), req.cookies.get(COOKIE)
        if not token and not key:
            return False
        auth = self.services.auth

        def who() -> Any:
            return auth.caller_for_token(token) if token else auth.caller_for_session(key or "")

        ok, found = Probe(who, self.timeout)()
        return bool(ok and found is not None and found.is_admin)


class Measure:
    """Middleware: give every request an id (X-Request-ID), count and time every answer."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        req.context.request_id = rid = logs.request_id(req.get_header("X-Request-ID"))
        req.context.id_token = logs.REQUEST_ID.set(rid)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        # NOTE: the template, never the path, so ids do not become label values.
        route = req.uri_template or "unmatched"
        status = str(resp.status_code)
        found = metrics()
        found.requests.labels(route, status).inc()
        rid = getattr(req.context, "request_id", None)
        if rid is not None:
            resp.set_header("X-Request-ID", rid)
        if started is not None:
            took = time.perf_counter() - started
            found.latency.labels(route).observe(took)
            if logs.ACCESS.isEnabledFor(logging.INFO):
                fields = {
                    "addr": req.remote_addr,
                    "method": req.method,
                    "path": f"{req.path}?{req.query_string}" if req.query_string else req.path,
                    "status": status,
                    "ms": round(took * 1000, 2),
                    "bytes": resp.content_length,
                    "agent": req.user_agent,
                }
                logs.ACCESS.info("answered", extra={"fields": fields})
        token = getattr(req.context, "id_token", None)
        if token is not None:
            logs.REQUEST_ID.reset(token)


class Metrics:
    """`/metrics`: Prometheus text, for callers on this host (or anyone, by setting)."""

    def __init__(self, services: Services, role: str) -> None:
        self.settings = services.settings
        self.catalog = services.catalog
        # The web's answer includes the job worker's counts; the thumbnail service's does not
        # (a scrape of both must not count them twice).
        self.also = [folder_of(services.home.run, "worker")] if role == "web" else []

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # SECURITY: request rates and routes are for operators; through a proxy, only by choice.
        if not (self.settings["metrics.from_anywhere"] or from_this_host(req)):
            raise falcon.HTTPNotFound()
        body, media_type = exposition(self.catalog.count_jobs(), self.also)
        resp.data = body
        resp.content_type = media_type
        resp.cache_control = ["no-store"]


def add_routes(app: falcon.App, services: Services, role: str) -> None:
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(services))
    app.add_route("/metrics", Metrics(services, role))
