"""The session store contract, run against the SQL store and a real Redis server alike.

The SQL store caches what it read in-process; a second ``Auth`` on the same catalog, stamp
files and Redis stands for another process, and must see every revocation on its next lookup.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from coverslip.auth import Auth
from coverslip.auth import tables as at
from coverslip.auth.fresh import RequestScope, StampFile
from coverslip.auth.passwords import Passwords
from coverslip.auth.sessions import RedisSessionStore, SessionStore, SqlSessionStore, hash_key
from coverslip.catalog import Catalog
from coverslip.config import load
from coverslip.errors import Unauthorized

IDLE = 600.0
AGE = 3600.0


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield catalog
    catalog.close()


@pytest.fixture(params=["sql", "redis"])
def open_store(
    request: pytest.FixtureRequest, catalog: Catalog, clock: Clock, tmp_path: Path
) -> Callable[[], SessionStore]:
    """Return a function opening the store anew, as another process would."""
    if request.param == "sql":
        return lambda: SqlSessionStore(
            catalog.engine, IDLE, AGE, clock, StampFile(tmp_path / "auth.stamp")
        )
    import redis

    url = request.getfixturevalue("redis_url")
    # Each test gets its own key prefix, so tests never see each other's sessions.
    prefix = f"test:{request.node.name}:{id(clock)}:"
    return lambda: RedisSessionStore(redis.Redis.from_url(url), IDLE, AGE, clock, prefix=prefix)


@pytest.fixture
def store(open_store: Callable[[], SessionStore]) -> SessionStore:
    return open_store()


def open_auth(catalog: Catalog, store: SessionStore, clock: Clock, tmp_path: Path) -> Auth:
    settings = load(environ={})
    return Auth(
        settings,
        catalog,
        sessions=store,
        passwords=Passwords.fast(),
        clock=clock,
        stamp=tmp_path / "catalog.stamp",
    )


@pytest.fixture
def auth(catalog: Catalog, store: SessionStore, clock: Clock, tmp_path: Path) -> Auth:
    auth = open_auth(catalog, store, clock, tmp_path)
    auth.directory.add_user("ana", "ana-password")
    auth.directory.add_user("bo", "bo-password")
    return auth


@pytest.fixture
def other(
    catalog: Catalog, open_store: Callable[[], SessionStore], clock: Clock, tmp_path: Path
) -> Auth:
    """The same instance's auth in another process: its own caches, the shared stamps."""
    return open_auth(catalog, open_store(), clock, tmp_path)


def users(catalog: Catalog) -> tuple[int, int]:
    admin, _ = catalog.ensure_local_admin()
    return admin, admin


def test_keys_are_random_256_bit_and_only_hashes_are_stored(
    store: SessionStore, catalog: Catalog
) -> None:
    user, _ = users(catalog)
    key, session = store.create(user)
    other, _ = store.create(user)
    assert key != other
    assert len(key) >= 43  # 32 bytes, URL-safe base64
    assert session.key_hash == hash_key(key) != key
    assert session.csrf_token and session.csrf_token != key
    found = store.get(key)
    assert found is not None and found.user_id == user
    assert found.csrf_token == session.csrf_token
    assert store.get(session.key_hash) is None  # the stored hash is no key


def test_unknown_key_is_no_session(store: SessionStore) -> None:
    assert store.get("no-such-key") is None


def test_idle_timeout(store: SessionStore, catalog: Catalog, clock: Clock) -> None:
    user, _ = users(catalog)
    key, _ = store.create(user)
    clock.advance(IDLE - 1)
    assert store.get(key) is not None  # a request refreshes the idle timer
    clock.advance(IDLE - 1)
    assert store.get(key) is not None
    clock.advance(IDLE + 1)
    assert store.get(key) is None
    assert store.get(key) is None  # and it stays gone


def test_absolute_expiry_despite_activity(
    store: SessionStore, catalog: Catalog, clock: Clock
) -> None:
    user, _ = users(catalog)
    key, _ = store.create(user)
    while clock.now + IDLE / 2 < 1_000_000.0 + AGE:
        clock.advance(IDLE / 2)
        assert store.get(key) is not None
    clock.advance(IDLE / 2)
    assert store.get(key) is None


