"""The rendered-output cache: thumbnails and tiles on disk, keyed so nothing stale is served.

Every key includes the version of the rendering settings it was made with; saving new
settings bumps the version, so an old entry can never answer a new request.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


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


class RenderCache:
    """Files under ``cache/<image id>/``, written atomically, removed with the image."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    def _path(self, image_id: int, key: str) -> Path:
        return self.root / str(image_id) / key[:2] / key

    def get(self, image_id: int, key: str) -> bytes | None:
        """Return the cached bytes, or None."""
        if not self.enabled:
            return None
        try:
            with open(self._path(image_id, key), "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def put(self, image_id: int, key: str, data: bytes) -> None:
        """Store ``data``; readers see the whole file or none of it."""
        if not self.enabled:
            return
        path = self._path(image_id, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def drop_image(self, image_id: int) -> None:
        """Forget everything rendered for one image."""
        shutil.rmtree(self.root / str(image_id), ignore_errors=True)
