"""A small in-process cache of image records and rendering settings, for the hot paths.

Every catalog write moves a stamp file in the instance's run/ folder; a lookup first
compares the stamp (one stat call) and drops everything when another process changed the
catalog. With several hosts the stamp lives in Redis (``cache.backend = redis``) and reaches
them all; entries also expire after ``ttl`` seconds, which bounds how long a change can go
unseen where no signal reaches.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from coverslip.auth.fresh import Stamp, StampFile
from coverslip.catalog import Catalog
from coverslip.catalog.base import UNAVAILABLE
from coverslip.catalog.records import Image


class CachedCatalog:
    """Read-through cache of ``get_image`` and ``get_rdef`` in front of a Catalog."""

    def __init__(
        self,
        catalog: Catalog,
        stamp: Path | Stamp,
        ttl: float = 5.0,
        size: int = 10_000,
    ) -> None:
        self.catalog = catalog
        self.stamp = StampFile(stamp) if isinstance(stamp, Path) else stamp
        self.ttl = ttl
        self.size = size
        self._seen = self.stamp()
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def touch(self) -> None:
        """Tell every process that the catalog changed."""
        # NOTE: a new file renamed over the old, so two changes within one clock tick of the
        # file system differ too (its inode), which rewriting the file in place missed.
        self.stamp.touch()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _get(self, key: Any, load: Any) -> Any:
        now = time.monotonic()
        stamp = self.stamp()
        with self._lock:
            if stamp != self._seen:
                self._entries.clear()
                self._seen = stamp
            found = self._entries.get(key)
            if found is not None and now - found[0] < self.ttl:
                return found[1]
        try:
            value = load()
        except UNAVAILABLE:
            if found is None:
                raise
            # NOTE: the database is down or not answering: serve what was known (public
            # thumbnails keep working) and ask again only after another ttl.
            value = found[1]
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[key] = (now, value)
        return value

    def image(self, image_id: int) -> Image:
        """Return the image record (raises NotFound like the catalog; misses are not cached)."""
        result: Image = self._get(("image", image_id), lambda: self.catalog.get_image(image_id))
        return result

    def rdef(self, image_id: int, user_id: int) -> tuple[int, dict[str, Any]] | None:
        """Return what ``get_rdef`` returns, cached."""
        result: tuple[int, dict[str, Any]] | None = self._get(
            ("rdef", image_id, user_id), lambda: self.catalog.get_rdef(image_id, user_id)
        )
        return result
