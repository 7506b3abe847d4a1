"""Login throttling: progressive delays per username and per client address, never a lockout.

Failed sign-ins are counted per username ("user:NAME"), per client address ("addr:IP") and
per pair ("pair:NAME|IP") for ``window`` seconds from the first one. Once a scope has had its
free failures, each further attempt must wait 2, 4, 8 … seconds after that scope's last
failure, but never more than ``max_delay``: guessing stays slow, yet nobody can lock a user
out (OWASP's advice against lockout as a denial of service). An address that signed in as a
user before is not slowed down by that username's failures from elsewhere, only by its own.
A successful sign-in clears the username's and the pair's counts. Counts live in the
catalog, so every worker process sees the same ones.
"""

from __future__ import annotations

import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from coverslip.auth import tables as at
from coverslip.auth.sessions import Clock
from coverslip.errors import CoverslipError

# An address that signed in as a user is "known" to that user for this long.
KNOWN_FOR = 90 * 24 * 3600.0


class Throttled(CoverslipError):
    """Too many failed sign-ins; the web layer answers 429 with Retry-After."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"too many failed sign-ins; try again in {self.retry_after} second"
            f"{'s' if self.retry_after != 1 else ''}"
        )


def scopes_of(username: str, address: str) -> list[str]:
    """Return the scopes one sign-in attempt counts against: username, address, the pair."""
    name = username.lower()
    if not address:
        return [f"user:{name}"]
    return [f"user:{name}", f"addr:{address}", f"pair:{name}|{address}"]


class Throttle:
    """Count failures per scope and say how long the next attempt must wait."""

    def __init__(
        self,
        engine: Engine,
        free_failures: dict[str, int],
        window: float,
        max_delay: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        # By kind: {"user": 5, "addr": 50}; a pair is a username seen from one address.
        self.free_failures = {"pair": free_failures.get("user", 5), **free_failures}
        self.window = float(window)
        self.max_delay = float(max_delay)
        self.clock: Clock = clock or time.time

    def delay(self, kind: str, count: int) -> float:
        """Return how long after its last failure a scope with ``count`` failures waits."""
        free = self.free_failures.get(kind, 0)
        if count < free:
            return 0.0
        # NOTE: capped, so the right password is never refused for longer than max_delay.
        return min(2.0 ** min(count - free + 1, 30), self.max_delay)

    def check(self, scopes: list[str]) -> None:
        """Raise Throttled if any of ``scopes`` must still wait."""
        now = self.clock()
        table = at.login_failures
        known = [f"ok:{scope[5:]}" for scope in scopes if scope.startswith("pair:")]
        with self.engine.connect() as conn:
            query = sa.select(table).where(table.c.scope.in_(scopes + known))
            rows = conn.execute(query).mappings().all()
        by_scope = {str(row["scope"]): row for row in rows}
        if any(now - float(by_scope[k]["last"]) < KNOWN_FOR for k in known if k in by_scope):
            # SECURITY: strangers failing as this user do not slow down its usual address.
            by_scope.pop(scopes[0], None)
        wait = 0.0
        for scope in scopes:
            row = by_scope.get(scope)
            if row is None or now - float(row["first"]) >= self.window:
                continue
            delay = self.delay(scope.split(":", 1)[0], int(row["count"]))
            wait = max(wait, float(row["last"]) + delay - now)
        if wait > 0:
            raise Throttled(wait)

    def failed(self, scopes: list[str]) -> None:
        """Record one failure of each scope."""
        now = self.clock()
        with self.engine.begin() as conn:
            for scope in scopes:
                self._count(conn, scope, now)

    def _count(self, conn: Connection, scope: str, now: float) -> None:
        table = at.login_failures
        expired = now - table.c.first >= self.window
        changes: dict[str, Any] = {
            "count": sa.case((expired, 1), else_=table.c.count + 1),
            "first": sa.case((expired, now), else_=table.c.first),
            "last": now,
        }
        _upsert(conn, {"scope": scope, "count": 1, "first": now, "last": now}, changes)

    def succeeded(self, scopes: list[str]) -> None:
        """Clear the username's and the pair's counts, and remember the address as known."""
        now = self.clock()
        table = at.login_failures
        cleared = [s for s in scopes if s.startswith(("user:", "pair:"))]
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.scope.in_(cleared)))
            for scope in scopes:
                if scope.startswith("pair:"):
                    known = {"scope": f"ok:{scope[5:]}", "count": 0, "first": now, "last": now}
                    _upsert(conn, known, {"last": now})


def _upsert(conn: Connection, fresh: dict[str, Any], changes: dict[str, Any]) -> None:
    """Insert the row ``fresh``, or apply ``changes`` to the row of its scope if there is one.

    # NOTE: one statement where the dialect has ON CONFLICT, so two workers counting the same
    # new scope at once both count (a select-then-insert let one of them hit the primary key).
    """
    table = at.login_failures
    dialects: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    insert = dialects.get(conn.dialect.name)
    if insert is not None:
        statement = insert(table).values(**fresh)
        conn.execute(statement.on_conflict_do_update(index_elements=["scope"], set_=changes))
        return
    where = table.c.scope == fresh["scope"]
    if conn.execute(table.update().where(where).values(**changes)).rowcount == 0:
        conn.execute(table.insert().values(**fresh))
