"""What the catalog's modules share: the engine, the clock, and row helpers."""

from __future__ import annotations

import contextlib
import heapq
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.engine import Engine

from coverslip.errors import BadParameter, Conflict

LOCAL_ADMIN = "admin"
DEFAULT_GROUP = "default"

# What a catalog that is down or does not answer in time raises.
UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
)


def now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # NOTE: WAL lets the web workers read while an import writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@dataclass(frozen=True)
class Timeouts:
    """How long the catalog may take to connect and to run one statement, in seconds."""

    connect: float = 5.0
    statement: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> Timeouts:
        return cls(float(settings["db.connect_timeout"]), float(settings["db.statement_timeout"]))


def make_engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    """Return an engine for ``url``, with SQLite set up for many processes.

    PostgreSQL connections give up after ``timeouts.connect``; the server cancels a statement
    after ``timeouts.statement``, and a server that does not answer at all (stopped, or a
    network that drops packets) has its connection cut shortly after, so no request hangs.
    """
    timeouts = timeouts or Timeouts()
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql+psycopg"):
        connect_args = {
            "connect_timeout": max(1, round(timeouts.connect)),
            "options": f"-c statement_timeout={round(timeouts.statement * 1000)}",
        }
    engine = sa.create_engine(
        url, pool_pre_ping=True, pool_timeout=timeouts.connect, connect_args=connect_args
    )
    if engine.dialect.driver == "psycopg":
        _guard_dialect(engine.dialect, Watchdog(timeouts.statement + 2.0))
    return engine


class Watchdog:
    """Shut the socket of a database connection whose call overran its deadline.

    # NOTE: a server that is stopped (SIGSTOP) or cut off still has its kernel acknowledge
    # every packet, so neither statement_timeout nor TCP timeouts end the wait; shutting
    # the socket down makes the driver raise at once, and the pool drops that connection.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, int]] = {}  # token -> (deadline, socket)
        self._heap: list[tuple[float, int]] = []
        self._next = 0
        self._pid = 0

    @contextlib.contextmanager
    def guard(self, fileno: int) -> Iterator[None]:
        """Cut ``fileno`` if the block takes longer than the watchdog's seconds."""
        deadline = time.monotonic() + self.seconds
        with self._cond:
            self._next += 1
            token = self._next
            self._armed[token] = (deadline, fileno)
            heapq.heappush(self._heap, (deadline, token))
            if self._pid != os.getpid():  # first use in this process (workers fork)
                self._pid = os.getpid()
                threading.Thread(target=self._watch, name="db-watchdog", daemon=True).start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._armed.pop(token, None)

    def _watch(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                _deadline, fileno = self._armed.pop(token)
                _shut(fileno)


def _shut(fileno: int) -> None:
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fileno))
        with sock:
            sock.shutdown(socket.SHUT_RDWR)


def _guard_dialect(dialect: Any, watchdog: Watchdog) -> None:
    """Run every call of ``dialect`` that talks to the server under ``watchdog``."""

    def guarded(call: Callable[..., Any]) -> Callable[..., Any]:
        def run(dbapi_connection: Any, *args: Any, **kwargs: Any) -> Any:
            raw = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
            try:
                fileno = raw.fileno()
            except Exception:  # noqa: BLE001 - a closed connection: nothing to guard
                return call(dbapi_connection, *args, **kwargs)
            with watchdog.guard(fileno):
                return call(dbapi_connection, *args, **kwargs)

        return run

    def guarded_cursor(call: Callable[..., Any]) -> Callable[..., Any]:
        def run(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            with watchdog.guard(cursor.connection.fileno()):
                return call(cursor, *args, **kwargs)

        return run

    # NOTE: the engine's own dialect instance, so only this engine is affected.
    for name in ("do_ping", "do_commit", "do_rollback"):
        setattr(dialect, name, guarded(getattr(dialect, name)))
    for name in ("do_execute", "do_executemany", "do_execute_no_params"):
        setattr(dialect, name, guarded_cursor(getattr(dialect, name)))


def _new_id(result: sa.CursorResult[Any]) -> int:
    """Return the primary key of the row an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _as_utc(value: datetime) -> datetime:
    # NOTE: SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def owned_scope(
    table: sa.Table, group_ids: Sequence[int] | None, or_owner_id: int | None
) -> sa.ColumnElement[bool] | None:
    """Return the condition of rows of ``table`` (images, datasets) in ``group_ids`` or owned
    by ``or_owner_id`` (None: every row).

    With ``auth.policy.readable_group_ids`` it is the SQL form of "may read" for lists.
    """
    if group_ids is None:
        return None
    scope: sa.ColumnElement[bool] = table.c.group_id.in_(list(group_ids))
    if or_owner_id is not None:
        scope = scope | (table.c.owner_id == or_owner_id)
    return scope


def contains(column: sa.ColumnElement[str], text: str) -> sa.ColumnElement[bool]:
    """Return the condition "``column`` contains ``text``", ignoring case; ``%`` and ``_``
    in ``text`` are themselves, not wildcards."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


def create_named(
    engine: Engine, table: sa.Table, name: str, owner_id: int, group_id: int, description: str
) -> int:
    """Insert a named row (a dataset, a project) of ``owner_id`` in ``group_id`` and return
    its id; the name is unique within the group (Conflict names the one that has it)."""
    what = table.name.rstrip("s")
    if not name.strip():
        raise BadParameter("name", f"a {what} needs a name")
    with engine.begin() as conn:
        existing = conn.scalar(
            sa.select(table.c.id).where(table.c.name == name, table.c.group_id == group_id)
        )
        if existing is not None:
            raise Conflict(f"{what} {name!r} exists already (id {existing})")
        result = conn.execute(
            table.insert().values(
                name=name,
                description=description,
                owner_id=owner_id,
                group_id=group_id,
                created=now(),
            )
        )
        return _new_id(result)
