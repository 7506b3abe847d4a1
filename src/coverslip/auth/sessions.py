"""Browser sessions: one interface, two stores (the catalog's SQL table, or Redis).

A session key is 256 random bits, sent to the browser in the ``sessionid`` cookie and never
stored: both stores keep only its SHA-256, so a leaked table or dump signs nobody in.
A session ends at the first of: ``idle_timeout`` seconds without a request, ``max_age``
seconds after login, logout, or revocation of all the user's sessions (password change,
disabling). Each store takes a ``clock`` so that tests can move time instead of sleeping.

The SQL store given a stamp (``StampFile`` or ``RedisStamp``) keeps what it read in-process for ``touch_every`` seconds
at most, so most requests make no query; every revocation moves the stamp, and every process
drops its cached sessions on its next request (one ``stat``). The stamp reaches the processes
of one host only: sessions shared across hosts belong in Redis, which is read every time.

Store interface (``SessionStore``):

- ``create(user_id) -> (key, Session)``: a new session with a fresh key and CSRF token;
- ``get(key) -> Session | None``: the live session of a key, its idle timer refreshed;
- ``delete(key)``, ``delete_user(user_id) -> count``: revoke, effective at once;
- ``purge() -> count``: drop expired sessions (SQL only needs it; Redis expires keys itself);
- ``ping()``: raise if the store cannot be reached (for /readyz).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coverslip.auth import tables as at
from coverslip.auth.fresh import FreshCache, Stamp

Clock = Callable[[], float]


def hash_key(key: str) -> str:
    """Return the SHA-256 (hex) under which a session key or token is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """Return a new 256-bit random key, URL-safe."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: whose it is, its CSRF token, and its times (POSIX seconds)."""

    key_hash: str
    user_id: int
    csrf_token: str
    created: float
    seen: float
    expires: float


class SessionStore(Protocol):
    """Where sessions live; see the module docstring."""

    idle_timeout: float
    max_age: float

    def create(self, user_id: int) -> tuple[str, Session]: ...

    def get(self, key: str) -> Session | None: ...

    def delete(self, key: str) -> None: ...

    def delete_user(self, user_id: int) -> int: ...

    def purge(self) -> int: ...

    def ping(self) -> None: ...


class _Timing:
    """What both stores share: the timeouts, the clock, and when to refresh ``seen``."""

    def __init__(self, idle_timeout: float, max_age: float, clock: Clock | None) -> None:
        self.idle_timeout = float(idle_timeout)
        self.max_age = float(max_age)
        self.clock: Clock = clock or time.time
        # PERF: refresh the idle timer at most this often, so that most requests only read.
        self.touch_every = min(60.0, self.idle_timeout / 20)

    def _new(self, user_id: int) -> tuple[str, Session]:
        key = new_key()
        now = self.clock()
        return key, Session(
            key_hash=hash_key(key),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(32),
            created=now,
            seen=now,
            expires=now + self.max_age,
        )

    def _alive(self, session: Session, now: float) -> bool:
        return now < session.expires and now - session.seen < self.idle_timeout


class SqlSessionStore(_Timing):
    """Sessions in the catalog's ``sessions`` table, shared by every process using it."""

    def __init__(
        self,
        engine: Engine,
        idle_timeout: float,
        max_age: float,
        clock: Clock | None = None,
        stamp: Stamp | None = None,
    ) -> None:
        super().__init__(idle_timeout, max_age, clock)
        self.engine = engine
        self.stamp = stamp
        # PERF: sessions as last read, by key hash; only with a stamp to hear revocations by.
        self.cache: FreshCache[str, Session | None] | None = (
            None if stamp is None else FreshCache(self.touch_every, stamp, lambda: self.clock())
        )

    def create(self, user_id: int) -> tuple[str, Session]:
        key, session = self._new(user_id)
        with self.engine.begin() as conn:
            conn.execute(
                at.sessions.insert().values(
                    key_hash=session.key_hash,
                    user_id=user_id,
                    csrf_token=session.csrf_token,
                    created=session.created,
                    seen=session.seen,
                    expires=session.expires,
                )
            )
        return key, session

    def get(self, key: str) -> Session | None:
        digest = hash_key(key)
        now = self.clock()
        if self.cache is None:
            return self._read(digest, now)
        session = self.cache.get(digest, lambda: self._read(digest, now))
        if session is not None and not self._alive(session, now):
            self.cache.drop(digest)
            return self._read(digest, now)
        return session

    def _read(self, digest: str, now: float) -> Session | None:
        """Return the live session stored under ``digest``, its idle timer refreshed if due."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(at.sessions).where(at.sessions.c.key_hash == digest)
            ).first()
        if row is None:
            return None
        session = Session(
            row.key_hash, int(row.user_id), row.csrf_token, row.created, row.seen, row.expires
        )
        if not self._alive(session, now):
            with self.engine.begin() as conn:
                conn.execute(at.sessions.delete().where(at.sessions.c.key_hash == digest))
            return None
        if now - session.seen >= self.touch_every:
            with self.engine.begin() as conn:
                conn.execute(
                    at.sessions.update().where(at.sessions.c.key_hash == digest).values(seen=now)
                )
            session = replace(session, seen=now)
        return session

    def _revoked(self) -> None:
        """Drop this process's cached sessions and tell the others to drop theirs."""
        if self.cache is not None and self.stamp is not None:
            self.cache.clear()
            self.stamp.touch()

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(at.sessions.delete().where(at.sessions.c.key_hash == hash_key(key)))
        self._revoked()

    def delete_user(self, user_id: int) -> int:
        with self.engine.begin() as conn:
            count = int(
                conn.execute(at.sessions.delete().where(at.sessions.c.user_id == user_id)).rowcount
            )
        self._revoked()
        return count

    def purge(self) -> int:
        now = self.clock()
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    at.sessions.delete().where(
                        (at.sessions.c.expires <= now)
                        | (at.sessions.c.seen <= now - self.idle_timeout)
                    )
                ).rowcount
            )

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(at.sessions).limit(1))


