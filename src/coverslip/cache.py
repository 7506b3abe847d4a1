"""The rendered-output cache: thumbnails and tiles, keyed so nothing stale is served.

Every key includes the version of the rendering settings it was made with; saving new
settings bumps the version, so an old entry can never answer a new request, and
``purge_image`` then removes the superseded renders so they do not hold disk space.

Two tiers: a byte-budgeted LRU in the memory of each worker process (``cache.memory_bytes``)
in front of files under ``cache/<image id>/`` (``cache.max_bytes``), which every worker
process of the instance shares. Disk entries are least-recently-used first out: a file's
mtime is its last use, refreshed on a hit at most once a minute.

The disk total is one shared counter, ``cache/.total``, counted from the files when it is
first made. A writer reserves its bytes in it under a short ``flock`` before it writes, and
whoever removes a file takes its bytes off, so the counter is never below the files. A
writer that would pass the cap evicts: one scan of the folder, oldest files out until 90 %
of the cap is in use. While another process evicts, such a writer skips the put instead, so
the files never add up to more than the cap, and no writer waits on another. Readers never
lock. A worker killed mid-write leaves its reservation counted; removing ``.total`` while
Coverslip is stopped makes the next writer count the files afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import struct
import tempfile
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from coverslip.config import lookup

# A disk entry is a header (magic, payload length, CRC-32 of the payload), then the payload.
# NOTE: a file that is short, long, or fails its CRC is a miss: a cache never serves bytes it
# cannot vouch for (files of the former headerless layout are misses too, and age out).
_MAGIC = b"CSc1"
_HEADER = struct.Struct(">4sQI")
_TOTAL = ".total"  # the shared running total of bytes, 8 bytes, little-endian
_EVICT_LOCK = ".evict"  # held (non-blocking) by the one process that evicts
_TOTAL_SIZE = 8
_TEMP_PREFIX = ".tmp-"
_PURGE_PREFIX = ".purge-"
_TOUCH_SECONDS = 60.0  # PERF: a hit rewrites the mtime at most once a minute
_LOW_WATER = 0.9  # eviction frees down to this share of the cap, so it runs rarely
_STALE_TEMP_SECONDS = 3600.0  # a temp file this old was left by a writer that died
_MEMORY_ENTRY_SHARE = 8  # an entry larger than 1/8 of the memory budget stays on disk only


def redis_url(settings: Mapping[str, Any]) -> str:
    """Return the Redis of the shared render cache and change notices."""
    return str(settings["cache.redis_url"] or settings["sessions.redis_url"])


def make_key(*parts: object) -> str:
    """Return a short stable key for ``parts`` (image id, settings version, size, query, ...)."""
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def settings_tag(user_id: int | None, version: int) -> str:
    """Return the part of a key that names the settings: whose they are, and their version."""
    return f"{'d' if user_id is None else f'u{user_id}'}@{version}"


def thumbnail_key(tag: str, z: int, t: int, width: int, height: int) -> str:
    """Return the key of a JPEG thumbnail of plane (z, t) rendered with the settings ``tag``.

    "thumb2": thumbnails are scaled as OMERO scales them; entries made before are never served.
    """
    return make_key(tag, z, t, "thumb2", width, height)


def encode_entry(data: bytes) -> bytes:
    """Return ``data`` as a disk entry: header, then the bytes."""
    return _HEADER.pack(_MAGIC, len(data), zlib.crc32(data)) + data


def decode_entry(raw: bytes) -> bytes | None:
    """Return the payload of a disk entry, or None when it is partial or corrupt."""
    if len(raw) < _HEADER.size:
        return None
    magic, length, crc = _HEADER.unpack_from(raw)
    if magic != _MAGIC or length != len(raw) - _HEADER.size:
        return None
    data = raw[_HEADER.size :]
    return data if zlib.crc32(data) == crc else None


class MemoryLRU:
    """A byte-budgeted least-recently-used map, safe to share between threads."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.max_entry = budget // _MEMORY_ENTRY_SHARE
        self.total = 0
        self._entries: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: tuple[int, str]) -> bytes | None:
        """Return the entry and mark it most recently used, or None."""
        with self._lock:
            data = self._entries.get(name)
            if data is not None:
                self._entries.move_to_end(name)
            return data

    def put(self, name: tuple[int, str], data: bytes) -> None:
        """Store an entry, dropping the least recently used ones to stay within the budget."""
        # NOTE: one large region must not flush every thumbnail; it is served from disk.
        if len(data) > self.max_entry:
            return
        with self._lock:
            old = self._entries.pop(name, None)
            if old is not None:
                self.total -= len(old)
            self._entries[name] = data
            self.total += len(data)
            while self.total > self.budget:
                _name, dropped = self._entries.popitem(last=False)
                self.total -= len(dropped)

    def drop_image(self, image_id: int) -> None:
        """Forget every entry of one image."""
        with self._lock:
            for name in [name for name in self._entries if name[0] == image_id]:
                self.total -= len(self._entries.pop(name))


