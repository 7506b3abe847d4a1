"""Security of operations: sign-in throttling that cannot lock anyone out, shared counts
under concurrent workers, and a catalog or session store that stops answering."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from falcon import testing

from coverslip.auth import tables as at
from coverslip.auth.throttle import Throttle, scopes_of
from coverslip.catalog import Catalog
from coverslip.deploy.forwarded import trust_forwarded
from coverslip.imports import ImportOptions
from coverslip.web.app import CoverslipApp
from tests.servers import ServerURL, free_port, postgres_server, redis_server
from tests.test_auth_sessions import Clock
from tests.test_auth_web import PASSWORD, cookie_of, login, make_app

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"
MAX_DELAY = 30


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> CoverslipApp:
    app = make_app(
        tmp_path,
        clock,
        **{
            "login.max_failures_user": "5",
            "login.max_failures_address": "20",
            "login.window": "900",
            "login.max_delay": str(MAX_DELAY),
        },
    )
    app.services.auth.directory.add_user("ana", PASSWORD)
    app.services.auth.directory.add_user("bo", "bo-password")
    return app


@pytest.fixture
def client(app: CoverslipApp) -> testing.TestClient:
    return testing.TestClient(app)


def hammer(client: testing.TestClient, clock: Clock, attempts: int, username: str = "ana") -> int:
    """Guess ``attempts`` wrong passwords as fast as the throttle lets; return seconds spent."""
    spent = 0
    for _ in range(attempts):
        while (got := login(client, username, "guess", remote_addr=ATTACKER)).status_code == 429:
            wait = int(got.headers["retry-after"])
            assert wait <= MAX_DELAY
            clock.advance(wait)
            spent += wait
        assert got.status_code == 401
    return spent


def sign_in_within_the_cap(client: testing.TestClient, clock: Clock, address: str) -> None:
    """The right password gets in after at most one wait of no more than the cap."""
    got = login(client, remote_addr=address)
    if got.status_code == 429:
        wait = int(got.headers["retry-after"])
        assert wait <= MAX_DELAY, got.headers
        clock.advance(wait)
        got = login(client, remote_addr=address)
    assert got.status_code == 200, got.text


def test_many_wrong_passwords_never_lock_out_the_right_one(
    client: testing.TestClient, clock: Clock
) -> None:
    hammer(client, clock, 60)
    sign_in_within_the_cap(client, clock, OWNER)  # from elsewhere
    hammer(client, clock, 60)
    sign_in_within_the_cap(client, clock, ATTACKER)  # behind the attacker's own NAT
    # Spraying other usernames from one address slows that address, capped too.
    for n in range(40):
        hammer(client, clock, 1, username=f"user{n}")
    sign_in_within_the_cap(client, clock, ATTACKER)


def test_delays_grow_then_stay_at_the_cap(client: testing.TestClient, clock: Clock) -> None:
    for _ in range(5):  # free failures
        assert login(client, password="guess", remote_addr=ATTACKER).status_code == 401
    waits = []
    for _ in range(6):
        got = login(client, password="guess", remote_addr=ATTACKER)
        assert got.status_code == 429
        waits.append(int(got.headers["retry-after"]))
        clock.advance(waits[-1])
        assert login(client, password="guess", remote_addr=ATTACKER).status_code == 401
    assert waits == [2, 4, 8, 16, 30, 30]
    # Guessing stays slow: one try per max_delay at best.
    assert hammer(client, clock, 20) >= 19 * MAX_DELAY


def test_a_known_address_is_not_slowed_by_strangers(
    client: testing.TestClient, clock: Clock
) -> None:
    assert login(client, remote_addr=OWNER).status_code == 200
    hammer(client, clock, 30)
    assert login(client, remote_addr=OWNER).status_code == 200  # no wait at all
    assert login(client, "bo", "bo-password", remote_addr=OWNER).status_code == 200
    # Its own failures still count against it.
    for _ in range(5):
        assert login(client, password="typo", remote_addr=OWNER).status_code == 401
    assert login(client, remote_addr=OWNER).status_code == 429


def test_counts_expire_after_the_window(client: testing.TestClient, clock: Clock) -> None:
    hammer(client, clock, 8)
    clock.advance(901)
    for _ in range(5):
        assert login(client, password="guess", remote_addr=ATTACKER).status_code == 401
    assert login(client, remote_addr=ATTACKER).status_code == 429


def fresh_database(url: str) -> str:
    """Empty the shared PostgreSQL database and return its URL."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_racing_on_a_first_failure_both_count(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path}/c.sqlite"
    if backend == "postgresql":
        url = fresh_database(request.getfixturevalue("postgres_url"))
    catalog = Catalog(url)
    throttle = Throttle(catalog.engine, {"user": 5, "addr": 50}, window=900)
    threads, rounds, errors = 6, 25, []
    barrier = threading.Barrier(threads)

    def worker() -> None:
        for n in range(rounds):
            barrier.wait()
            try:
                throttle.failed(scopes_of(f"race{n}", "192.0.2.1"))
            except Exception as exc:  # noqa: BLE001 - collected, asserted below
                errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    table = at.login_failures
    with catalog.engine.connect() as conn:
        counts = dict(conn.execute(sa.select(table.c.scope, table.c.count)).all())
    assert counts["user:race0"] == threads
    assert all(counts[f"user:race{n}"] == threads for n in range(rounds))
    assert counts["addr:192.0.2.1"] == threads * rounds
    catalog.engine.dispose()


