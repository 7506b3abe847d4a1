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
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Signal = Callable[[], Hashable]


class StampFile:
    """A file that says "something changed" to every process on this host, read with one stat."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._name = str(self.path)  # PERF: os.stat of a str skips pathlib's conversion

    def __call__(self) -> Hashable:
        """Return the stamp's identity now; it differs after every ``touch``."""
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
