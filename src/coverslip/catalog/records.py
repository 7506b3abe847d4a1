"""Plain records the catalog hands out: what the rest of the code knows of an image."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coverslip.model import Channel, Image

__all__ = ["MAX_ID", "STATUSES", "ApiFields", "Channel", "Dataset", "Image", "Task"]

# Ids are positive 64-bit integers (SQLite's INTEGER, PostgreSQL's bigint); a larger number
# names nothing (and would overflow the database driver).
MAX_ID = 2**63 - 1

# "uploading": bytes staged through the images API, waiting for an import call.
STATUSES = ("queued", "saving", "uploading", "importing", "active", "killed")


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
