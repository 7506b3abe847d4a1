"""OME-Zarr label images as regions of interest: every label value an ROI, with one Mask
shape per plane it occurs on, in the JSON of OMERO.web's get_rois_json.

A label image is an integer OME-Zarr image in the ``labels`` group of the image it labels,
of the same height and width; 0 is background. Its ``image-label`` colours, when given,
colour the masks. OMERO imports labels as Mask shapes in the same way (one ROI per value).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from coverslip.errors import ImportFailed
from coverslip.formats.omezarr_arrays import attributes, inside, is_group, open_levels
from coverslip.pixels.objects import ObjectStore, is_remote
from coverslip.pixels.pyramid import Pyramid, PyramidError, axis_names, confined_key, read_group

# Label images larger than this (pixels over every plane) are kept but not turned into ROIs:
# finding each value's box reads the whole label image.
MAX_PIXELS = 1 << 26
MAX_SHAPES = 5000
MAX_VALUE = 1 << 20  # find_objects keeps a box for every value up to the largest
DEFAULT_RGBA = (255, 255, 0, 128)


@dataclass(frozen=True)
class Masks:
    """The ROIs of an image's labels and the boolean pixels of each Mask shape, by shape id."""

    rois: list[dict[str, Any]]
    bits: dict[int, np.ndarray]


def _colours(attrs: dict[str, Any]) -> dict[int, tuple[int, int, int, int]]:
    found: dict[int, tuple[int, int, int, int]] = {}
    colours = (attrs.get("image-label") or {}).get("colors") or []
    for entry in colours if isinstance(colours, list) else []:
        if not isinstance(entry, dict):
            continue
        value, rgba = entry.get("label-value"), entry.get("rgba")
        if (
            isinstance(value, int)
            and isinstance(rgba, list)
            and len(rgba) == 4
            and all(isinstance(v, int) and 0 <= v <= 255 for v in rgba)
        ):
            found[value] = (rgba[0], rgba[1], rgba[2], rgba[3])
    return found


class _Remote:
    """A label image in an object store or on a web server, read as a pyramid is."""

    def __init__(self, url: str, objects: ObjectStore | None) -> None:
        try:
            self.pyramid = Pyramid(url, objects)
        except PyramidError as exc:
            raise ImportFailed(str(exc)) from None
        self.shape, self.dtype = self.pyramid.shape, self.pyramid.dtype

    def band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.pyramid.read(0, t, c, z, slice(y0, y1), slice(0, self.shape[4]))


def _level(folder: Path | str, objects: ObjectStore | None) -> Any:
    """Return the full-resolution level of the label image at ``folder``."""
    if is_remote(folder):
        return _Remote(str(folder), objects)
    attrs = attributes(Path(folder))
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise ImportFailed("no multiscales metadata")
    datasets = multiscales[0].get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ImportFailed("multiscales metadata lists no datasets")
    return open_levels(Path(folder), datasets[:1], axis_names(multiscales[0]))[0]


def _attributes(folder: Path | str, objects: ObjectStore | None) -> dict[str, Any]:
    if not is_remote(folder):
        return attributes(Path(folder))
    try:
        found = read_group(str(folder), objects)[1]
    except PyramidError as exc:
        raise ImportFailed(str(exc)) from None
    return found if isinstance(found, dict) else {}


def _inside(labels: Path | str, name: object) -> Path | str:
    # SECURITY: a label's name is the uploader's text; it stays below the labels group.
    if not is_remote(labels):
        return inside(Path(labels), name)
    try:
        return confined_key(str(labels), name)
    except PyramidError as exc:
        raise ImportFailed(str(exc)) from None


def _is_group(labels: Path | str, objects: ObjectStore | None) -> bool:
    if not is_remote(labels):
        return is_group(Path(labels))
    try:
        read_group(str(labels), objects)
    except PyramidError:
        return False
    return True


def listed_labels(labels: Path | str, objects: ObjectStore | None = None) -> list[str]:
    """Return the names of the label images the ``labels`` group lists and holds (a folder,
    or a URL read through ``objects``); ImportFailed when its ``labels`` is not a list."""
    if not _is_group(labels, objects):
        return []
    listed = _attributes(labels, objects).get("labels") or []
    if not isinstance(listed, list):
        raise ImportFailed("labels/: the labels attribute is not a list")
    names = []
    for name in listed:
        text = str(name) if isinstance(name, int) and not isinstance(name, bool) else name
        if _is_group(_inside(labels, text), objects):
            names.append(str(text))
    return names


