"""The images API under /api/v2, modelled on OpenStack Glance v2.

The API root a Glance client is pointed at is ``/api`` (``glance --os-image-url
http://host:4080/api``): the client asks for ``/versions`` and ``/v2/...`` below it, and
every link in a document (``self``, ``file``, ``next``) is relative to that root, as in Glance.
"""

from __future__ import annotations

import email.message
import re
from typing import Any
from urllib.parse import urlencode

import falcon

from coverslip.catalog.records import Image
from coverslip.errors import BadParameter, Conflict, Forbidden, NotFound
from coverslip.services import Services
from coverslip.uploads import Uploads
from coverslip.web import datasets_api, images_import
from coverslip.web.access import PRIVATE, Access, install_ids, parse_id
from coverslip.web.body import read_json, require_media_type
from coverslip.web.files import send_original
from coverslip.web.images_access import ImageAccess
from coverslip.web.images_schema import (
    PATCH_MEDIA_TYPE,
    VISIBILITIES,
    Schema,
    Versions,
    image_schema,
    images_schema,
    parse_create,
    parse_patch,
    render,
)
from coverslip.web.middleware import PublicURL

ROOT = "/api"
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
)
# NOTE: int() also reads "+7", " 7", "7_0" and fullwidth digits; a query takes ASCII only.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
# Fields an owner may change only while the image has no data yet, as in Glance.
QUEUED_ONLY = ("disk_format", "container_format")


def int_param(
    req: falcon.Request, name: str, default: int | None, low: int, high: int
) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise BadParameter(name, f"{raw!r} is not an integer")
    value = int(raw)
    if not low <= value <= high:
        raise BadParameter(name, f"{value} is not between {low} and {high}")
    return value


class ImageDocs:
    """Load what a document needs beyond the image record, and render documents."""

    def __init__(self, services: Services, access: ImageAccess) -> None:
        self.services = services
        self.access = access

    def image(self, req: falcon.Request, image_id: int) -> Image:
        """Return the image if the caller may see it, else raise NotFound."""
        image = self.services.catalog.get_image(image_id)
        self.access.check_read(req, image)
        return image

    def render(self, images: list[Image]) -> list[dict[str, Any]]:
        fields = self.services.catalog.api_fields([image.id for image in images])
        return [render(image, fields[image.id], self.access.visibility(image)) for image in images]

    def one(self, image_id: int, req: falcon.Request | None = None) -> dict[str, Any]:
        """Return the document of one image; with ``req``, with its fileset as the caller sees it."""
        doc = self.render([self.services.catalog.get_image(image_id)])[0]
        if req is not None:
            doc.update(self.fileset(req, image_id))
        return doc

    def fileset(self, req: falcon.Request, image_id: int) -> dict[str, Any]:
        """Return the fileset of an image and the ids of its images the caller may see.

        # PERF: only documents of one image carry these; a page of images would cost two
        # lookups per image.
        """
        catalog = self.services.catalog
        fileset_id = catalog.fileset_of(image_id)
        if fileset_id is None:
            return {"fileset": None, "fileset_images": None}
        ids = [i for i in catalog.get_fileset(fileset_id).image_ids if self._may_see(req, i)]
        return {"fileset": str(fileset_id), "fileset_images": [str(i) for i in ids]}

    def _may_see(self, req: falcon.Request, image_id: int) -> bool:
        try:
            return self.access.visible(req, self.services.catalog.get_image(image_id))
        except NotFound:
            return False


