"""An in-process cache whose entries live ``ttl`` seconds and all go when a change signal moves.

Every process keeps its own ``FreshCache``; a change made by any process (another worker, the
CLI) moves a shared signal, usually a ``StampFile`` in the instance's run/ folder, and every
cache that watches it drops what it held on its next lookup. ``ttl`` bounds how long a
change can go unseen where the signal does not reach (another host).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Signal = Callable[[], Hashable]


# The stamps read during the request this thread is answering (None: not in a request).
_request = threading.local()
_UNREAD = object()


class RequestScope:
    """Middleware: each stamp file is read once per request.

    # PERF: a cached thumbnail asked five caches whether their stamp moved, ten stats of two
    # files; one answer per file holds for the rest of the request. A change made by another
    # process during the request is seen by the next one, as it would be had it landed a
    # moment later; one made by this request is seen at once (``touch`` forgets its read).
    """

    def process_request(self, req: object, resp: object) -> None:
        _request.stamps = {}

    def process_response(self, req: object, resp: object, resource: object, ok: bool) -> None:
        _request.stamps = None


class StampFile:
    """A file that says "something changed" to every process on this host, read with one stat."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._name = str(self.path)  # PERF: os.stat of a str skips pathlib's conversion

    def __call__(self) -> Hashable:
        """Return the stamp's identity now; it differs after every ``touch``."""
        read: dict[str, Hashable] | None = getattr(_request, "stamps", None)
        if read is not None:
            found = read.get(self._name, _UNREAD)
            if found is not _UNREAD:
                return found
        value = self._identity()
        if read is not None:
            read[self._name] = value
        return value

    def _identity(self) -> Hashable:
        try:
            found = os.stat(self._name)
        except FileNotFoundError:
            return None
        # NOTE: file times are coarse (a clock tick); a new inode per touch tells two touches
        # within one tick apart.
        return (found.st_ino, found.st_mtime_ns)

    def touch(self) -> None:
        """Move the stamp: write a new file and rename it over the old one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        fresh.write_text(str(time.time_ns()))
        os.replace(fresh, self.path)
        read: dict[str, Hashable] | None = getattr(_request, "stamps", None)
        if read is not None:
            read.pop(self._name, None)


class RedisStamp:
    """A change signal that reaches every process on every host: a counter in Redis.

    ``touch`` increments the counter and publishes it; each process listens in a thread of
    its own (started on first use, again after a fork) and keeps the last value heard, so a
    lookup costs no round trip. While it is not subscribed (starting, Redis away), every
    lookup returns a new value: caches that watch it keep nothing rather than something stale.
    """

    def __init__(self, url: str, name: str, prefix: str = "coverslip:stamp:") -> None:
        self.url = url
        self.name = name
        self.key = f"{prefix}{name}"
        self._pid = -1
        self._live = False
        self._value: Hashable = None
        self._lock = threading.Lock()
        self._client_of: tuple[int, Any] | None = None

    def _client(self) -> Any:
        """Return this process's client (a forked process makes its own connections)."""
        pid = os.getpid()
        if self._client_of is None or self._client_of[0] != pid:
            import redis

            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=5
            )
            self._client_of = (pid, client)
        return self._client_of[1]

    def __call__(self) -> Hashable:
        if self._pid != os.getpid():
            self._start()
        return self._value if self._live else object()

    def touch(self) -> None:
        """Move the signal for every process: increment, publish, and take the value here too."""
        import redis

        try:
            client = self._client()
            value = client.incr(self.key)
            client.publish(self.key, value)
        except redis.RedisError:
            return  # NOTE: listeners cut off from Redis keep nothing cached meanwhile
        if self._live:
            self._value = int(value)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._live = False
            threading.Thread(target=self._listen, name=f"stamp-{self.name}", daemon=True).start()

    def _listen(self) -> None:
        import redis

        pid = os.getpid()
        while self._pid == pid:
            try:
                pubsub = self._client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.key)
                while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
                    pass
                # NOTE: read after subscribing, so a touch in between is heard one way or the other.
                self._value = int(self._client().get(self.key) or 0)
                self._live = True
                while self._pid == pid:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._value = int(message["data"])
            except (redis.RedisError, OSError, ValueError):
                self._live = False
                time.sleep(1.0)


Stamp = StampFile | RedisStamp
_REDIS_STAMPS: dict[tuple[str, str], RedisStamp] = {}


def make_stamp(path: Path, redis_url: str | None = None) -> Stamp:
    """Return the change signal named by ``path``'s file name: a stamp file, or in Redis.

    One ``RedisStamp`` per (Redis, name) in a process, so each is listened to once.
    """
    if not redis_url:
        return StampFile(path)
    found = _REDIS_STAMPS.get((redis_url, path.name))
    if found is None:
        found = _REDIS_STAMPS[(redis_url, path.name)] = RedisStamp(redis_url, path.name)
    return found


def signals(first: Signal, second: Signal) -> Signal:
    """Return one signal that moves when either of two does."""
    return lambda: (first(), second())


class FreshCache(Generic[K, V]):
    """Values by key, each kept at most ``ttl`` seconds of ``clock``, all dropped when ``signal`` moves.

    ``get(key, load)`` reads the signal first and tags what ``load`` returns with it, so a
    change that lands while loading is still seen on the next lookup. ``None`` is cached only
    with ``keep_none`` (misses of random keys would otherwise fill the cache).
    """

    def __init__(
        self,
        ttl: float,
        signal: Signal | None = None,
        clock: Callable[[], float] = time.monotonic,
        size: int = 10_000,
        keep_none: bool = False,
    ) -> None:
        self.ttl = float(ttl)
        self.signal = signal
        self.clock = clock
        self.size = size
        self.keep_none = keep_none
        self._lock = threading.Lock()
        self._mark: Hashable = None
        self._entries: dict[K, tuple[float, V]] = {}

    def _current(self) -> Hashable:
        mark = self.signal() if self.signal is not None else None
        if mark != self._mark:
            with self._lock:
                self._entries = {}
                self._mark = mark
        return mark

    def get(self, key: K, load: Callable[[], V]) -> V:
        """Return the cached value of ``key``, else what ``load()`` returns (then cached)."""
        mark = self._current()
        now = self.clock()
        found = self._entries.get(key)
        if found is not None and 0 <= now - found[0] < self.ttl:
            return found[1]
        value = load()
        self.put(key, value, mark, now)
        return value

    def put(self, key: K, value: V, mark: Hashable, loaded: float) -> None:
        """Keep ``value`` loaded at ``loaded`` under signal ``mark`` (dropped if it moved since)."""
        if value is None and not self.keep_none:
            return
        with self._lock:
            if mark != self._mark:
                return
            if len(self._entries) >= self.size:
                self._entries = {}
            self._entries[key] = (loaded, value)

    def drop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries = {}