def _planes(
    folder: Path | str, shape: tuple[int, int, int, int], objects: ObjectStore | None = None
) -> Iterator[tuple[int | None, int | None, np.ndarray]]:
    """Yield (z, t, plane) of the label image at ``folder`` for an image of ``shape`` (T, Z,
    Y, X); z or t is None when the labels have one plane for the image's several (they hold
    on every plane). ImportFailed when the labels are unusable."""
    level = _level(folder, objects)
    t, c, z, y, x = level.shape
    if level.dtype.kind not in "iu":
        raise ImportFailed(f"labels are {level.dtype}, not integers")
    size_t, size_z, size_y, size_x = shape
    if (y, x) != (size_y, size_x) or z not in (1, size_z) or t not in (1, size_t):
        raise ImportFailed(f"labels of T×Z×Y×X {t}×{z}×{y}×{x} do not fit the image's {shape}")
    if t * c * z * y * x > MAX_PIXELS:
        raise ImportFailed(f"labels of {t * c * z * y * x} pixels are too many to list")
    for tt in range(t):
        for zz in range(z):
            every_z, every_t = z == 1 < size_z, t == 1 < size_t
            plane = np.asarray(level.band(tt, 0, zz, 0, y))
            yield None if every_z else zz, None if every_t else tt, plane


def label_rois(
    labels: Path | str,
    names: list[str],
    shape: tuple[int, int, int, int],
    first_roi: int,
    first_shape: int,
    objects: ObjectStore | None = None,
) -> Masks:
    """Return the ROIs of the label images ``names`` in the ``labels`` group at ``labels`` (a
    folder, or a URL read through ``objects``), for an image of ``shape`` (T, Z, Y, X); ROI
    and shape ids count on from ``first_roi`` and ``first_shape``.

    A label image that cannot be used is left out; the others still count.
    """
    rois: list[dict[str, Any]] = []
    bits: dict[int, np.ndarray] = {}
    roi_id, shape_id = first_roi - 1, first_shape - 1
    if not _is_group(labels, objects):
        return Masks(rois, bits)
    for name in names:
        try:
            folder = _inside(labels, name)
            colours = _colours(_attributes(folder, objects))
            by_value: dict[int, list[dict[str, Any]]] = {}
            for z, t, plane in _planes(folder, shape, objects):
                if plane.min() < 0 or plane.max() > MAX_VALUE:
                    raise ImportFailed(f"label values outside 0..{MAX_VALUE}")
                boxes = ndimage.find_objects(plane.astype(np.int64, copy=False))
                for index, box in enumerate(boxes):
                    if box is None or len(bits) >= MAX_SHAPES:
                        continue
                    value = index + 1
                    ys, xs = box
                    shape_id += 1
                    r, g, b, a = colours.get(value, DEFAULT_RGBA)
                    bits[shape_id] = plane[box] == value
                    by_value.setdefault(value, []).append(
                        {
                            "id": shape_id,
                            "type": "Mask",
                            "x": xs.start,
                            "y": ys.start,
                            "width": xs.stop - xs.start,
                            "height": ys.stop - ys.start,
                            "theZ": z,
                            "theT": t,
                            "theC": None,
                            "textValue": f"{name} {value}",
                            "strokeColor": f"#{r:02X}{g:02X}{b:02X}",
                            "strokeAlpha": 1.0,
                            "fillColor": f"#{r:02X}{g:02X}{b:02X}",
                            "fillAlpha": round(a / 255, 3),
                            "strokeWidth": 1.0,
                            "label": name,
                            "labelValue": value,
                        }
                    )
        except ImportFailed:
            continue
        for value in sorted(by_value):
            roi_id += 1
            rois.append({"id": roi_id, "name": f"{name} {value}", "shapes": by_value[value]})
    return Masks(rois, bits)


def mask_rgba(shape: dict[str, Any], bits: np.ndarray) -> Image.Image:
    """Return the mask as an RGBA picture of its box: the shape's fill colour where it is set."""
    colour = shape.get("fillColor") or "#FFFF00"
    alpha = int(round(255 * float(shape.get("fillAlpha") or 0.5)))
    rgba = np.zeros((*bits.shape, 4), dtype=np.uint8)
    rgba[bits] = (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16), alpha)
    return Image.fromarray(rgba, "RGBA")
