"""The arrays of an OME-Zarr image: its levels as stored, read with tensorstore or, for the
metadata early writers left malformed, with zarr-python; and paths confined to the image."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coverslip.errors import ImportFailed
from coverslip.pixels.pyramid import Pyramid, PyramidError, confined, read_group

AXES = ("t", "c", "z", "y", "x")


def attributes(path: Path) -> dict[str, Any]:
    """Return the OME attributes of the group at ``path`` (ImportFailed when unreadable)."""
    try:
        attrs = read_group(path)[1]
    except PyramidError as exc:
        raise ImportFailed(str(exc)) from None
    if not isinstance(attrs, dict):
        raise ImportFailed("the group's attributes are not a JSON object")
    return attrs


def inside(root: Path, relative: object) -> Path:
    """Return ``root / relative`` confined to ``root`` (ImportFailed when it leaves it)."""
    # SECURITY: every path read from the metadata (series, wells, fields, levels, labels)
    # comes from whoever wrote the file; confined() refuses .., absolute paths and links out.
    try:
        return confined(root, relative)
    except PyramidError as exc:
        raise ImportFailed(str(exc)) from None


def is_group(path: Path) -> bool:
    """Return whether ``path`` holds Zarr group metadata (v2 or v3)."""
    return any((path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup"))


def _fixed_fill(meta: dict[str, Any], dtype: np.dtype) -> Any:
    """Return a fill value zarr-python accepts for the (maybe string) ``fill_value`` of ``meta``."""
    value = meta.get("fill_value")
    if not isinstance(value, str):
        return value
    try:
        number = float(value)  # "NaN", "Infinity", "-Infinity", "0", "1.5"
    except ValueError:
        return 0
    if dtype.kind == "f":
        return value if value in ("NaN", "Infinity", "-Infinity") else number
    return int(number) if math.isfinite(number) else 0


def open_with_zarr(folder: Path) -> Any:
    """Open the Zarr array at ``folder`` with zarr-python, correcting a string ``fill_value``.

    # NOTE: early OME-Zarr writers stored ``fill_value`` as a string ("0", "NaN") where the
    # spec says a number; tensorstore refuses the array, so it is read here instead.
    """
    from zarr.core.array import Array, AsyncArray
    from zarr.storage import LocalStore, StorePath

    v3 = folder / "zarr.json"
    meta = json.loads((v3 if v3.is_file() else folder / ".zarray").read_text())
    dtype = np.dtype(meta["data_type"] if v3.is_file() else meta["dtype"])
    meta["fill_value"] = _fixed_fill(meta, dtype)
    store = StorePath(LocalStore(folder, read_only=True))
    return Array(AsyncArray(metadata=meta, store_path=store))


Band = Callable[[int, int, int, int, int], np.ndarray]  # (t, c, z, y0, y1) -> rows


@dataclass
class StoredLevel:
    """One level as stored: its 5-D TCZYX shape and how to read a band of rows of a plane."""

    shape: tuple[int, int, int, int, int]
    stored: tuple[int, ...]  # the array's own shape, every axis
    dtype: np.dtype
    band: Band


def _zarr_band(array: Any, dims: tuple[int | None, ...]) -> Band:
    def band(t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        index: list[Any] = [0] * len(array.shape)
        for value, dim in zip((t, c, z, slice(y0, y1), slice(None)), dims, strict=True):
            if dim is not None:
                index[dim] = value
        return np.asarray(array[tuple(index)])

    return band


def _pyramid_band(pyramid: Pyramid, level: int) -> Band:
    def band(t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return pyramid.read(level, t, c, z, slice(y0, y1), slice(None))

    return band


def open_levels(folder: Path, datasets: list[Any], names: list[str]) -> list[StoredLevel]:
    """Return every level of the image at ``folder``, with tensorstore or else zarr-python."""
    relatives = [dataset.get("path") if isinstance(dataset, dict) else None for dataset in datasets]
    paths = [inside(folder, relative) for relative in relatives]  # SECURITY: before any read
    dims = tuple(names.index(axis) if axis in names else None for axis in AXES)
    try:
        pyramid = Pyramid(folder)
    except PyramidError:
        pyramid = None  # tensorstore refuses an array: try zarr-python before giving up
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ImportFailed(f"malformed multiscales metadata ({exc!r})") from None
    levels = []
    for index, (relative, path) in enumerate(zip(relatives, paths, strict=True)):
        if pyramid is not None:
            array: Any = pyramid.levels[index].array
            dtype = np.dtype(array.dtype.numpy_dtype)
            band = _pyramid_band(pyramid, index)
        else:
            try:
                array = open_with_zarr(path)
                dtype = np.dtype(array.dtype)
            except Exception:  # noqa: BLE001 - missing, malformed or unreadable metadata
                # SECURITY: name the level by its relative path only.
                raise ImportFailed(
                    f"level {relative!r} is not a Zarr array this server reads"
                ) from None
            band = _zarr_band(array, dims)
        stored = tuple(int(size) for size in array.shape)
        shape = tuple(stored[d] if d is not None else 1 for d in dims)
        levels.append(StoredLevel(shape, stored, dtype, band))  # type: ignore[arg-type]
    return levels


def own_levels(levels: list[StoredLevel]) -> list[StoredLevel]:
    """Return level 0 and the levels after it that are true reductions of it, finest first."""
    kept = levels[:1]
    for level in levels[1:]:
        previous = kept[-1]
        if (
            level.dtype != previous.dtype
            or level.shape[:3] != previous.shape[:3]
            or not 0 < level.shape[3] <= previous.shape[3]
            or not 0 < level.shape[4] <= previous.shape[4]
            or level.shape[3:] == previous.shape[3:]
        ):
            break  # the importer computes the levels from here on
        kept.append(level)
    return kept