def _walk_files(root: Path | str) -> Iterator[os.DirEntry[str]]:
    """Yield every regular file under ``root``, skipping folders that vanish meanwhile."""
    # PERF: plain strings and scandir, no Path objects: eviction walks every entry.
    try:
        with os.scandir(root) as entries:
            listed = list(entries)
    except OSError:
        return
    for entry in listed:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_files(entry.path)
            elif entry.is_file(follow_symlinks=False):
                yield entry
        except OSError:
            continue


def disk_usage(root: Path, temp: bool = True) -> int:
    """Return the bytes of the files under ``root``; of finished entries only unless ``temp``."""
    total = 0
    for entry in _walk_files(root):
        if not temp and entry.name.startswith(_TEMP_PREFIX):
            continue
        try:
            total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


class _Ledger:
    """The disk total shared by every process writing one cache folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # NOTE: flock does not exclude threads sharing one fd
        self._fd = -1
        self._pid = -1

    def _open(self) -> int:
        # NOTE: a forked worker must open its own descriptor: a descriptor inherited over
        # fork shares its flock with the parent, so the two would not exclude each other.
        if self._pid != os.getpid():
            self.root.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.root / _TOTAL, os.O_RDWR | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def _read(self, fd: int) -> int | None:
        raw = os.pread(fd, _TOTAL_SIZE, 0)
        return int.from_bytes(raw, "little", signed=True) if len(raw) == _TOTAL_SIZE else None

    def _write(self, fd: int, total: int) -> None:
        os.pwrite(fd, max(total, 0).to_bytes(_TOTAL_SIZE, "little", signed=True), 0)

    def _locked_total(self, fd: int) -> int:
        total = self._read(fd)
        if total is None:
            # First use of this folder (or a former layout): count what is there.
            total = disk_usage(self.root) + _TOTAL_SIZE
            self._write(fd, total)
        return total

    def reserve(self, size: int, cap: int) -> bool:
        """Add ``size`` to the total unless that passes ``cap``; say whether it was added."""
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                total = self._locked_total(fd)
                if total + size > cap:
                    return False
                self._write(fd, total + size)
                return True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def add(self, delta: int) -> int:
        """Add ``delta`` (negative for freed bytes) to the total and return the new total."""
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                total = self._locked_total(fd) + delta
                self._write(fd, total)
                return total
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def total(self) -> int:
        """Return the recorded total."""
        return self.add(0)


class DiskTier:
    """Entries as files under ``root/<image id>/<xx>/<key>``, capped at ``max_bytes`` in all."""

    def __init__(self, root: Path, max_bytes: int, clock: Any = time.time) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.clock = clock
        self.ledger = _Ledger(root)

    def path(self, image_id: int, key: str) -> Path:
        return self.root / str(image_id) / key[:2] / key

    def get(self, image_id: int, key: str) -> bytes | None:
        """Return the entry's bytes, or None when it is missing, partial or corrupt."""
        path = self.path(image_id, key)
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
                mtime = os.fstat(handle.fileno()).st_mtime
        except OSError:
            return None
        data = decode_entry(raw)
        if data is not None and self.clock() - mtime > _TOUCH_SECONDS:
            with contextlib.suppress(OSError):  # evicted meanwhile: the bytes read are whole
                os.utime(path)
        return data

    def put(self, image_id: int, key: str, data: bytes) -> None:
        """Store an entry atomically, evicting the least recently used first if need be."""
        entry = encode_entry(data)
        if not self._reserve(len(entry)):
            return  # NOTE: a put is best effort; the caller already has its bytes
        path = self.path(image_id, key)
        freed = 0
        try:
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
            except FileNotFoundError:  # PERF: the folder is made once, not checked per put
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(entry)
                try:
                    freed = path.stat().st_size  # the entry this one replaces
                except OSError:
                    freed = 0
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            freed = len(entry)  # nothing was written: give the reservation back
        finally:
            if freed:
                self.ledger.add(-freed)

    def _reserve(self, size: int) -> bool:
        if size > self.max_bytes:
            return False
        if self.ledger.reserve(size, self.max_bytes):
            return True
        if not self.evict(size):
            return False  # another process is evicting: skip rather than pass the cap
        return self.ledger.reserve(size, self.max_bytes)

    def evict(self, room: int = 0) -> bool:
        """Remove the least recently used files until ``room`` more bytes fit below the cap.

        Returns False, doing nothing, while another process is evicting.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.root / _EVICT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self._evict_locked(room)
            return True
        finally:
            os.close(lock)  # NOTE: closing the only descriptor releases the flock

    def _evict_locked(self, room: int) -> None:
        # PERF: one scan of the folder per eviction; freeing down to 90 % of the cap makes
        # evictions rare (one per tenth of the cap written), so its cost is spread thin.
        now = self.clock()
        files: list[tuple[float, int, str]] = []
        scanned = 0
        purging = os.path.join(self.root, _PURGE_PREFIX)
        for entry in _walk_files(self.root):
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            name = entry.name
            if name.startswith(_TEMP_PREFIX) and now - stat.st_mtime > _STALE_TEMP_SECONDS:
                _unlink(entry.path)  # left by a writer that died (its reservation stays)
                continue
            scanned += stat.st_size
            # A folder being purged is its purger's to delete and account for.
            if entry.path.startswith(purging) or name in (_TOTAL, _EVICT_LOCK):
                continue
            if not name.startswith(_TEMP_PREFIX):
                files.append((stat.st_mtime, stat.st_size, entry.path))
        target = min(int(self.max_bytes * _LOW_WATER), self.max_bytes - room)
        excess = max(self.ledger.total(), scanned) - target
        freed = 0
        files.sort()
        for _mtime, size, path in files:
            if freed >= excess:
                break
            if _unlink(path):
                freed += size
        # NOTE: every change is recorded by whoever makes it, so the total is only ever
        # adjusted, never overwritten by a scan that races other writers and purges.
        self.ledger.add(-freed)

    def purge_image(self, image_id: int) -> None:
        """Remove one image's entries: its folder is renamed away at once, then deleted."""
        folder = self.root / str(image_id)
        doomed = self.root / f"{_PURGE_PREFIX}{uuid.uuid4().hex}"
        try:
            os.rename(folder, doomed)
        except OSError:
            return  # nothing cached for this image
        # NOTE: a temp file caught in the folder belongs to a writer whose rename now fails;
        # that writer gives its own reservation back, so it is not counted here.
        freed = disk_usage(doomed, temp=False)
        shutil.rmtree(doomed, ignore_errors=True)
        self.ledger.add(-freed)


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


