"""Staged import in the images API: stage, import (glance-direct, web-download), tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import falcon

from coverslip.catalog.records import Task
from coverslip.errors import BadParameter
from coverslip.services import Services
from coverslip.uploads import Uploads
from coverslip.web.body import body_chunks, declared_length, read_json, require_media_type
from coverslip.web.images_access import ImageAccess

if TYPE_CHECKING:
    from coverslip.web.images_api import ImageDocs

IMPORT_METHODS = ("glance-direct", "web-download")

# Schemas glanceclient caches on first use; it needs only their names and properties.
SCHEMAS: dict[str, dict[str, Any]] = {
    "metadefs/namespace": {"name": "namespace", "properties": {}, "additionalProperties": False},
    "metadefs/resource_type": {
        "name": "resource_type_association",
        "properties": {},
        "additionalProperties": False,
    },
    "task": {
        "name": "task",
        "properties": {
            name: {"type": ["null", "string"]}
            for name in ("id", "type", "status", "message", "owner", "image_id", "user_id")
        },
    },
}


def body_of(req: falcon.Request) -> tuple[Iterator[bytes], int | None, int | None]:
    """Return (body blocks, Content-Length, x-openstack-image-size) of an upload request."""
    raw = req.get_header("x-openstack-image-size")
    expected = None
    if raw is not None:
        if not raw.strip().isdigit():
            raise BadParameter("x-openstack-image-size", f"{raw!r} is not a size in bytes")
        expected = int(raw)
    # NOTE: body_chunks answers 411 here, before the image changes status.
    return body_chunks(req.env), declared_length(req.env), expected


def task_json(task: Task) -> dict[str, Any]:
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "id": task.id,
        "type": task.type,
        "status": task.status,
        "message": task.message,
        "input": task.input,
        "result": None,
        "owner": None if task.user_id is None else str(task.user_id),
        "user_id": None if task.user_id is None else str(task.user_id),
        "image_id": str(task.image_id),
        "request_id": "",
        "created_at": task.created.strftime(stamp),
        "updated_at": task.updated.strftime(stamp),
        "expires_at": None,
    }


class ImageStage:
    """`PUT /api/v2/images/{id}/stage`: keep the bytes in staging for a later import."""

    def __init__(self, docs: ImageDocs, access: ImageAccess, uploads: Uploads) -> None:
        self.docs = docs
        self.access = access
        self.uploads = uploads

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        image = self.docs.image(req, image_id)
        self.access.check_edit(req, image)
        require_media_type(req, "application/octet-stream")
        chunks, length, expected = body_of(req)
        self.uploads.stage(image.id, chunks, length, expected)
        resp.status = falcon.HTTP_204


class ImageImport:
    """`POST /api/v2/images/{id}/import`: import staged bytes, or download them; 202."""

    def __init__(self, docs: ImageDocs, access: ImageAccess, uploads: Uploads) -> None:
        self.docs = docs
        self.access = access
        self.uploads = uploads

    def on_post(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        image = self.docs.image(req, image_id)
        self.access.check_edit(req, image)
        require_media_type(req, "application/json")
        document = read_json(req)
        method = document.get("method") if isinstance(document, dict) else None
        if not isinstance(method, dict) or not isinstance(method.get("name"), str):
            raise BadParameter(
                "method", 'send {"method": {"name": "glance-direct"}} or web-download'
            )
        uri = method.get("uri")
        if uri is not None and not isinstance(uri, str):
            raise BadParameter("method.uri", "a URL")
        if method["name"] not in IMPORT_METHODS:
            raise BadParameter(
                "method.name", f"{method['name']!r} is not one of {', '.join(IMPORT_METHODS)}"
            )
        task_id = self.uploads.start_import(image.id, method["name"], uri, self.access.user_id(req))
        resp.status = falcon.HTTP_202
        resp.set_header("OpenStack-image-import-task", task_id)


class ImportInfo:
    """`GET /api/v2/info/import`: the import methods offered."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "import-methods": {
                "description": "Import methods available.",
                "type": "array",
                "value": list(IMPORT_METHODS),
            }
        }


class ImageTasks:
    """`GET /api/v2/images/{id}/tasks`: the image's import tasks, newest first."""

    def __init__(self, services: Services, docs: ImageDocs) -> None:
        self.services = services
        self.docs = docs

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        image = self.docs.image(req, image_id)
        resp.media = {
            "tasks": [task_json(task) for task in self.services.catalog.list_tasks(image.id)]
        }


def add_routes(
    app: falcon.App,
    base: str,
    services: Services,
    docs: ImageDocs,
    access: ImageAccess,
    uploads: Uploads,
) -> None:
    """Mount stage, import, import info and tasks below ``base``."""
    app.add_route(f"{base}/images/{{image_id:id}}/stage", ImageStage(docs, access, uploads))
    app.add_route(f"{base}/images/{{image_id:id}}/import", ImageImport(docs, access, uploads))
    app.add_route(f"{base}/images/{{image_id:id}}/tasks", ImageTasks(services, docs))
    app.add_route(f"{base}/info/import", ImportInfo())
