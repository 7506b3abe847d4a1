"""`coverslip check`: find damaged pyramids and originals before visitors do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coverslip.catalog import Catalog
from coverslip.errors import CoverslipError, StoreUnavailable
from coverslip.home import Home
from coverslip.imports import COPY_BLOCK, Digest, hash_file, hash_files
from coverslip.model import Image
from coverslip.pixels import PixelStore, Pyramid, PyramidError
from coverslip.pixels.objects import ObjectStore, join


@dataclass
class Finding:
    """What a check found about one image: damage in its pixels or its originals."""

    image_id: int
    pixels: list[str] = field(default_factory=list)
    originals: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return bool(self.pixels or self.originals)


def check_image(catalog: Catalog, pixels: PixelStore, home: Home, image: Image) -> Finding:
    """Read every chunk of ``image``'s pyramid and re-hash the originals of its fileset."""
    finding = Finding(image.id)
    try:
        finding.pixels = Pyramid(pixels.path(image), pixels.objects).damage()
    except PyramidError as exc:
        finding.pixels = [str(exc)]
    fileset_id = catalog.fileset_of(image.id)
    if fileset_id is not None:
        local = home.fileset_dir(fileset_id)
        if pixels.objects is not None and not local.is_dir():
            finding.originals = stored_originals_damage(catalog, pixels.objects, fileset_id)
        else:
            finding.originals = _originals_damage(catalog, home, fileset_id)
    return finding


def stored_originals_damage(catalog: Catalog, objects: ObjectStore, fileset_id: int) -> list[str]:
    """Re-hash a fileset's originals as the object store holds them, in the import's order."""
    try:
        fileset = catalog.get_fileset(fileset_id)
    except CoverslipError:
        return []
    if fileset.sha512 is None or not fileset.files:
        return []
    folder = objects.fileset(fileset_id)
    try:
        keys = [key for key, _size in objects.keys(folder)]
        missing = [name for name in fileset.files if name not in keys and not _under(keys, name)]
        if missing:
            return [f"original {name} is missing from the object store" for name in missing]
        digest = Digest()
        if len(fileset.files) == 1 and fileset.files[0] in keys:
            _feed(digest, objects, join(folder, fileset.files[0]))
        else:
            for name in sorted(fileset.files):
                # NOTE: as the import walked a folder: its files first, then its folders, by name.
                inside = sorted(_under(keys, name), key=_walk_order)
                for key in inside or [name]:
                    digest.update(key.encode() + b"\0")
                    _feed(digest, objects, join(folder, key))
    except StoreUnavailable as exc:
        return [str(exc)]
    found = digest.sha512.hexdigest()
    if found != fileset.sha512:
        return [f"the originals' sha512 is {found[:16]}…, not the {fileset.sha512[:16]}… recorded"]
    return []


def _under(keys: list[str], name: str) -> list[str]:
    return [key for key in keys if key.startswith(f"{name}/")]


def _walk_order(key: str) -> tuple[tuple[int, str], ...]:
    *folders, name = key.split("/")
    return (*((1, part) for part in folders), (0, name))


def _feed(digest: Digest, objects: ObjectStore, url: str) -> None:
    body = objects.open(url)
    try:
        while block := body.read(COPY_BLOCK):
            digest.update(block)
    finally:
        body.close()


def _originals_damage(catalog: Catalog, home: Home, fileset_id: int) -> list[str]:
    try:
        fileset = catalog.get_fileset(fileset_id)
    except CoverslipError:
        return []
    if fileset.sha512 is None or not fileset.files:
        return []  # registered in place: nothing was copied, nothing recorded
    folder = home.fileset_dir(fileset_id)
    missing = [name for name in fileset.files if not (folder / name).exists()]
    if missing:
        return [f"original {name} is missing" for name in missing]
    try:
        digest = _digest(folder, fileset.files)
    except OSError as exc:
        return [f"the originals do not read ({exc.strerror or exc})"]
    if digest != fileset.sha512:
        return [f"the originals' sha512 is {digest[:16]}…, not the {fileset.sha512[:16]}… recorded"]
    return []


def _digest(folder: Path, members: list[str]) -> str:
    """Return the sha512 the import recorded: of the one file, or of every member in order."""
    if len(members) == 1 and (folder / members[0]).is_file():
        return hash_file(folder / members[0], Digest()).sha512.hexdigest()
    digest = Digest()
    # NOTE: the import hashed members sorted by path, each as its relative path then bytes.
    for name in sorted(members):
        member = folder / name
        if member.is_dir():
            hash_files(member, folder, digest)
        else:
            digest.update(name.encode() + b"\0")
            hash_file(member, digest)
    return digest.sha512.hexdigest()
