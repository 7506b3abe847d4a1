"""Staged import in the images API: stage, import (glance-direct, web-download), tasks.

Glance's tasks are Coverslip's background jobs: an upload's import, a staged import, a
web-download and deleting an image's files each show as one, with progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import falcon

from coverslip.catalog.records import JOB_STATES, Job
from coverslip.errors import BadParameter, NotFound
from coverslip.jobs import progress_of
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


# Glance's task statuses for the states of a job.
GLANCE_STATUS = {
    "receiving": "pending",
    "queued": "pending",
    "running": "processing",
    "succeeded": "success",
    "failed": "failure",
    "cancelled": "failure",
}
# Glance's type for the kinds of job it knows; others keep their own name.
GLANCE_TYPE = {"import_staged": "api_image_import", "import_web": "api_image_import"}


def task_json(job: Job) -> dict[str, Any]:
    """Return a job as a Glance task, with Coverslip's state, attempts and progress beside."""
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    owner = None if job.user_id is None else str(job.user_id)
    return {
        "id": job.id,
        "type": GLANCE_TYPE.get(job.kind, job.kind),
        "status": GLANCE_STATUS[job.state],
        "message": job.message,
        "input": job.input if job.kind in GLANCE_TYPE else {},
        "result": {"image_id": str(job.image_id)} if job.state == "succeeded" else None,
        "owner": owner,
        "user_id": owner,
        "image_id": None if job.image_id is None else str(job.image_id),
        "request_id": job.request_id,
        "created_at": job.created.strftime(stamp),
        "updated_at": job.updated.strftime(stamp),
        "expires_at": None,
        "self": f"/v2/tasks/{job.id}",
        "schema": "/v2/schemas/task",
        "coverslip": {
            "kind": job.kind,
            "state": job.state,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "images": [str(i) for i in job.images],
            "progress": progress_of(job),
        },
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
        jobs = self.services.catalog.list_jobs(image_id=image.id)
        resp.media = {"tasks": [task_json(job) for job in jobs]}


class Tasks:
    """`GET /api/v2/tasks` and `/api/v2/tasks/{id}`: the caller's jobs (everyone's for admins).

    A job of someone else answers as one that does not exist.
    """

    def __init__(self, services: Services, access: ImageAccess) -> None:
        self.catalog = services.catalog
        self.access = access

    def _scope(self, req: falcon.Request) -> int | None:
        who = self.access.caller(req)
        return None if who.is_admin else self.access.user_id(req)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user_id = self._scope(req)
        status = req.get_param("status")
        states = None
        if status is not None:
            states = [s for s in JOB_STATES if GLANCE_STATUS[s] == status or s == status]
            if not states:
                raise BadParameter("status", f"{status!r} is not a task status or job state")
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 100
        jobs = self.catalog.list_jobs(states=states, user_id=user_id, limit=limit)
        resp.media = {
            "tasks": [task_json(job) for job in jobs],
            "first": "/v2/tasks",
            "schema": "/v2/schemas/tasks",
        }

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        user_id = self._scope(req)
        try:
            job = self.catalog.get_job(task_id)
        except NotFound:
            job = None
        if job is None or (user_id is not None and job.user_id != user_id):
            raise NotFound(f"task {task_id} does not exist")
        resp.media = task_json(job)


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
    tasks = Tasks(services, access)
    app.add_route(f"{base}/tasks", tasks)
    app.add_route(f"{base}/tasks/{{task_id}}", tasks, suffix="one")
    app.add_route(f"{base}/info/import", ImportInfo())
