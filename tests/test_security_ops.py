"""Security of operations: sign-in throttling that cannot lock anyone out, and its shared
counts under concurrent workers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from falcon import testing

from coverslip.auth import tables as at
from coverslip.auth.throttle import Throttle, scopes_of
from coverslip.catalog import Catalog
from coverslip.web.app import CoverslipApp
from tests.test_auth_sessions import Clock
from tests.test_auth_web import PASSWORD, login, make_app

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
