"""The session store contract, run against the SQL store and a real Redis server alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coverslip.auth import Auth
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
def store(request: pytest.FixtureRequest, catalog: Catalog, clock: Clock) -> SessionStore:
    if request.param == "sql":
        return SqlSessionStore(catalog.engine, IDLE, AGE, clock)
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    # Each test gets its own key prefix, so tests never see each other's sessions.
    prefix = f"test:{request.node.name}:{id(clock)}:"
    return RedisSessionStore(client, IDLE, AGE, clock, prefix=prefix)


@pytest.fixture
def auth(catalog: Catalog, store: SessionStore, clock: Clock) -> Auth:
    settings = load(environ={})
    auth = Auth(settings, catalog, sessions=store, passwords=Passwords.fast(), clock=clock)
    auth.directory.add_user("ana", "ana-password")
    auth.directory.add_user("bo", "bo-password")
    return auth


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


def test_logout_revokes(auth: Auth) -> None:
    key, _ = auth.login("ana", "ana-password")
    assert auth.caller_for_session(key) is not None
    auth.logout(key)
    assert auth.caller_for_session(key) is None


def test_password_change_revokes_every_session_of_the_user_only(auth: Auth) -> None:
    ana_1, _ = auth.login("ana", "ana-password")
    ana_2, _ = auth.login("ana", "ana-password")
    bo, _ = auth.login("bo", "bo-password")
    ana = auth.directory.user("ana")
    assert auth.change_password(ana.id, "new-ana-password") == 2
    assert auth.caller_for_session(ana_1) is None
    assert auth.caller_for_session(ana_2) is None
    assert auth.caller_for_session(bo) is not None
    with pytest.raises(Unauthorized):
        auth.login("ana", "ana-password")
    auth.login("ana", "new-ana-password")


def test_disable_revokes_and_refuses_login(auth: Auth) -> None:
    key, _ = auth.login("ana", "ana-password")
    token_id, token = auth.tokens.create(auth.directory.user("ana").id)
    assert auth.caller_for_token(token) is not None
    auth.disable(auth.directory.user("ana").id)
    assert auth.caller_for_session(key) is None
    assert auth.caller_for_token(token) is None
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
