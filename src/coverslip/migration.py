"""`coverslip pixels migrate`: move the pyramids and originals kept in the home into the store.

Each image moves on its own: every file of its pyramid is stored (the store checks each
against its MD5), the pyramid must open from the store, then the catalog points at it and
the local folder goes. A fileset's originals move the same way and are re-hashed from the
store against the sha512 recorded at import before the local copy goes. Whatever stops a
run — a kill, a full disk, a store that stops answering — leaves every image readable from
one place or the other; running again skips what is already stored whole.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coverslip.check import stored_originals_damage
from coverslip.errors import CoverslipError, NotFound
from coverslip.model import Image
from coverslip.pixels import Pyramid
from coverslip.pixels.objects import ObjectStore, is_remote
from coverslip.services import Services

# Images whose files are still being written: a later run moves them.
BUSY = ("queued", "saving", "uploading", "importing")


class MigrationFailed(CoverslipError):
    """What was copied did not come back as it went: the local copy stays."""


@dataclass
class Moved:
    """What a run moved, and what it left where it was, with the reason."""

    images: int = 0
    filesets: int = 0
    objects: int = 0  # written this run; those found already stored whole are not counted
    size: int = 0
    left: list[str] = field(default_factory=list)


class Migration:
    """Move what ``services`` keeps in its home into its object store."""

    def __init__(self, services: Services, say: Callable[[str], None]) -> None:
        if services.pixels.objects is None:
            raise CoverslipError("pixels.store is file: name the object store to move into")
        self.services = services
        self.objects: ObjectStore = services.pixels.objects
        self.home = services.home
        self.catalog = services.catalog
        self.say = say
        self.moved = Moved()

    def run(self) -> Moved:
        self.objects.ping()
        for image in self.catalog.list_images():
            self._image(image)
        for folder in sorted(self.home.originals.glob("fileset-*")):
            self._fileset(folder)
        return self.moved

    def _image(self, image: Image) -> None:
        local = self.home.pyramid(image.id)
        if is_remote(image.pyramid_path):
            # A run stopped between pointing the catalog at the store and removing the copy.
            shutil.rmtree(local, ignore_errors=True)
            return
        if image.pyramid_path and Path(image.pyramid_path) != local:
            self.moved.left.append(f"image {image.id}: registered in place at {image.pyramid_path}")
            return
        if not local.is_dir():
            return
        if image.status in BUSY:
            self.moved.left.append(f"image {image.id}: {image.status}; run again when it is done")
            return
        url = self.objects.pyramid(image.id)
        stored = self.objects.store_tree(url, local)
        Pyramid(url, self.objects)  # raises PyramidError unless it opens from the store
        self.catalog.update_image(image.id, pyramid_path=url)
        shutil.rmtree(local, ignore_errors=True)
        self._count(stored.written, stored.size)
        self.moved.images += 1
        self.say(f"image {image.id}: pyramid stored ({_amount(stored.written, stored.size)})")

    def _fileset(self, folder: Path) -> None:
        if folder.is_symlink() or not folder.is_dir():
            return
        try:
            fileset = self.catalog.get_fileset(int(folder.name.removeprefix("fileset-")))
        except (ValueError, NotFound):
            self.moved.left.append(f"{folder.name}: no such fileset in the catalog")
            return
        busy = [i for i in fileset.image_ids if self.catalog.get_image(i).status in BUSY]
        if busy:
            self.moved.left.append(f"fileset {fileset.id}: image {busy[0]} is still importing")
            return
        stored = self.objects.store_tree(self.objects.fileset(fileset.id), folder)
        damage = stored_originals_damage(self.catalog, self.objects, fileset.id)
        if damage:
            raise MigrationFailed(f"fileset {fileset.id}: {damage[0]}; its local copy stays")
        self.services.importer().drop_local_originals(fileset.id, fileset.image_ids)
        self._count(stored.written, stored.size)
        self.moved.filesets += 1
        self.say(f"fileset {fileset.id}: originals stored ({_amount(stored.written, stored.size)})")

    def _count(self, objects: int, size: int) -> None:
        self.moved.objects += objects
        self.moved.size += size


def _amount(objects: int, size: int) -> str:
    return f"{objects} object{'s' if objects != 1 else ''}, {size / 1e6:.1f} MB"