# -- a catalog or session store that stops answering --------------------------------------

DB_CONNECT_TIMEOUT = 2
DB_STATEMENT_TIMEOUT = 3
# Generous bounds for a loaded machine; without timeouts these requests never end.
READY_BOUND = 15.0
REQUEST_BOUND = 30.0


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    """A PostgreSQL of this module's own, since the tests stop it."""
    with postgres_server(tmp_path_factory.mktemp("pg-stopped")) as url:
        yield url


def children(pid: int) -> list[int]:
    """Return the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@contextlib.contextmanager
def stopped(url: ServerURL) -> Iterator[None]:
    """Stop the server and every backend (SIGSTOP) for the block, then let them go on.

    PostgreSQL's backends lead process groups of their own, so they are stopped one by one.
    """
    processes = [url.pid, *children(url.pid)]
    for pid in processes:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def timed(call: Callable[[], testing.Result]) -> tuple[testing.Result, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.fixture
def pg_app(tmp_path: Path, own_postgres: ServerURL) -> Iterator[tuple[CoverslipApp, int]]:
    """An app on the module's PostgreSQL with a public image; yields it and the image id."""
    app = make_app(
        tmp_path,
        **{
            "db.url": fresh_database(own_postgres),
            "db.connect_timeout": str(DB_CONNECT_TIMEOUT),
            "db.statement_timeout": str(DB_STATEMENT_TIMEOUT),
        },
    )
    services = app.services
    directory = services.auth.directory
    owner = directory.add_user("ana", PASSWORD)
    group = directory.add_group("open", "public")
    directory.add_member(group, owner)
    source = tmp_path / "plane.npy"
    np.save(source, np.arange(32 * 40, dtype=np.uint8).reshape(32, 40))
    image_id = services.importer().import_path(
        source, ImportOptions(name="plane", owner_id=owner, group_id=group)
    )
    yield app, image_id
    services.catalog.close()


def test_readyz_and_requests_answer_503_while_postgresql_is_stopped(
    pg_app: tuple[CoverslipApp, int], own_postgres: ServerURL
) -> None:
    app, image_id = pg_app
    client = testing.TestClient(app)
    assert client.simulate_get("/readyz").status_code == 200
    cookie = {"Cookie": f"sessionid={cookie_of(login(client))}"}
    with stopped(own_postgres):
        ready, took = timed(lambda: client.simulate_get("/readyz", remote_addr="203.0.113.5"))
        assert ready.status_code == 503 and took < READY_BOUND, took
        assert "catalog" in ready.json["down"] and "details" not in ready.json
        assert str(own_postgres.port) not in ready.text  # no host or port for strangers
        local = client.simulate_get("/readyz")  # this host sees why
        assert local.status_code == 503 and "catalog" in local.json["details"]
        # A request that needs the catalog gives up instead of hanging.
        listed, took = timed(lambda: client.simulate_get("/api/v2/images", headers=cookie))
        assert listed.status_code == 503 and took < REQUEST_BOUND, (listed.text, took)
        assert listed.json["title"] == "Service Unavailable"
        page, took = timed(
            lambda: client.simulate_get("/", headers={**cookie, "Accept": "text/html"})
        )
        assert page.status_code == 503 and took < REQUEST_BOUND, took
        assert page.content_type.startswith("text/html") and "Temporarily unavailable" in page.text
        assert str(own_postgres.port) not in page.text
    # Once the server answers again, so does everything else.
    deadline = time.monotonic() + REQUEST_BOUND
    while client.simulate_get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.simulate_get("/api/v2/images", headers=cookie).status_code == 200