def test_delete_and_delete_user(store: SessionStore, catalog: Catalog) -> None:
    user, _ = users(catalog)
    first, _ = store.create(user)
    second, _ = store.create(user)
    store.delete(first)
    assert store.get(first) is None
    assert store.get(second) is not None
    third, _ = store.create(user)
    assert store.delete_user(user) == 2
    assert store.get(second) is None and store.get(third) is None
    store.ping()


def test_login_makes_a_new_key_every_time(auth: Auth) -> None:
    first, caller = auth.login("ana", "ana-password")
    second, _ = auth.login("ana", "ana-password")
    assert first != second
    assert caller.user is not None and caller.user.username == "ana"
    assert caller.via == "session" and caller.csrf_token


def test_wrong_password_and_unknown_user(auth: Auth) -> None:
    with pytest.raises(Unauthorized):
        auth.login("ana", "wrong-password")
    with pytest.raises(Unauthorized):
        auth.login("nobody", "ana-password")


def test_logout_revokes_here_and_in_another_process(auth: Auth, other: Auth) -> None:
    key, _ = auth.login("ana", "ana-password")
    kept, _ = auth.login("ana", "ana-password")
    assert auth.caller_for_session(key) is not None
    assert other.caller_for_session(key) is not None  # now in the other process's cache
    assert other.caller_for_session(kept) is not None
    auth.logout(key)
    assert auth.caller_for_session(key) is None
    assert other.caller_for_session(key) is None
    assert other.caller_for_session(kept) is not None
    other.logout(kept)
    assert auth.caller_for_session(kept) is None


def test_password_change_revokes_every_session_of_the_user_only(auth: Auth, other: Auth) -> None:
    ana_1, _ = auth.login("ana", "ana-password")
    ana_2, _ = auth.login("ana", "ana-password")
    bo, _ = auth.login("bo", "bo-password")
    for key in (ana_1, ana_2, bo):
        assert auth.caller_for_session(key) is not None
        assert other.caller_for_session(key) is not None
    ana = auth.directory.user("ana")
    assert other.change_password(ana.id, "new-ana-password") == 2
    for found in (auth, other):
        assert found.caller_for_session(ana_1) is None
        assert found.caller_for_session(ana_2) is None
        assert found.caller_for_session(bo) is not None
    with pytest.raises(Unauthorized):
        auth.login("ana", "ana-password")
    auth.login("ana", "new-ana-password")


def test_disable_revokes_and_refuses_login(auth: Auth, other: Auth) -> None:
    key, _ = auth.login("ana", "ana-password")
    token_id, token = auth.tokens.create(auth.directory.user("ana").id)
    assert auth.caller_for_token(token) is not None
    assert other.caller_for_token(token) is not None
    assert other.caller_for_session(key) is not None
    auth.disable(auth.directory.user("ana").id)
    for found in (auth, other):
        assert found.caller_for_session(key) is None
        assert found.caller_for_token(token) is None
    with pytest.raises(Unauthorized):
        auth.login("ana", "ana-password")
    auth.disable(auth.directory.user("ana").id, False)
    assert auth.caller_for_token(token) is not None
    auth.login("ana", "ana-password")
    assert token_id


def test_tokens_expire_and_revoke(auth: Auth, clock: Clock) -> None:
    ana = auth.directory.user("ana")
    token_id, token = auth.tokens.create(ana.id, "script", expires_days=1)
    caller = auth.caller_for_token(token)
    assert caller is not None and caller.via == "token" and caller.csrf_token is None
    stored = auth.tokens.list(ana.id)
    assert [t.id for t in stored] == [token_id]
    assert token not in repr(stored) and stored[0].prefix == token[:10]
    clock.advance(86400 + 1)
    assert auth.caller_for_token(token) is None
    _other_id, other = auth.tokens.create(ana.id)
    auth.tokens.revoke(_other_id)
    assert auth.caller_for_token(other) is None
    assert auth.caller_for_token("csk_forged") is None