class ImageList:
    """`GET /api/v2/images` (filters, sorting, marker pagination) and `POST` (create)."""

    def __init__(
        self, services: Services, docs: ImageDocs, access: ImageAccess, public_url: PublicURL
    ) -> None:
        self.services = services
        self.docs = docs
        self.access = access
        self.public_url = public_url

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = int_param(req, "limit", DEFAULT_LIMIT, 0, 2**31) or 0
        limit = min(limit, MAX_LIMIT)
        marker = req.get_param("marker")
        marker_id = parse_id(marker) if marker is not None else None
        if marker is not None and marker_id is None:
            raise BadParameter("marker", f"{marker!r} is not an image id")
        group_ids, user_id = self.access.list_scope(req)
        images: list[Image] = []
        if limit:
            images = self.services.catalog.search_images(
                self._filters(req),
                self._sort(req),
                limit,
                marker=marker_id,
                group_ids=group_ids,
                or_owner_id=user_id,
            )
        visible = [image for image in images if self.access.visible(req, image)]
        params = [
            (k, v) for k, v in req.params.items() if k != "marker" and not isinstance(v, list)
        ]
        params += [(k, item) for k, v in req.params.items() if isinstance(v, list) for item in v]
        query = urlencode(params)
        body: dict[str, Any] = {
            "images": self.docs.render(visible),
            "first": "/v2/images" + (f"?{query}" if query else ""),
            "schema": "/v2/schemas/images",
        }
        if limit and len(images) == limit:
            body["next"] = "/v2/images?" + urlencode([*params, ("marker", str(images[-1].id))])
        resp.cache_control = PRIVATE
        resp.media = body

    def _filters(self, req: falcon.Request) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        for name in ("name", "status"):
            if req.get_param(name) is not None:
                filters[name] = req.get_param(name)
        if req.get_param("checksum"):
            filters["md5"] = req.get_param("checksum")
        if req.get_param("os_hash_value"):
            filters["sha512"] = req.get_param("os_hash_value")
        for name, key in (
            ("size_min", "size_min"),
            ("size_max", "size_max"),
            ("dataset", "dataset_id"),
            ("owner", "owner_id"),
        ):
            value = int_param(req, name, None, 0, 2**63 - 1)
            if value is not None:
                filters[key] = value
        tags = req.get_param_as_list("tag") or []
        if tags:
            filters["tags"] = tags
        visibility = req.get_param("visibility")
        if visibility is not None and visibility != "all":
            if visibility not in VISIBILITIES:
                raise BadParameter(
                    "visibility", f"{visibility!r} is not one of {', '.join(VISIBILITIES)}, all"
                )
            filters["in_group_ids"] = self.access.visibility_groups(visibility)
        hidden = req.get_param_as_bool("os_hidden")
        filters["os_hidden"] = bool(hidden)
        return filters

    @staticmethod
    def _sort(req: falcon.Request) -> list[tuple[str, bool]]:
        pairs: list[tuple[str, str]] = []
        if req.get_param("sort"):
            if req.get_param("sort_key") or req.get_param("sort_dir"):
                raise BadParameter("sort", "use sort, or sort_key and sort_dir, not both")
            for item in req.get_param("sort", default="").split(","):
                key, _, direction = item.strip().partition(":")
                pairs.append((key, direction or "desc"))
        else:
            keys = req.get_param_as_list("sort_key") or ["created_at"]
            dirs = req.get_param_as_list("sort_dir") or ["desc"]
            if len(dirs) not in (1, len(keys)):
                raise BadParameter("sort_dir", "give one direction, or one per sort_key")
            pairs = [(key, dirs[i] if len(dirs) > 1 else dirs[0]) for i, key in enumerate(keys)]
        for key, direction in pairs:
            if key not in SORT_KEYS:
                raise BadParameter("sort_key", f"{key!r} is not one of {', '.join(SORT_KEYS)}")
            if direction not in ("asc", "desc"):
                raise BadParameter("sort_dir", f"{direction!r} is not asc or desc")
        return [(key, direction == "desc") for key, direction in pairs]

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_media_type(req, "application/json")
        values = parse_create(read_json(req))
        user_id = self.access.user_id(req)
        group_id = self.access.new_image_group(req)
        dataset = values.pop("dataset", None)
        if dataset is not None:
            self.access.check_dataset(req, dataset)
        core = {name: values.pop(name) for name in ("visibility", "tags") if name in values}
        fields = {
            k: values.pop(k)
            for k in list(values)
            if k
            in ("disk_format", "container_format", "min_disk", "min_ram", "protected", "os_hidden")
        }
        name = values.pop("name", None) or ""
        description = values.pop("description", None) or ""
        catalog = self.services.catalog
        image_id = catalog.create_image(
            name, user_id, group_id, status="queued", description=description, properties=values
        )
        try:
            catalog.set_api_fields(
                image_id, home_group_id=group_id, tags=core.get("tags", []), **fields
            )
            if "visibility" in core:
                image = catalog.get_image(image_id)
                target = self.access.group_for(req, image, group_id, core["visibility"])
                if target != group_id:
                    catalog.update_image(image_id, group_id=target)
            if dataset is not None:
                catalog.add_to_dataset(dataset, [image_id])
        except BaseException:
            catalog.delete_image(image_id)
            raise
        resp.status = falcon.HTTP_201
        # SECURITY: built from the public base URL, never from the client's Host header.
        resp.location = f"{self.public_url.base(req)}{ROOT}/v2/images/{image_id}"
        resp.media = self.docs.one(image_id)


