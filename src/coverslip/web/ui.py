"""The web UI: server-rendered pages (Jinja2) with plain ES modules for the interactive parts."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import falcon
import jinja2

from coverslip.catalog.filesets import Plate
from coverslip.catalog.records import Dataset, Project
from coverslip.errors import BadParameter, NotFound
from coverslip.model import Image
from coverslip.services import Services
from coverslip.web.access import PRIVATE, Access, install_ids

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 120


class Pages:
    """Render templates with what every page shows: prefix, the caller, CSRF token, groups."""

    def __init__(self, services: Services, access: Access) -> None:
        self.services = services
        self.access = access
        self.prefix = services.settings["web.prefix"].rstrip("/")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            auto_reload=False,
        )

    def render(
        self, req: falcon.Request, resp: falcon.Response, template: str, **values: Any
    ) -> None:
        caller = self.access.caller(req)
        user = caller.user
        context = {
            "prefix": self.prefix,
            "user": user,
            "csrf": caller.csrf_token,
            "groups": caller.groups,
            "current_group": self.access.current_group(req),
            "request_path": req.relative_uri,
            **values,
        }
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = PRIVATE
        resp.text = self.env.get_template(template).render(**context)

    def viewable(self, req: falcon.Request, image_id: int) -> Image | None:
        """Return the image if the caller may see it and it is active, else None (a 404)."""
        try:
            image = self.services.metadata.image(image_id)
        except NotFound:
            return None
        if not self.access.visible(req, image) or image.status != "active":
            return None
        return image

    def not_found(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_404
        self.render(
            req,
            resp,
            "error.html",
            title="Not found",
            message="There is nothing here, or you may not see it.",
        )

    def projects(self, req: falcon.Request, **filters: Any) -> list[Project]:
        """Return the projects the caller may see (in the group they chose), each with only
        the datasets they may see."""
        access = self.access
        catalog, scope = self.services.catalog, access.listing(req)
        shown = {dataset.id for dataset in catalog.list_datasets(**scope)}
        return [
            replace(project, dataset_ids=tuple(d for d in project.dataset_ids if d in shown))
            for project in catalog.list_projects(**scope, **filters)
        ]

    def plates(self, req: falcon.Request) -> list[Plate]:
        """Return the plates the caller may see, in the group they chose."""
        caller, group = self.access.caller(req), self.access.current_group(req)
        return [
            plate
            for plate in self.services.catalog.list_plates()
            if self.services.auth.can(caller, "read", plate)
            and (group is None or plate.group_id == group)
        ]


class Index:
    """`/`: OMERO.webclient's tree, flattened into cards: the projects the caller may see,
    the datasets in none of them, the plates, the images in no dataset, and all images;
    every count only what the caller may see."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        catalog, scope = self.pages.services.catalog, self.pages.access.listing(req)
        projects = self.pages.projects(req)
        in_projects = {dataset_id for project in projects for dataset_id in project.dataset_ids}
        datasets = catalog.list_datasets(**scope, shown=True)
        self.pages.render(
            req,
            resp,
            "index.html",
            projects=projects,
            datasets=[dataset for dataset in datasets if dataset.id not in in_projects],
            plates=self.pages.plates(req),
            everything=catalog.count_images(status="active", **scope),
            loose=catalog.count_images(status="active", in_no_dataset=True, **scope),
        )


class ProjectPage:
    """`/projects/{id}`: the datasets of a project that the caller may see."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: int) -> None:
        project = next((p for p in self.pages.projects(req) if p.id == project_id), None)
        if project is None:
            self.pages.not_found(req, resp)
            return
        catalog, scope = self.pages.services.catalog, self.pages.access.listing(req)
        inside = set(project.dataset_ids)
        datasets = [d for d in catalog.list_datasets(**scope, shown=True) if d.id in inside]
        self.pages.render(req, resp, "project.html", project=project, datasets=datasets)


class PlatePage:
    """`/plates/{id}`: the plate's wells as a grid of thumbnails of one field, built in the
    browser from `/webgateway/plate/{id}/{field}/`."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, plate_id: int) -> None:
        if not any(plate.id == plate_id for plate in self.pages.plates(req)):
            self.pages.not_found(req, resp)
            return
        plate = self.pages.services.catalog.get_plate(plate_id)
        fields = max((len(well.images) for well in plate.wells), default=0)
        self.pages.render(req, resp, "plate.html", plate=plate, fields=max(fields, 1))