class RedisSessionStore(_Timing):
    """Sessions in Redis (sessions.redis_url), shared across hosts.

    ``<prefix>s:<hash>`` is a hash with the session's fields, expiring with it;
    ``<prefix>u:<user id>`` is the set of that user's session hashes, for revocation.
    """

    def __init__(
        self,
        client: Any,
        idle_timeout: float,
        max_age: float,
        clock: Clock | None = None,
        prefix: str = "coverslip:session:",
    ) -> None:
        super().__init__(idle_timeout, max_age, clock)
        self.redis = client
        self.prefix = prefix

    @classmethod
    def from_url(
        cls, url: str, idle_timeout: float, max_age: float, clock: Clock | None = None
    ) -> RedisSessionStore:
        import redis

        client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )
        return cls(client, idle_timeout, max_age, clock)

    def _key(self, digest: str) -> str:
        return f"{self.prefix}s:{digest}"

    def _user_key(self, user_id: int) -> str:
        return f"{self.prefix}u:{user_id}"

    def _ttl(self, session: Session, now: float) -> int:
        # NOTE: Redis expires by its own clock; the stored times decide when the clock is
        # injected. The TTL only keeps dead sessions from piling up.
        return max(1, int(min(session.expires - now, self.idle_timeout)) + 1)

    def create(self, user_id: int) -> tuple[str, Session]:
        key, session = self._new(user_id)
        name = self._key(session.key_hash)
        pipe = self.redis.pipeline()
        pipe.hset(
            name,
            mapping={
                "user_id": user_id,
                "csrf_token": session.csrf_token,
                "created": repr(session.created),
                "seen": repr(session.seen),
                "expires": repr(session.expires),
            },
        )
        pipe.expire(name, self._ttl(session, session.created))
        pipe.sadd(self._user_key(user_id), session.key_hash)
        pipe.expire(self._user_key(user_id), int(self.max_age) + 1)
        pipe.execute()
        return key, session

    def get(self, key: str) -> Session | None:
        digest = hash_key(key)
        now = self.clock()
        fields = self.redis.hgetall(self._key(digest))
        if not fields:
            return None
        try:
            session = Session(
                key_hash=digest,
                user_id=int(fields[b"user_id"]),
                csrf_token=fields[b"csrf_token"].decode(),
                created=float(fields[b"created"]),
                seen=float(fields[b"seen"]),
                expires=float(fields[b"expires"]),
            )
        except (KeyError, ValueError):
            self.redis.delete(self._key(digest))
            return None
        if not self._alive(session, now):
            self._forget(session)
            return None
        if now - session.seen >= self.touch_every:
            name = self._key(digest)
            pipe = self.redis.pipeline()
            pipe.hset(name, "seen", repr(now))
            pipe.expire(name, self._ttl(session, now))
            pipe.execute()
        return session

    def _forget(self, session: Session) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self._key(session.key_hash))
        pipe.srem(self._user_key(session.user_id), session.key_hash)
        pipe.execute()

    def delete(self, key: str) -> None:
        digest = hash_key(key)
        user_id = self.redis.hget(self._key(digest), "user_id")
        pipe = self.redis.pipeline()
        pipe.delete(self._key(digest))
        if user_id is not None:
            pipe.srem(self._user_key(int(user_id)), digest)
        pipe.execute()

    def delete_user(self, user_id: int) -> int:
        index = self._user_key(user_id)
        digests = [d.decode() for d in self.redis.smembers(index)]
        pipe = self.redis.pipeline()
        for digest in digests:
            pipe.delete(self._key(digest))
        pipe.delete(index)
        results = pipe.execute()
        return int(sum(results[: len(digests)]))

    def purge(self) -> int:
        return 0

    def ping(self) -> None:
        self.redis.ping()