def test_cached_public_thumbnails_are_served_while_postgresql_is_stopped(
    pg_app: tuple[CoverslipApp, int], own_postgres: ServerURL
) -> None:
    app, image_id = pg_app
    client = testing.TestClient(app)
    thumbnail = f"/webgateway/render_thumbnail/{image_id}/"
    first = client.simulate_get(thumbnail)
    assert first.status_code == 200
    with stopped(own_postgres):
        time.sleep(6)  # past the in-process caches' ttl: they must ask the catalog again
        cached, took = timed(lambda: client.simulate_get(thumbnail))
        assert cached.status_code == 200 and took < REQUEST_BOUND, (cached.status_code, took)
        assert cached.content == first.content


def test_readyz_details_go_to_this_host_and_administrators_not_through_a_proxy(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there: the session store is down
    app = make_app(
        tmp_path,
        **{"sessions.backend": "redis", "sessions.redis_url": f"redis://127.0.0.1:{port}/0"},
    )
    auth = app.services.auth
    _, admin = auth.tokens.create(auth.directory.add_user("root", PASSWORD, is_admin=True))
    _, user = auth.tokens.create(auth.directory.add_user("ana", PASSWORD))
    client = testing.TestClient(app)
    # Behind Granian or uWSGI the launcher rewrites REMOTE_ADDR from a trusted proxy.
    launched = testing.TestClient(trust_forwarded(app, ["127.0.0.1", "::1"]))

    def details(
        remote_addr: str, headers: dict[str, str] | None = None, via: testing.TestClient = client
    ) -> bool:
        got = via.simulate_get("/readyz", remote_addr=remote_addr, headers=headers)
        assert got.status_code == 503 and got.json["down"] == ["sessions"], got.text
        if "details" in got.json:
            assert str(port) in got.json["details"]["sessions"]
            return True
        assert str(port) not in got.text
        return False

    outsider = {"X-Forwarded-For": "203.0.113.5"}
    # A call made on this host, straight to the application, learns why.
    assert details("127.0.0.1") and details("::1")
    assert details("127.0.0.1", via=launched)
    # An outsider does not, whether straight or relayed by a proxy on this host.
    assert not details("203.0.113.5")
    assert not details("127.0.0.1", outsider)  # Gunicorn keeps the proxy's address
    assert not details("127.0.0.1", outsider, via=launched)
    assert not details("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}, via=launched)
    assert not details("127.0.0.1", {"Forwarded": "for=203.0.113.5"})
    assert not details("::1", {"X-Real-IP": "203.0.113.5"})
    assert not details("127.0.0.1", {**outsider, "X-Auth-Token": user})
    # An administrator does, from anywhere.
    assert details("203.0.113.5", {"X-Auth-Token": admin})
    assert details("127.0.0.1", {**outsider, "X-Auth-Token": admin}, via=launched)


def test_signed_in_pages_answer_503_while_redis_is_down(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        app = make_app(tmp_path, **{"sessions.backend": "redis", "sessions.redis_url": url})
        app.services.auth.directory.add_user("ana", PASSWORD)
        client = testing.TestClient(app)
        cookie = {"Cookie": f"sessionid={cookie_of(login(client))}"}
        assert (
            client.simulate_get("/", headers={**cookie, "Accept": "text/html"}).status_code == 200
        )
        os.killpg(url.pid, signal.SIGKILL)
        page = client.simulate_get("/", headers={**cookie, "Accept": "text/html,*/*;q=0.8"})
        assert page.status_code == 503 and page.content_type.startswith("text/html")
        assert "Temporarily unavailable" in page.text and page.headers["retry-after"]
        data = client.simulate_get("/api/v2/session", headers=cookie)
        assert data.status_code == 503 and data.json["title"] == "Service Unavailable"
        assert str(url.port) not in data.text + page.text