class DatasetPage:
    """`/datasets/{id}`: a paged thumbnail grid with a name filter and sorting; dataset 0 is
    every image the caller may see, `/datasets/none` the images in no dataset."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, dataset_id: int) -> None:
        if dataset_id == 0:
            self.grid(req, resp, listing("All images"), {})
            return
        try:
            dataset: Dataset | None = self.pages.services.catalog.get_dataset(dataset_id)
        except NotFound:
            dataset = None
        if dataset is None or not self.pages.access.can_see_dataset(req, dataset):
            self.pages.not_found(req, resp)
            return
        # The project it was reached from (?project=), else the first one it is in.
        wanted = req.get_param_as_int("project")
        projects = [p for p in self.pages.projects(req) if dataset_id in p.dataset_ids]
        project = next((p for p in projects if p.id == wanted), projects[0] if projects else None)
        self.grid(req, resp, dataset, {"dataset_id": dataset_id}, project=project)

    def on_get_none(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.grid(req, resp, listing("Images in no dataset"), {"in_no_dataset": True})

    def grid(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        dataset: Dataset,
        which: dict[str, Any],
        **values: Any,
    ) -> None:
        """Render a page of the images ``which`` selects (catalog filters) that the caller
        may see, filtered by ``?q=`` in their names unless ``which`` is a search already."""
        services, access = self.pages.services, self.pages.access
        # The caller's own images are theirs to see in any group (a private group's members).
        scope = {**access.listing(req), **which}
        q = (req.get_param("q") or "").strip()
        name_contains = None if "text_contains" in which else q
        sort = req.get_param("sort") or "name"
        if sort not in ("name", "created"):
            sort = "name"
        total = services.catalog.count_images(status="active", name_contains=name_contains, **scope)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = min(pages, max(1, req.get_param_as_int("page") or 1))
        images = services.catalog.list_images(
            status="active",
            name_contains=name_contains,
            sort=sort,
            descending=sort == "created",
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
            **scope,
        )
        images = [image for image in images if access.visible(req, image)]

        def query_for(number: int) -> str:
            return urlencode({k: v for k, v in (("q", q), ("sort", sort), ("page", number)) if v})

        self.pages.render(
            req,
            resp,
            "dataset.html",
            dataset=dataset,
            images=images,
            total=total,
            page=page,
            pages=pages,
            q=q,
            sort=sort,
            query_for=query_for,
            thumb_size=services.settings["thumbs.default_size"],
            batch=services.settings["thumbs.batch_max"],
            **{"project": None, "searching": False, **values},
        )


class SearchPage:
    """`/search?q=`: the projects, datasets and images whose name or description contains
    the text, and the plates whose name does, of what the caller may see."""

    def __init__(self, pages: Pages, datasets: DatasetPage) -> None:
        self.pages = pages
        self.datasets = datasets

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = (req.get_param("q") or "").strip()
        catalog, scope = self.pages.services.catalog, self.pages.access.listing(req)
        found = {
            "projects": self.pages.projects(req, text_contains=q) if q else [],
            "found_datasets": catalog.list_datasets(**scope, shown=True, text_contains=q)
            if q
            else [],
            "found_plates": [p for p in self.pages.plates(req) if q.casefold() in p.name.casefold()]
            if q
            else [],
        }
        # An empty search finds nothing rather than everything.
        which = {"text_contains": q} if q else {"dataset_id": -1}
        self.datasets.grid(
            req, resp, listing("Search"), which, searching=True, search_text=q, **found
        )


class ImagePage:
    """`/images/{id}`: the viewer."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        access = self.pages.access
        image = self.pages.viewable(req, image_id)
        if image is None:
            self.pages.not_found(req, resp)
            return
        dataset, before, after = self._neighbours(req, image)
        self.pages.render(
            req,
            resp,
            "image.html",
            image=image,
            can_save=access.can_annotate(req, image),
            can_download=access.can_download(req, image),
            can_edit=access.can_edit(req, image),
            tags=self.pages.services.catalog.api_fields([image.id])[image.id].tags,
            dataset=dataset,
            previous=before,
            next=after,
        )

    def _neighbours(
        self, req: falcon.Request, image: Image
    ) -> tuple[Dataset | None, Image | None, Image | None]:
        """Return the dataset the viewer came from (``?dataset=``, else the image's first one
        the caller may see) and the images before and after this one there, as its grid lists
        them (by name, only what the caller may see)."""
        services, access = self.pages.services, self.pages.access
        wanted = req.get_param_as_int("dataset")
        candidates = [wanted] if wanted in image.dataset_ids else list(image.dataset_ids)
        for dataset_id in candidates:
            try:
                dataset = services.catalog.get_dataset(dataset_id)
            except NotFound:
                continue
            if not access.can_see_dataset(req, dataset):
                continue
            scope = {**access.listing(req), "dataset_id": dataset_id}
            listed = services.catalog.list_images(status="active", sort="name", **scope)
            shown = [found for found in listed if access.visible(req, found)]
            at = next((n for n, found in enumerate(shown) if found.id == image.id), None)
            if at is None:
                continue
            before = shown[at - 1] if at > 0 else None
            after = shown[at + 1] if at + 1 < len(shown) else None
            return dataset, before, after
        return None, None, None