class ImageItem:
    """`GET`, `PATCH` and `DELETE /api/v2/images/{id}`."""

    def __init__(
        self, services: Services, docs: ImageDocs, access: ImageAccess, uploads: Uploads
    ) -> None:
        self.services = services
        self.docs = docs
        self.access = access
        self.uploads = uploads

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        resp.cache_control = PRIVATE
        resp.media = self.docs.one(self.docs.image(req, image_id).id, req)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        image = self.docs.image(req, image_id)
        require_media_type(req, PATCH_MEDIA_TYPE)
        changes = parse_patch(read_json(req))
        self.access.check_edit(req, image)
        catalog = self.services.catalog
        fields = catalog.api_fields([image.id])[image.id]
        properties = dict(image.properties)
        core: dict[str, Any] = {}
        api: dict[str, Any] = {}
        for op, name, value in changes:
            if name in QUEUED_ONLY and image.status != "queued":
                raise Forbidden(f"Attribute {name} can be only replaced for a queued image.")
            if name in ("name", "description", "visibility", "dataset"):
                core[name] = value
            elif name in (
                "disk_format",
                "container_format",
                "min_disk",
                "min_ram",
                "protected",
                "os_hidden",
                "tags",
            ):
                api[name] = value
            elif op == "add":
                properties[name] = value
            elif name not in properties:
                raise Conflict(f"Property {name} does not exist.")
            elif op == "remove":
                del properties[name]
            else:
                properties[name] = value
        updates: dict[str, Any] = {}
        for text in ("name", "description"):
            if text in core:
                updates[text] = core[text] or ""
        if properties != image.properties:
            updates["properties"] = properties
        if "visibility" in core:
            updates["group_id"] = self.access.group_for(
                req, image, fields.home_group_id, core["visibility"]
            )
        if "dataset" in core:
            self._move_dataset(req, image, core["dataset"])
        if updates:
            catalog.update_image(image.id, **updates)
        if api:
            catalog.set_api_fields(image.id, **api)
        resp.media = self.docs.one(image.id, req)

    def _move_dataset(self, req: falcon.Request, image: Image, dataset_id: int | None) -> None:
        catalog = self.services.catalog
        if dataset_id is not None:
            self.access.check_dataset(req, dataset_id)
        if image.dataset_ids and image.dataset_ids[0] != dataset_id:
            catalog.remove_from_dataset(image.dataset_ids[0], [image.id])
        if dataset_id is not None:
            catalog.add_to_dataset(dataset_id, [image.id])

    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        image = self.docs.image(req, image_id)
        self.access.check_delete(req, image)
        if self.services.catalog.api_fields([image.id])[image.id].protected:
            raise Forbidden(f"image {image.id} is protected and cannot be deleted")
        # A running upload notices the image is gone, answers 410 and removes its own bytes.
        self.services.delete_image(image.id, background=True)
        resp.status = falcon.HTTP_204


def filename_of(disposition: str | None) -> str | None:
    """Return the file name of a Content-Disposition header (``filename*`` or ``filename``)."""
    if not disposition:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = disposition
    name = message.get_filename()
    return name if isinstance(name, str) else None


