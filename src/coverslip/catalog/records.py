"""Plain records the catalog hands out: what the rest of the code knows of an image."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Ids are positive 64-bit integers (SQLite's INTEGER, PostgreSQL's bigint); a larger number
# names nothing (and would overflow the database driver).
MAX_ID = 2**63 - 1

# "uploading": bytes staged through the images API, waiting for an import call.
STATUSES = ("queued", "saving", "uploading", "importing", "active", "killed")


@dataclass(frozen=True)
class Channel:
    """One channel of an image, with its statistics and default window."""

    index: int
    name: str
    color: str  # RRGGBB
    min: float
    max: float
    window_start: float
    window_end: float
    emission_wave: float | None = None


@dataclass(frozen=True)
class Image:
    """An image as the catalog knows it."""

    id: int
    name: str
    status: str
    owner_id: int
    group_id: int
    created: datetime
    updated: datetime
    format: str
    size_t: int
    size_c: int
    size_z: int
    size_y: int
    size_x: int
    pixel_type: str
    physical_size_x: float | None
    physical_size_y: float | None
    physical_size_z: float | None
    levels: int
    tile_size: int
    pyramid_path: str | None
    original_name: str
    original_size: int | None
    sha512: str | None
    md5: str | None
    message: str
    rdef_version: int = 0
    render_tag: str = ""  # random, part of every render ETag
    properties: dict[str, Any] = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()
    dataset_ids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready description of the image."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "owner_id": self.owner_id,
            "group_id": self.group_id,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "format": self.format,
            "size": {
                "t": self.size_t,
                "c": self.size_c,
                "z": self.size_z,
                "y": self.size_y,
                "x": self.size_x,
            },
            "pixel_type": self.pixel_type,
            "physical_size": {
                "x": self.physical_size_x,
                "y": self.physical_size_y,
                "z": self.physical_size_z,
            },
            "levels": self.levels,
            "tile_size": self.tile_size,
            "original_name": self.original_name,
            "original_size": self.original_size,
            "sha512": self.sha512,
            "md5": self.md5,
            "message": self.message,
            "datasets": list(self.dataset_ids),
            "channels": [
                {
                    "index": ch.index,
                    "name": ch.name,
                    "color": ch.color,
                    "min": ch.min,
                    "max": ch.max,
                    "window": {"start": ch.window_start, "end": ch.window_end},
                    "emission_wave": ch.emission_wave,
                }
                for ch in self.channels
            ],
        }


@dataclass(frozen=True)
class Dataset:
    """A named set of images."""

    id: int
    name: str
    description: str
    owner_id: int
    group_id: int
    created: datetime
    image_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "owner_id": self.owner_id,
            "group_id": self.group_id,
            "created": self.created.isoformat(),
            "image_count": self.image_count,
        }


@dataclass(frozen=True)
class ApiFields:
    """What the images API stores about an image beyond the catalog's own columns."""

    disk_format: str | None = None
    container_format: str | None = None
    min_disk: int = 0
    min_ram: int = 0
    protected: bool = False
    os_hidden: bool = False
    home_group_id: int | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """An import task of the images API."""

    id: str
    image_id: int
    type: str
    status: str  # pending | processing | success | failure
    message: str
    input: dict[str, Any]
    user_id: int | None
    created: datetime
    updated: datetime