# Images one compare page shows side by side.
MAX_COMPARED = 4


class ComparePage:
    """`/compare?id=1&id=2`: two to four images side by side, zoom, pan, Z and T in step."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ids = req.get_param_as_list("id", transform=int, default=[]) or []
        found = [self.pages.viewable(req, image_id) for image_id in ids[:MAX_COMPARED]]
        images = [image for image in found if image is not None]
        if len(images) < len(found):
            self.pages.not_found(req, resp)
            return
        if len(images) < 2:
            raise BadParameter("id", "name two to four images to compare: ?id=1&id=2")
        self.pages.render(
            req,
            resp,
            "compare.html",
            images=images,
            size_z=min(image.size_z for image in images),
            size_t=min(image.size_t for image in images),
        )


class UploadPage:
    """`/upload`: drag and drop files into the images API (signed-in users only)."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.pages.access.user_id(req) is None:
            raise falcon.HTTPSeeOther(
                f"{self.pages.prefix}/login?{urlencode({'next': req.relative_uri})}"
            )
        self.pages.render(req, resp, "upload.html")


class Favicon:
    """`/favicon.ico`, which browsers ask for on every site (read once)."""

    def __init__(self) -> None:
        self.data = (HERE / "static" / "favicon.ico").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.data
        resp.content_type = "image/vnd.microsoft.icon"
        resp.cache_control = ["public", "max-age=86400"]


def listing(name: str) -> Dataset:
    """Return a page's stand-in dataset for a list that is no dataset ("All images")."""
    from datetime import UTC, datetime

    return Dataset(0, name, "", 0, 0, datetime.fromtimestamp(0, UTC), 0)


def add_routes(app: falcon.App, services: Services, access: Access) -> Pages:
    """Mount the pages and the static files."""
    install_ids(app)
    pages = Pages(services, access)
    app.add_route("/", Index(pages))
    app.add_route("/projects/{project_id:id}", ProjectPage(pages))
    datasets = DatasetPage(pages)
    app.add_route("/datasets/{dataset_id:id}", datasets)
    app.add_route("/datasets/none", datasets, suffix="none")
    app.add_route("/search", SearchPage(pages, datasets))
    app.add_route("/plates/{plate_id:id}", PlatePage(pages))
    app.add_route("/images/{image_id:id}", ImagePage(pages))
    app.add_route("/compare", ComparePage(pages))
    app.add_route("/upload", UploadPage(pages))
    app.add_route("/favicon.ico", Favicon())
    app.add_static_route("/static", str(HERE / "static"))
    return pages
