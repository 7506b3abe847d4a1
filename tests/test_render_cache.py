"""The render cache: a memory LRU over a capped, shared disk tier, purged per image."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from pathlib import Path

import pytest

from coverslip import config
from coverslip.cache import MemoryLRU, RenderCache, decode_entry, make_key


def payload(seed: int, size: int) -> bytes:
    """Return ``size`` bytes that differ from one seed to the next."""
    return random.Random(seed).randbytes(size)


def files_on_disk(root: Path) -> dict[Path, int]:
    """Return every file under ``root`` with its size, as the file system reports it."""
    found = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            found[path] = path.stat().st_size
    return found


def entry_files(root: Path) -> list[Path]:
    """Return the cache entries under ``root``: files in image folders, temp files included."""
    return [path for path in files_on_disk(root) if path.parent != root]


def disk_only(root: Path, max_bytes: int) -> RenderCache:
    return RenderCache(root, max_bytes=max_bytes, memory_bytes=0)


def test_disk_never_exceeds_max_bytes(tmp_path: Path) -> None:
    cap = 60_000
    cache = disk_only(tmp_path, cap)
    rng = random.Random(1)
    for n in range(250):
        data = payload(n, rng.randint(200, 4000))
        cache.put(n % 7, make_key(n), data)
        assert sum(files_on_disk(tmp_path).values()) <= cap, f"over the cap after put {n}"
        assert cache.get(n % 7, make_key(n)) == data
    # Eviction frees room, it does not empty the cache.
    assert sum(files_on_disk(tmp_path).values()) > cap // 2


def test_least_recently_used_go_first(tmp_path: Path) -> None:
    cache = disk_only(tmp_path, 100_000)
    old = time.time() - 3600
    for n in range(20):
        cache.put(1, make_key(n), payload(n, 4000))
        path = cache.disk.path(1, make_key(n)) if cache.disk else None
        assert path is not None
        os.utime(path, (old + n, old + n))  # written an hour ago, oldest first
    # Read the two oldest: a hit marks them used now.
    assert cache.get(1, make_key(0)) is not None
    assert cache.get(1, make_key(1)) is not None
    for n in range(20, 30):
        cache.put(1, make_key(n), payload(n, 4000))
    kept = {n for n in range(30) if cache.get(1, make_key(n)) is not None}
    assert {0, 1} <= kept, "the entries just read were evicted"
    evicted = set(range(30)) - kept
    assert evicted, "nothing was evicted"
    # What went is the oldest of the untouched ones, in order.
    assert evicted == set(range(2, 2 + len(evicted)))


def test_memory_tier_stays_within_budget() -> None:
    budget = 50_000
    memory = MemoryLRU(budget)
    rng = random.Random(2)
    for n in range(500):
        memory.put((n % 3, make_key(n)), payload(n, rng.randint(100, budget // 8)))
        assert memory.total <= budget
        assert memory.total == sum(len(v) for v in memory._entries.values())
    assert len(memory) > 1


def test_memory_tier_drops_least_recently_used() -> None:
    memory = MemoryLRU(10 * 1000)
    memory.max_entry = 10 * 1000
    for n in range(10):
        memory.put((1, str(n)), bytes(1000))
    assert memory.get((1, "0")) is not None  # 0 is now the most recently used
    memory.put((1, "new"), bytes(1000))
    assert memory.get((1, "1")) is None
    assert memory.get((1, "0")) is not None
    assert memory.get((1, "new")) is not None


def test_memory_tier_answers_without_the_disk(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path, max_bytes=0, memory_bytes=1_000_000)
    cache.put(3, "k", b"thumbnail")
    assert not entry_files(tmp_path)
    assert cache.get(3, "k") == b"thumbnail"


def test_disabled_cache_keeps_nothing(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path, enabled=False)
    cache.put(3, "k", b"thumbnail")
    assert cache.get(3, "k") is None
    assert not entry_files(tmp_path)


def test_settings_change_purges_that_image_only(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path, max_bytes=1_000_000, memory_bytes=1_000_000)
    for image in (1, 2):
        for n in range(5):
            cache.put(image, make_key("d@0", n), payload(image * 10 + n, 500))
    cache.purge_image(1)
    assert all(cache.get(1, make_key("d@0", n)) is None for n in range(5))
    assert all(cache.get(2, make_key("d@0", n)) == payload(20 + n, 500) for n in range(5))
    fresh = disk_only(tmp_path, 1_000_000)  # another worker: no memory of its own yet
    assert all(fresh.get(1, make_key("d@0", n)) is None for n in range(5))
    assert all(fresh.get(2, make_key("d@0", n)) is not None for n in range(5))
    assert not (tmp_path / "1").exists()
    # The bytes freed are given back: the recorded total is what the files add up to.
    assert cache.disk is not None
    assert cache.disk.ledger.total() == sum(files_on_disk(tmp_path).values())


def _writer(root: str, cap: int, seed: int, count: int) -> None:
    cache = disk_only(Path(root), cap)
    rng = random.Random(seed)
    for n in range(count):
        image = rng.randint(1, 9)
        cache.put(image, make_key(seed, n), payload(seed * 100_000 + n, rng.randint(300, 3000)))
        if n % 50 == 25:
            cache.purge_image(rng.randint(1, 9))


def test_two_processes_keep_the_total_under_the_cap(tmp_path: Path) -> None:
    cap = 80_000
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_writer, args=(str(tmp_path), cap, seed, 600)) for seed in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    sizes = files_on_disk(tmp_path)
    assert sum(sizes.values()) <= cap
    entries = entry_files(tmp_path)
    assert entries, "nothing was cached"
    assert not [path for path in entries if path.name.startswith(".")], "temp files left"
    for path in entries:
        assert decode_entry(path.read_bytes()) is not None, f"{path} is partial"


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # cut short
        lambda raw: raw[:-1] + bytes([raw[-1] ^ 0xFF]),  # a flipped byte
        lambda raw: raw[16:],  # a file of the former layout: no header
        lambda raw: b"",  # empty
    ],
    ids=["partial", "corrupt", "headerless", "empty"],
)
def test_a_damaged_file_is_a_miss(tmp_path: Path, damage: object) -> None:
    cache = disk_only(tmp_path, 1_000_000)
    data = payload(7, 2000)
    cache.put(5, "key", data)
    assert cache.disk is not None
    path = cache.disk.path(5, "key")
    assert callable(damage)
    path.write_bytes(damage(path.read_bytes()))
    assert RenderCache(tmp_path, max_bytes=1_000_000).get(5, "key") is None
    cache.put(5, "key", data)  # the next render replaces it
    assert RenderCache(tmp_path, max_bytes=1_000_000).get(5, "key") == data


def test_settings_are_declared_and_validated(tmp_path: Path) -> None:
    settings = config.load(None, {"COVERSLIP_CACHE_MAX_BYTES": "512M"}, {})
    assert settings["cache.max_bytes"] == 512 * 1024**2
    assert settings["cache.memory_bytes"] == 64 * 1024**2
    with pytest.raises(config.SettingError, match="cache.memory_bytes"):
        config.load(None, {"COVERSLIP_CACHE_MEMORY_BYTES": "lots"}, {})
    cache = RenderCache.from_settings(tmp_path, settings)
    assert cache.disk is not None and cache.disk.max_bytes == 512 * 1024**2
    assert cache.memory is not None and cache.memory.budget == 64 * 1024**2
    off = RenderCache.from_settings(tmp_path, settings.with_values({"cache.max_bytes": 0}))
    assert off.disk is None


# -- the Redis tier every node shares ------------------------------------------------------


def test_the_redis_tier_keeps_entries_per_image_and_outlives_a_dropped_connection(
    redis_url: str,
) -> None:
    import redis

    from coverslip.cache import RedisTier

    url = redis_url.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(url).flushdb()
    tier = RedisTier.from_url(url, ttl=60)
    assert tier.get(5, "thumb") is None
    tier.put(5, "thumb", b"jpeg bytes")
    tier.put(6, "thumb", b"other")
    assert tier.get(5, "thumb") == b"jpeg bytes"
    assert 0 < redis.Redis.from_url(url).ttl("coverslip:render:5:thumb") <= 60
    # Redis drops every client connection: a miss at worst, then served again.
    redis.Redis.from_url(url).client_kill_filter(_type="normal", skipme=True)
    first = tier.get(5, "thumb")
    assert first in (None, b"jpeg bytes")
    assert tier.get(5, "thumb") == b"jpeg bytes"
    tier.purge_image(5)
    assert tier.get(5, "thumb") is None and tier.get(6, "thumb") == b"other"
    # A Redis that does not answer is a miss and a skipped put, not an error.
    gone = RedisTier.from_url("redis://127.0.0.1:9/0", ttl=60)
    gone.put(1, "k", b"x")
    assert gone.get(1, "k") is None
