"""The image record every layer shares: plain data, no database (pixels and render import it).

The catalog builds these from its rows (``coverslip.catalog`` re-exports them); importing this
module loads neither SQLAlchemy nor Falcon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()
    dataset_ids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready description of the image."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
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