def test_revoked_token_is_refused_at_once_in_another_process(auth: Auth, other: Auth) -> None:
    ana = auth.directory.user("ana")
    token_id, token = auth.tokens.create(ana.id)
    assert other.caller_for_token(token) is not None
    auth.tokens.revoke(token_id)
    assert other.caller_for_token(token) is None
    assert auth.caller_for_token(token) is None


def drop_rows_behind_the_caches(catalog: Catalog) -> None:
    """Delete every session and token row without telling anyone (as a host out of reach)."""
    with catalog.engine.begin() as conn:
        conn.execute(at.sessions.delete())
        conn.execute(at.api_tokens.delete())


def test_cached_session_and_token_last_at_most_touch_every(
    catalog: Catalog, clock: Clock, tmp_path: Path
) -> None:
    store = SqlSessionStore(catalog.engine, IDLE, AGE, clock, StampFile(tmp_path / "auth.stamp"))
    auth = open_auth(catalog, store, clock, tmp_path)
    user = auth.directory.add_user("ana", "ana-password")
    key, _ = auth.login("ana", "ana-password")
    _id, token = auth.tokens.create(user)
    assert auth.caller_for_session(key) is not None
    assert auth.caller_for_token(token) is not None
    drop_rows_behind_the_caches(catalog)
    clock.advance(store.touch_every - 1)
    assert auth.caller_for_session(key) is not None  # served from this process's cache
    assert auth.caller_for_token(token) is not None
    clock.advance(1)
    assert auth.caller_for_session(key) is None
    assert auth.caller_for_token(token) is None


def test_cached_session_ends_at_its_expiry(catalog: Catalog, clock: Clock, tmp_path: Path) -> None:
    store = SqlSessionStore(catalog.engine, IDLE, AGE, clock, StampFile(tmp_path / "auth.stamp"))
    user, _ = users(catalog)
    start = clock.now
    key, _ = store.create(user)
    while clock.now + IDLE / 2 < start + AGE:
        clock.advance(IDLE / 2)
        assert store.get(key) is not None
    clock.now = start + AGE - 1
    assert store.get(key) is not None  # read and cached one second before max_age
    clock.advance(1)
    assert store.get(key) is None  # the cached copy ends with the session


def test_idle_timer_is_written_at_most_once_per_touch_every(
    catalog: Catalog, clock: Clock, tmp_path: Path
) -> None:
    store = SqlSessionStore(catalog.engine, IDLE, AGE, clock, StampFile(tmp_path / "auth.stamp"))
    user, _ = users(catalog)
    key, session = store.create(user)

    def seen() -> float:
        with catalog.engine.connect() as conn:
            return float(conn.scalar(sa.select(at.sessions.c.seen)))

    clock.advance(store.touch_every)
    assert store.get(key) is not None
    assert seen() == clock.now
    written = clock.now
    for _ in range(5):
        clock.advance(store.touch_every / 6)
        assert store.get(key) is not None
    assert seen() == written
    clock.advance(store.touch_every)
    assert store.get(key) is not None
    assert seen() == clock.now


def test_a_stamp_is_read_once_per_request_and_its_own_touch_seen_at_once(tmp_path: Path) -> None:
    stamp = StampFile(tmp_path / "auth.stamp")
    stamp.touch()
    other_process = StampFile(tmp_path / "auth.stamp")  # the same file, as another worker sees it
    scope = RequestScope()
    scope.process_request(None, None)
    first = stamp()
    os.replace(write_stamp(tmp_path), tmp_path / "auth.stamp")  # moved by someone else
    assert stamp() == first  # the request goes on with what it read
    stamp.touch()  # moved by this request: seen at once
    moved = stamp()
    assert moved != first
    scope.process_response(None, None, None, True)
    os.replace(write_stamp(tmp_path), tmp_path / "auth.stamp")
    assert stamp() != moved  # outside a request every call reads the file
    assert stamp() == other_process()
    scope.process_request(None, None)
    assert stamp() == other_process()  # a new request reads it anew
    scope.process_response(None, None, None, True)


def write_stamp(folder: Path) -> Path:
    fresh = folder / "stamp.new"
    fresh.write_text("changed")
    return fresh
