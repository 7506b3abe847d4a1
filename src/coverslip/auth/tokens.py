"""API tokens: long random secrets shown once, stored as SHA-256, revocable, optionally expiring.

Scripts send them as ``X-Auth-Token: <token>`` or ``Authorization: Bearer <token>``.
A token acts as its user; it needs no CSRF token, since browsers never send it on their own.
Given a stamp (``StampFile`` or ``RedisStamp``), what a token lookup read is kept in-process for ``ttl`` seconds at most;
revoking moves the stamp, so every process sees it on its next request.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coverslip.auth import tables as at
from coverslip.auth.fresh import FreshCache, Stamp
from coverslip.auth.sessions import Clock, hash_key
from coverslip.catalog import tables as t
from coverslip.errors import BadParameter, NotFound

PREFIX = "csk_"
# PERF: write last_used at most this often per token.
TOUCH_EVERY = 300.0


@dataclass(frozen=True, slots=True)
class Token:
    """What is known of a token after it was made (never the token itself)."""

    id: int
    user_id: int
    username: str
    name: str
    prefix: str
    created: float
    expires: float | None
    last_used: float | None
    revoked: bool

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "username": self.username,
            "name": self.name,
            "prefix": self.prefix,
            "created": self.created,
            "expires": self.expires,
            "last_used": self.last_used,
            "revoked": self.revoked,
        }


class Tokens:
    """Create, list, revoke and check API tokens."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock | None = None,
        stamp: Stamp | None = None,
        ttl: float = 60.0,
    ) -> None:
        self.engine = engine
        self.clock: Clock = clock or time.time
        self.stamp = stamp
        # PERF: (user id, expiry) of live tokens by hash; only with a stamp to hear revokes by.
        self.cache: FreshCache[str, tuple[int, float | None] | None] | None = (
            None if stamp is None else FreshCache(ttl, stamp, lambda: self.clock())
        )

    def create(
        self, user_id: int, name: str = "", expires_days: float | None = None
    ) -> tuple[int, str]:
        """Return (id, token) of a new token of ``user_id``; the token is not kept."""
        if expires_days is not None and expires_days <= 0:
            raise BadParameter("expires", "a number of days greater than 0")
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                at.api_tokens.insert().values(
                    user_id=user_id,
                    name=name,
                    token_hash=hash_key(token),
                    prefix=token[: len(PREFIX) + 6],
                    created=now,
                    expires=None if expires_days is None else now + expires_days * 86400,
                )
            )
            assert result.inserted_primary_key is not None
            return int(result.inserted_primary_key[0]), token

    def list(self, user_id: int | None = None, include_revoked: bool = False) -> list[Token]:
        query = (
            sa.select(at.api_tokens, t.users.c.username)
            .join(t.users, t.users.c.id == at.api_tokens.c.user_id)
            .order_by(at.api_tokens.c.id)
        )
        if user_id is not None:
            query = query.where(at.api_tokens.c.user_id == user_id)
        if not include_revoked:
            query = query.where(at.api_tokens.c.revoked == sa.false())
        with self.engine.connect() as conn:
            return [
                Token(
                    id=row.id,
                    user_id=row.user_id,
                    username=row.username,
                    name=row.name,
                    prefix=row.prefix,
                    created=row.created,
                    expires=row.expires,
                    last_used=row.last_used,
                    revoked=bool(row.revoked),
                )
                for row in conn.execute(query)
            ]

    def revoke(self, token_id: int, user_id: int | None = None) -> None:
        """Revoke a token (only one of ``user_id``'s when given); raise NotFound otherwise."""
        query = at.api_tokens.update().where(at.api_tokens.c.id == token_id)
        if user_id is not None:
            query = query.where(at.api_tokens.c.user_id == user_id)
        with self.engine.begin() as conn:
            revoked = conn.execute(query.values(revoked=True)).rowcount
        self._revoked()
        if revoked == 0:
            raise NotFound(f"token {token_id} does not exist")

    def revoke_user(self, user_id: int) -> int:
        with self.engine.begin() as conn:
            count = int(
                conn.execute(
                    at.api_tokens.update()
                    .where(at.api_tokens.c.user_id == user_id)
                    .values(revoked=True)
                ).rowcount
            )
        self._revoked()
        return count

    def _revoked(self) -> None:
        """Drop this process's cached tokens and tell the others to drop theirs."""
        if self.cache is not None and self.stamp is not None:
            self.cache.clear()
            self.stamp.touch()

    def user_of(self, token: str) -> int | None:
        """Return the user id of a live token (not revoked, not expired), else None."""
        now = self.clock()
        digest = hash_key(token)
        if self.cache is None:
            found = self._read(digest, now)
        else:
            found = self.cache.get(digest, lambda: self._read(digest, now))
        if found is None:
            return None
        user_id, expires = found
        return None if expires is not None and expires <= now else user_id

    def _read(self, digest: str, now: float) -> tuple[int, float | None] | None:
        """Return (user id, expiry) of the unrevoked token ``digest``; mark it used if due."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    at.api_tokens.c.id,
                    at.api_tokens.c.user_id,
                    at.api_tokens.c.expires,
                    at.api_tokens.c.last_used,
                ).where(at.api_tokens.c.token_hash == digest, at.api_tokens.c.revoked == sa.false())
            ).first()
        if row is None or (row.expires is not None and row.expires <= now):
            return None
        if row.last_used is None or now - row.last_used >= TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(
                    at.api_tokens.update().where(at.api_tokens.c.id == row.id).values(last_used=now)
                )
        return int(row.user_id), row.expires

    def get(self, token_id: int) -> Token:
        for token in self.list(include_revoked=True):
            if token.id == token_id:
                return token
        raise NotFound(f"token {token_id} does not exist")