class ImageFile:
    """`PUT /api/v2/images/{id}/file` (upload and import) and `GET` (download, Range)."""

    def __init__(
        self, services: Services, docs: ImageDocs, access: ImageAccess, uploads: Uploads
    ) -> None:
        self.services = services
        self.docs = docs
        self.access = access
        self.uploads = uploads

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        image = self.docs.image(req, image_id)
        self.access.check_edit(req, image)
        require_media_type(req, "application/octet-stream")
        duplicates = req.get_param("duplicates") or "allow"
        if duplicates not in ("allow", "refuse"):
            raise BadParameter("duplicates", f"{duplicates!r} is not allow or refuse")
        chunks, length, expected = images_import.body_of(req)
        job_id = self.uploads.upload(
            image.id,
            chunks,
            length,
            expected,
            user_id=self.access.user_id(req),
            filename=filename_of(req.get_header("Content-Disposition")),
            refuse_duplicates=duplicates == "refuse",
        )
        resp.status = falcon.HTTP_204
        # The import runs in a worker: GET /api/v2/tasks/{job} follows it.
        resp.set_header("Coverslip-Job", job_id)
        # A file of several images (scenes, series) made more images: say which.
        found = self.docs.fileset(req, image.id)
        if found["fileset"] is not None:
            resp.set_header("Coverslip-Fileset", found["fileset"])
            resp.set_header("Coverslip-Fileset-Images", ", ".join(found["fileset_images"]))

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        image = self.docs.image(req, image_id)
        self.access.check_download(req, image)
        services = self.services
        where = services.original(image) if image.status == "active" else None
        if where is None:
            resp.status = falcon.HTTP_204
            return
        send_original(req, resp, services, image, where)

    on_head = on_get


class ImageTag:
    """`PUT` and `DELETE /api/v2/images/{id}/tags/{tag}`."""

    def __init__(self, services: Services, docs: ImageDocs, access: ImageAccess) -> None:
        self.services = services
        self.docs = docs
        self.access = access

    def _tags(self, req: falcon.Request, image_id: int) -> tuple[Image, list[str]]:
        image = self.docs.image(req, image_id)
        self.access.check_edit(req, image)
        return image, list(self.services.catalog.api_fields([image.id])[image.id].tags)

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: int, tag: str) -> None:
        image, tags = self._tags(req, image_id)
        if not 0 < len(tag) <= 255:
            raise BadParameter("tag", "tags have 1 to 255 characters")
        if tag not in tags:
            self.services.catalog.set_api_fields(image.id, tags=[*tags, tag])
        resp.status = falcon.HTTP_204

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, image_id: int, tag: str
    ) -> None:
        image, tags = self._tags(req, image_id)
        if tag not in tags:
            raise NotFound(f"image {image.id} has no tag {tag!r}")
        self.services.catalog.set_api_fields(image.id, tags=[t for t in tags if t != tag])
        resp.status = falcon.HTTP_204


def add_routes(app: falcon.App, services: Services, access: Access, public_url: PublicURL) -> None:
    """Mount the images API at /api/v2 and its version document at /versions and /api/versions."""
    install_ids(app)
    image_access = ImageAccess(services, access)
    docs = ImageDocs(services, image_access)
    uploads = Uploads(services)
    versions = Versions(ROOT)
    app.add_route("/versions", versions)
    app.add_route(f"{ROOT}/versions", versions)
    app.add_route(f"{ROOT}", versions)
    base = f"{ROOT}/v2"
    app.add_route(f"{base}/schemas/image", Schema(image_schema()))
    app.add_route(f"{base}/schemas/images", Schema(images_schema()))
    for name, schema in images_import.SCHEMAS.items():
        app.add_route(f"{base}/schemas/{name}", Schema(schema))
    app.add_route(f"{base}/images", ImageList(services, docs, image_access, public_url))
    app.add_route(
        f"{base}/images/{{image_id:id}}", ImageItem(services, docs, image_access, uploads)
    )
    app.add_route(
        f"{base}/images/{{image_id:id}}/file", ImageFile(services, docs, image_access, uploads)
    )
    app.add_route(
        f"{base}/images/{{image_id:id}}/tags/{{tag}}", ImageTag(services, docs, image_access)
    )
    images_import.add_routes(app, base, services, docs, image_access, uploads)
    datasets_api.add_routes(app, base, services, image_access)
