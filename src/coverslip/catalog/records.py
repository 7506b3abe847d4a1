"""Plain records the catalog hands out: what the rest of the code knows of an image."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coverslip.model import Channel, Image

__all__ = ["MAX_ID", "STATUSES", "ApiFields", "Channel", "Dataset", "Image", "Job", "Project"]

# Ids are positive 64-bit integers (SQLite's INTEGER, PostgreSQL's bigint); a larger number
# names nothing (and would overflow the database driver).
MAX_ID = 2**63 - 1

# "receiving": an upload request is still bringing the job's bytes.
LIVE_JOB_STATES = ("receiving", "queued", "running")
JOB_STATES = (*LIVE_JOB_STATES, "succeeded", "failed", "cancelled")
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
class Project:
    """A named set of datasets (a dataset may be in several projects, or in none)."""

    id: int
    name: str
    description: str
    owner_id: int
    group_id: int
    created: datetime
    dataset_ids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "owner_id": self.owner_id,
            "group_id": self.group_id,
            "created": self.created.isoformat(),
            "datasets": list(self.dataset_ids),
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
class Job:
    """A background job: what it does, where it stands, and how far it got."""

    id: str
    kind: str  # import_upload | import_staged | import_web | delete_files
    state: str  # receiving | queued | running | succeeded | failed | cancelled
    image_id: int | None
    images: tuple[int, ...]
    user_id: int | None
    input: dict[str, Any]
    message: str
    attempts: int
    max_attempts: int
    claim: str | None
    worker: str
    lease_until: datetime | None
    cancel: bool
    done: int
    total: int
    unit: str
    request_id: str
    created: datetime
    updated: datetime
    started: datetime | None
    finished: datetime | None

    @property
    def live(self) -> bool:
        """Tell whether the job may still change: bytes arriving, waiting, or running."""
        return self.state in LIVE_JOB_STATES
