"""Regions of interest of an OME-XML Image, in the JSON of OMERO.web's get_rois_json, and masks
(a label image's Mask shapes, from ``omezarr_labels``, bring their own pixels).

Shapes are numbered in the order the file lists them (ROI ids 1, 2, … and shape ids 1, 2, …
across the image), as the file's own ids (``Shape:0:0``) are text. A pixel belongs to a
shape when its centre (x + ½, y + ½) lies inside it; a point holds the pixel it falls in.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from coverslip.formats.ome_tiff import parse_root

SHAPES = ("Rectangle", "Ellipse", "Point", "Line", "Polygon", "Polyline", "Label")
_NUMBERS = {
    "Rectangle": ("X", "Y", "Width", "Height"),
    "Ellipse": ("X", "Y", "RadiusX", "RadiusY"),
    "Point": ("X", "Y"),
    "Line": ("X1", "Y1", "X2", "Y2"),
    "Label": ("X", "Y"),
}


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _color(value: str | None) -> str | None:
    """OME's signed 32-bit RGBA as #RRGGBB, as OMERO.web writes strokeColor and fillColor."""
    if value is None or not value.lstrip("-").isdigit():
        return None
    rgba = int(value) & 0xFFFFFFFF
    return f"#{rgba >> 8:06X}"


def _alpha(value: str | None) -> float | None:
    if value is None or not value.lstrip("-").isdigit():
        return None
    return round((int(value) & 0xFF) / 255, 3)


def _plane(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _shape(element: ET.Element, number: int) -> dict[str, Any] | None:
    kind = _local(element)
    if kind not in SHAPES:
        return None
    a = element.attrib
    shape: dict[str, Any] = {"id": number, "omeId": a.get("ID"), "type": kind}
    try:
        for name in _NUMBERS.get(kind, ()):
            shape[name[0].lower() + name[1:]] = float(a[name])
    except (KeyError, ValueError):
        return None
    if kind in ("Polygon", "Polyline"):
        points = a.get("Points", "").strip()
        try:
            pairs = [tuple(float(v) for v in p.split(",")) for p in points.split()]
        except ValueError:
            return None
        if len(pairs) < 2 or any(len(p) != 2 for p in pairs):
            return None
        shape["points"] = " ".join(f"{x:g},{y:g}" for x, y in pairs)
    for key, name in (("theZ", "TheZ"), ("theT", "TheT"), ("theC", "TheC")):
        shape[key] = _plane(a.get(name))
    shape["textValue"] = a.get("Text", "")
    shape["strokeColor"] = _color(a.get("StrokeColor"))
    shape["strokeAlpha"] = _alpha(a.get("StrokeColor"))
    shape["fillColor"] = _color(a.get("FillColor"))
    shape["fillAlpha"] = _alpha(a.get("FillColor"))
    width = a.get("StrokeWidth")
    shape["strokeWidth"] = float(width) if width and width.replace(".", "", 1).isdigit() else 1.0
    return shape


def parse_rois(text: str, image_index: int) -> list[dict[str, Any]]:
    """Return the ROIs that Image ``image_index`` of the OME-XML refers to (every ROI when
    the file has one Image and it refers to none), each {"id", "name", "shapes": [...]}."""
    root = parse_root(text)
    if root is None:
        return []
    images = [e for e in root if _local(e) == "Image"]
    rois = {e.attrib.get("ID"): e for e in root if _local(e) == "ROI"}
    if not rois or not 0 <= image_index < len(images):
        return []
    refs = [e.attrib.get("ID") for e in images[image_index] if _local(e) == "ROIRef"]
    if not refs and len(images) == 1:
        refs = list(rois)
    found: list[dict[str, Any]] = []
    number = 0
    for roi_number, ref in enumerate(refs, start=1):
        roi = rois.get(ref)
        if roi is None:
            continue
        shapes = []
        for union in (e for e in roi if _local(e) == "Union"):
            for element in union:
                number += 1
                shape = _shape(element, number)
                if shape is not None:
                    shapes.append(shape)
        found.append(
            {"id": roi_number, "omeId": ref, "name": roi.attrib.get("Name", ""), "shapes": shapes}
        )
    return found


def bounds(shape: dict[str, Any], width: int, height: int) -> tuple[int, int, int, int] | None:
    """Return the pixel box (x0, y0, x1, y1) a shape's mask lies in, clipped to the image."""
    kind = shape["type"]
    if kind == "Mask":  # whole pixels, its box exactly (a label image's)
        x0, y0 = max(0, shape["x"]), max(0, shape["y"])
        x1 = min(width, shape["x"] + shape["width"])
        y1 = min(height, shape["y"] + shape["height"])
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
    if kind == "Rectangle":
        box = (shape["x"], shape["y"], shape["x"] + shape["width"], shape["y"] + shape["height"])
    elif kind == "Ellipse":
        x, y, rx, ry = shape["x"], shape["y"], shape["radiusX"], shape["radiusY"]
        box = (x - rx, y - ry, x + rx, y + ry)
    elif kind == "Point":
        box = (shape["x"], shape["y"], shape["x"] + 1, shape["y"] + 1)
    elif kind == "Polygon":
        xs, ys = _points(shape)
        box = (xs.min(), ys.min(), xs.max(), ys.max())
    else:
        return None  # lines, polylines and labels enclose no pixels
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2])) + 1), min(height, int(np.ceil(box[3])) + 1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _points(shape: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.array([[float(v) for v in p.split(",")] for p in shape["points"].split()])
    return pairs[:, 0], pairs[:, 1]


def mask(shape: dict[str, Any], box: tuple[int, int, int, int]) -> np.ndarray:
    """Return the boolean mask of ``shape`` over the pixels of ``box`` (from ``bounds``)."""
    x0, y0, x1, y1 = box
    kind = shape["type"]
    if kind == "Mask":  # its pixels come with it, as "bits" over its own box
        return np.asarray(
            shape["bits"][y0 - shape["y"] : y1 - shape["y"], x0 - shape["x"] : x1 - shape["x"]]
        )
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    if kind == "Rectangle":
        x, y = shape["x"], shape["y"]
        return (xx >= x) & (xx < x + shape["width"]) & (yy >= y) & (yy < y + shape["height"])
    if kind == "Ellipse":
        dx = (xx - shape["x"]) / shape["radiusX"]
        dy = (yy - shape["y"]) / shape["radiusY"]
        return dx * dx + dy * dy <= 1
    if kind == "Point":
        return (np.floor(xx) == np.floor(shape["x"])) & (np.floor(yy) == np.floor(shape["y"]))
    xs, ys = _points(shape)
    inside = np.zeros(xx.shape, dtype=bool)
    for xa, ya, xb, yb in zip(xs, ys, np.roll(xs, -1), np.roll(ys, -1), strict=True):
        # Even-odd rule: a ray to the right of the centre crosses the edge.
        if ya == yb:
            continue
        crosses = (ya > yy) != (yb > yy)
        at = xa + (yy - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (xx < at)
    return inside