class RedisTier:
    """Entries in Redis under ``<prefix><image id>:<key>``, shared by every node; each lives ``ttl`` s.

    A Redis that does not answer is a miss and a skipped put: the caller renders instead.
    """

    def __init__(self, client: Any, ttl: int, prefix: str = "coverslip:render:") -> None:
        self.client = client
        self.ttl = ttl
        self.prefix = prefix
        self._local = threading.local()

    @classmethod
    def from_url(cls, url: str, ttl: int) -> RedisTier:
        import redis

        return cls(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1), ttl)

    def get(self, image_id: int, key: str) -> bytes | None:
        import redis

        # PERF: each thread keeps a connection of its own: a GET through the client's pool
        # costs about 90 µs of CPU, one on a held connection 50 µs (bench/object_store.py).
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():  # a forked worker connects anew
            held = self._local.held = (os.getpid(), self.client.connection_pool.make_connection())
        connection = held[1]
        try:
            connection.send_command("GET", f"{self.prefix}{image_id}:{key}")
            raw = connection.read_response()
        except (redis.RedisError, OSError):
            connection.disconnect()  # whatever half-read answer it holds goes with it
            return None
        return None if raw is None else decode_entry(raw)

    def put(self, image_id: int, key: str, data: bytes) -> None:
        import redis

        with contextlib.suppress(redis.RedisError):  # best effort, as on disk
            self.client.set(f"{self.prefix}{image_id}:{key}", encode_entry(data), ex=self.ttl)

    def purge_image(self, image_id: int) -> None:
        """Remove one image's entries (a scan of its keys; saving settings is rare)."""
        import redis

        with contextlib.suppress(redis.RedisError):
            names = list(self.client.scan_iter(match=f"{self.prefix}{image_id}:*", count=1000))
            for start in range(0, len(names), 500):
                self.client.delete(*names[start : start + 500])


