"""Login throttling: failed sign-ins per username and per client address are counted.

After ``slow_after`` failures of a username within ``window`` seconds, each further attempt
must wait 2, 4, 8 … seconds after the previous failure; at ``max_failures`` the username (or
address) is refused until ``window`` seconds after its first failure. A successful sign-in clears the
username's count. Counts live in the catalog, so every worker process sees the same ones.
"""

from __future__ import annotations

import math
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coverslip.auth import tables as at
from coverslip.auth.sessions import Clock
from coverslip.errors import CoverslipError


class Throttled(CoverslipError):
    """Too many failed sign-ins; the web layer answers 429 with Retry-After."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"too many failed sign-ins; try again in {self.retry_after} second"
            f"{'s' if self.retry_after != 1 else ''}"
        )


class Throttle:
    """Count failures per scope ("user:NAME", "addr:IP") and say when to refuse."""

    def __init__(
        self,
        engine: Engine,
        max_failures: dict[str, int],
        window: float,
        slow_after: int = 3,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.max_failures = max_failures  # by kind: {"user": 5, "addr": 20}
        self.window = float(window)
        self.slow_after = slow_after
        self.clock: Clock = clock or time.time

    def check(self, scopes: list[str]) -> None:
        """Raise Throttled if any of ``scopes`` must wait."""
        now = self.clock()
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(at.login_failures).where(at.login_failures.c.scope.in_(scopes))
                )
                .mappings()
                .all()
            )
        wait = 0.0
        for row in rows:
            count, first, last = int(row["count"]), float(row["first"]), float(row["last"])
            if now - first >= self.window:
                continue
            kind = str(row["scope"]).split(":", 1)[0]
            limit = self.max_failures.get(kind, 0)
            if limit and count >= limit:
                wait = max(wait, first + self.window - now)
            elif kind == "user" and count >= self.slow_after:
                # NOTE: only usernames are slowed down; an address may be a whole lab's NAT.
                delay = min(2.0 ** (count - self.slow_after + 1), self.window)
                wait = max(wait, last + delay - now)
        if wait > 0:
            raise Throttled(wait)

    def failed(self, scopes: list[str]) -> None:
        """Record one failure of each scope."""
        now = self.clock()
        table = at.login_failures
        with self.engine.begin() as conn:
            for scope in scopes:
                row = conn.execute(sa.select(table).where(table.c.scope == scope)).first()
                if row is None:
                    conn.execute(table.insert().values(scope=scope, count=1, first=now, last=now))
                elif now - row.first >= self.window:
                    conn.execute(
                        table.update()
                        .where(table.c.scope == scope)
                        .values(count=1, first=now, last=now)
                    )
                else:
                    conn.execute(
                        table.update()
                        .where(table.c.scope == scope)
                        .values(count=table.c.count + 1, last=now)
                    )

    def clear(self, scope: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(at.login_failures.delete().where(at.login_failures.c.scope == scope))
