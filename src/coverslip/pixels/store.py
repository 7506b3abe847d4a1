"""Open pyramids once per process and hand them out by image."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from coverslip.home import Home
from coverslip.model import Image
from coverslip.pixels.objects import ObjectStore, is_remote
from coverslip.pixels.pyramid import Pyramid


class PixelStore:
    """Keep recently used pyramids open; reopen one when its image changed."""

    def __init__(self, home: Home, objects: ObjectStore | None = None, keep: int = 256) -> None:
        self.home = home
        self.objects = objects  # where new pyramids go, and how to read those already there
        self.keep = keep
        self._open: OrderedDict[int, tuple[object, Pyramid]] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, image: Image) -> Path | str:
        """Return where the pyramid of ``image`` lives: a folder, or an object-store URL."""
        found = image.pyramid_path
        if not found:
            return self.home.pyramid(image.id)
        return found if is_remote(found) else Path(found)

    def open(self, image: Image) -> Pyramid:
        """Return the open pyramid of ``image`` (raises PyramidError if it is missing)."""
        stamp = (image.updated, image.pyramid_path)
        with self._lock:
            found = self._open.get(image.id)
            if found is not None and found[0] == stamp:
                self._open.move_to_end(image.id)
                return found[1]
        pyramid = Pyramid(self.path(image), self.objects)
        with self._lock:
            self._open[image.id] = (stamp, pyramid)
            while len(self._open) > self.keep:
                self._open.popitem(last=False)
        return pyramid

    def forget(self, image_id: int) -> None:
        with self._lock:
            self._open.pop(image_id, None)