class RenderCache:
    """Rendered outputs: an LRU in this process's memory over files under ``cache/<image id>/``.

    ``max_bytes`` caps the files of every process sharing ``root`` (0: no disk tier);
    ``memory_bytes`` caps this process's memory tier (0: none).
    """

    def __init__(
        self,
        root: Path,
        enabled: bool = True,
        *,
        max_bytes: int | None = None,
        memory_bytes: int | None = None,
    ) -> None:
        self.root = root
        self.enabled = enabled
        max_bytes = lookup("cache.max_bytes").default if max_bytes is None else max_bytes
        memory_bytes = (
            lookup("cache.memory_bytes").default if memory_bytes is None else memory_bytes
        )
        self.disk: DiskTier | RedisTier | None = (
            DiskTier(root, max_bytes) if enabled and max_bytes > 0 else None
        )
        self.memory = MemoryLRU(memory_bytes) if enabled and memory_bytes > 0 else None

    @classmethod
    def from_settings(cls, root: Path, settings: Mapping[str, Any]) -> RenderCache:
        """Return the cache the ``cache.*`` settings describe (a disk or a Redis shared tier)."""
        cache = cls(
            root,
            enabled=settings["cache.enabled"],
            max_bytes=settings["cache.max_bytes"],
            memory_bytes=settings["cache.memory_bytes"],
        )
        if settings["cache.enabled"] and settings["cache.backend"] == "redis":
            cache.disk = RedisTier.from_url(redis_url(settings), settings["cache.redis_ttl"])
        return cache

    def get(self, image_id: int, key: str) -> bytes | None:
        """Return the cached bytes, or None."""
        memory = self.memory
        if memory is not None:
            data = memory.get((image_id, key))
            if data is not None:
                return data
        if self.disk is None:
            return None
        data = self.disk.get(image_id, key)
        if data is not None and memory is not None:
            memory.put((image_id, key), data)
        return data

    def put(self, image_id: int, key: str, data: bytes) -> None:
        """Store ``data``; readers see the whole file or none of it."""
        if self.memory is not None:
            self.memory.put((image_id, key), data)
        if self.disk is not None:
            self.disk.put(image_id, key, data)

    def purge_image(self, image_id: int) -> None:
        """Forget everything rendered for one image, in this process's memory and on disk.

        Call it when an image's settings version changes: every entry made before is
        superseded. Other processes' memory tiers keep theirs until they age out; none
        can be served, as their keys carry the old version.
        """
        if self.memory is not None:
            self.memory.drop_image(image_id)
        if self.disk is not None:
            self.disk.purge_image(image_id)
        else:
            shutil.rmtree(self.root / str(image_id), ignore_errors=True)

    def drop_image(self, image_id: int) -> None:
        """Forget everything rendered for one image (as ``purge_image``)."""
        self.purge_image(image_id)
