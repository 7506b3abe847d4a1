"""OME-Zarr HCS plates (0.4 and 0.5): a plate of wells, each field of a well an image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coverslip.errors import ImportFailed
from coverslip.formats import Fileset, PlateMeta, Reader, WellMeta
from coverslip.formats.omezarr import opener
from coverslip.formats.omezarr_arrays import attributes, inside, is_group


@dataclass
class Field:
    """One field of a well: its group and the acquisition it belongs to, if the plate says."""

    folder: Path
    acquisition: str | None = None


def _names(plate: dict[str, Any], key: str) -> list[str]:
    listed = plate.get(key)
    if not isinstance(listed, list) or not listed:
        raise ImportFailed(f"the plate metadata lists no {key}")
    names = [str(item.get("name", "")) if isinstance(item, dict) else "" for item in listed]
    if not all(names):
        raise ImportFailed(f"the plate metadata has {key} without a name")
    return names


def _acquisitions(plate: dict[str, Any]) -> dict[Any, str]:
    """Return the name of every acquisition (a measurement run) of the plate, by its id."""
    found = {}
    for acquisition in plate.get("acquisitions") or []:
        if isinstance(acquisition, dict) and "id" in acquisition:
            found[acquisition["id"]] = str(acquisition.get("name") or acquisition["id"])
    return found


def _fields(
    folder: Path, field_count: int, acquisitions: dict[Any, str], where: str
) -> list[Field]:
    """Return the fields of the well at ``folder``, in the order its metadata lists them."""
    well = attributes(folder).get("well") if is_group(folder) else None
    if well is None:
        # NOTE: a well without metadata (a metadata-only copy, or a writer that left it out)
        # is taken to hold the plate's field_count fields 0, 1, …; opening one that is not
        # there fails with its name.
        return [Field(inside(folder, str(index))) for index in range(field_count)]
    images = well.get("images") if isinstance(well, dict) else None
    if not isinstance(images, list):
        raise ImportFailed(f"{where}: the well metadata lists no images")
    fields = []
    for image in images:
        if not isinstance(image, dict):
            raise ImportFailed(f"{where}: a field of the well metadata is not an object")
        # SECURITY: a field path names a folder inside this well, never beside or above it.
        fields.append(
            Field(inside(folder, image.get("path")), acquisitions.get(image.get("acquisition")))
        )
    return fields


def _position(well: dict[str, Any], rows: list[str], columns: list[str]) -> tuple[int, int]:
    """Return (row, column) of a well: its indices, or (0.3 and before) its path's names."""
    row, column = well.get("rowIndex"), well.get("columnIndex")
    parts = str(well.get("path", "")).split("/")
    if row is None and len(parts) == 2 and parts[0] in rows:
        row = rows.index(parts[0])
    if column is None and len(parts) == 2 and parts[1] in columns:
        column = columns.index(parts[1])
    if not (isinstance(row, int) and 0 <= row < len(rows)):
        raise ImportFailed(
            f"well {well.get('path')!r}: row index {row!r} is not one of the plate's"
        )
    if not (isinstance(column, int) and 0 <= column < len(columns)):
        raise ImportFailed(
            f"well {well.get('path')!r}: column index {column!r} is not one of the plate's"
        )
    return row, column


def plate_fileset(root: Path, plate: Any, fmt: str) -> Fileset:
    """Return the fileset of a plate: every field of every well is an image."""
    if not isinstance(plate, dict):
        raise ImportFailed("the plate metadata is not an object")
    rows, columns = _names(plate, "rows"), _names(plate, "columns")
    wells = plate.get("wells")
    if not isinstance(wells, list) or not all(isinstance(well, dict) for well in wells):
        raise ImportFailed("the plate metadata lists no wells")
    field_count = plate.get("field_count")
    field_count = field_count if isinstance(field_count, int) and field_count > 0 else 1
    acquisitions = _acquisitions(plate)
    name = str(plate.get("name") or root.name.removesuffix(".zarr").removesuffix(".ome"))
    placed: dict[tuple[int, int], Path] = {}
    for well in wells:
        # SECURITY: a well path names a folder inside the plate, never beside or above it.
        folder = inside(root, well.get("path"))
        position = _position(well, rows, columns)
        if position in placed:
            raise ImportFailed(
                f"two wells of the plate are at {rows[position[0]]}{columns[position[1]]}"
            )
        placed[position] = folder
    meta = PlateMeta(
        name=name, rows=rows, columns=columns, acquisitions=list(acquisitions.values())
    )
    images: list[Callable[[], Reader]] = []
    for (row, column), folder in sorted(placed.items()):
        well_name = f"{rows[row]}{columns[column]}"
        indices = []
        for number, field in enumerate(_fields(folder, field_count, acquisitions, well_name)):
            series = f"{well_name} field {number}"
            original = {"Plate": name, "Well": well_name, "Field": str(number)}
            if field.acquisition is not None:
                original["Acquisition"] = field.acquisition
            indices.append(len(images))
            images.append(
                opener(
                    field.folder,
                    series,
                    name=f"{name} {series}",
                    series=series,
                    original_metadata=original,
                )
            )
        meta.wells.append(WellMeta(row=row, column=column, fields=indices))
    return Fileset(format=fmt, files=[root], images=images, plate=meta)


def well_fileset(root: Path, well: Any, fmt: str) -> Fileset:
    """Return the fileset of one well imported on its own: every field is an image."""
    if not isinstance(well, dict):
        raise ImportFailed("the well metadata is not an object")
    base = root.name.removesuffix(".zarr").removesuffix(".ome")
    images: list[Callable[[], Reader]] = []
    for number, field in enumerate(_fields(root, 1, {}, base)):
        series = f"field {number}"
        images.append(opener(field.folder, series, name=f"{base} {series}", series=series))
    return Fileset(format=fmt, files=[root], images=images)
