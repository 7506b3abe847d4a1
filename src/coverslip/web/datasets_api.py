"""`/api/v2/datasets` and `/api/v2/projects`: OMERO's hierarchy above images.

Glance has neither; these are Coverslip's own small resources, in the images API's style
(JSON, the same sign-in, errors and CSRF). A dataset or project is created in the group the
caller's new images go into, so what they upload next can be filed in it. A dataset is put in
a project with `PUT /api/v2/projects/{id}/datasets/{dataset}` and taken out with `DELETE`, as
Glance tags an image.
"""

from __future__ import annotations

from typing import Any

import falcon

from coverslip.catalog.records import Dataset, Project
from coverslip.errors import BadParameter, Forbidden, NotFound
from coverslip.services import Services
from coverslip.web.access import PRIVATE, Access
from coverslip.web.body import read_json, require_media_type
from coverslip.web.images_access import ImageAccess

NAME_MAX = 255


class DatasetList:
    """GET: the datasets the caller may see, each saying whether they may add images to it;
    POST `{"name": …, "description": …}`: a new dataset of the caller's (201)."""

    def __init__(self, services: Services, image_access: ImageAccess) -> None:
        self.catalog = services.catalog
        self.access = image_access.access
        self.image_access = image_access

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        datasets = self.catalog.list_datasets(**self.access.listing(req), shown=True)
        resp.media = {"datasets": [self._doc(req, dataset) for dataset in datasets]}
        resp.cache_control = PRIVATE

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        name, description = named_body(req, "dataset")
        group_id = self.image_access.new_image_group(req)
        user_id = self.image_access.user_id(req)
        dataset_id = self.catalog.create_dataset(name, user_id, group_id, description)
        resp.status = falcon.HTTP_201
        resp.media = self._doc(req, self.catalog.get_dataset(dataset_id))

    def _doc(self, req: falcon.Request, dataset: Dataset) -> dict[str, Any]:
        projects = self.catalog.project_ids_of([dataset.id]).get(dataset.id, [])
        return {
            **dataset.to_json(),
            "projects": projects,
            "can_add": self.access.can_fill_dataset(req, dataset),
        }


class ProjectList:
    """GET: the projects the caller may see, each with its datasets and whether they may add
    to it; POST `{"name": …, "description": …}`: a new project of the caller's (201)."""

    def __init__(self, services: Services, image_access: ImageAccess) -> None:
        self.catalog = services.catalog
        self.access = image_access.access
        self.image_access = image_access

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        projects = self.catalog.list_projects(**self.access.listing(req))
        resp.media = {"projects": [project_doc(self.access, req, p) for p in projects]}
        resp.cache_control = PRIVATE

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        name, description = named_body(req, "project")
        group_id = self.image_access.new_image_group(req)
        user_id = self.image_access.user_id(req)
        project_id = self.catalog.create_project(name, user_id, group_id, description)
        resp.status = falcon.HTTP_201
        resp.media = project_doc(self.access, req, self.catalog.get_project(project_id))


class ProjectDataset:
    """PUT: put a dataset the caller may see into a project they may add to (204);
    DELETE: take it out (204). A project or dataset they may not see is a 404."""

    def __init__(self, services: Services, image_access: ImageAccess) -> None:
        self.catalog = services.catalog
        self.access = image_access.access
        self.image_access = image_access

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, project_id: int, dataset_id: int
    ) -> None:
        project = self._project(req, project_id, dataset_id)
        self.catalog.add_to_project(project.id, [dataset_id])
        resp.status = falcon.HTTP_204

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, project_id: int, dataset_id: int
    ) -> None:
        project = self._project(req, project_id, dataset_id)
        self.catalog.remove_from_project(project.id, [dataset_id])
        resp.status = falcon.HTTP_204

    def _project(self, req: falcon.Request, project_id: int, dataset_id: int) -> Project:
        self.image_access.user_id(req)  # signed in, or 401
        try:
            project = self.catalog.get_project(project_id)
        except NotFound:
            project = None
        if project is None or not self.access.can_see_project(req, project):
            raise NotFound(f"project {project_id} does not exist")
        try:
            dataset = self.catalog.get_dataset(dataset_id)
        except NotFound:
            dataset = None
        if dataset is None or not self.access.can_see_dataset(req, dataset):
            raise NotFound(f"dataset {dataset_id} does not exist")
        if not self.access.can_fill_dataset(req, project):
            raise Forbidden(f"you may not change project {project_id}")
        return project


def project_doc(access: Access, req: falcon.Request, project: Project) -> dict[str, Any]:
    """Return a project as JSON, its datasets only those the caller may see."""
    return {
        **project.to_json(),
        "datasets": visible_datasets(access, req, project),
        "can_add": access.can_fill_dataset(req, project),
    }


def visible_datasets(access: Access, req: falcon.Request, project: Project) -> list[int]:
    """Return the ids of a project's datasets that the caller may see."""
    shown = {dataset.id for dataset in access.services.catalog.list_datasets(**access.listing(req))}
    return [dataset_id for dataset_id in project.dataset_ids if dataset_id in shown]


def named_body(req: falcon.Request, what: str) -> tuple[str, str]:
    """Return the name and description of a JSON body creating a dataset or project."""
    require_media_type(req, "application/json")
    body = read_json(req)
    if not isinstance(body, dict):
        raise BadParameter("body", "send a JSON object with a name")
    name, description = body.get("name"), body.get("description", "")
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX:
        raise BadParameter("name", f"a {what} needs a name of 1 to {NAME_MAX} characters")
    if not isinstance(description, str):
        raise BadParameter("description", "the description is text")
    return name.strip(), description


def add_routes(app: falcon.App, base: str, services: Services, image_access: ImageAccess) -> None:
    app.add_route(f"{base}/datasets", DatasetList(services, image_access))
    app.add_route(f"{base}/projects", ProjectList(services, image_access))
    app.add_route(
        f"{base}/projects/{{project_id:id}}/datasets/{{dataset_id:id}}",
        ProjectDataset(services, image_access),
    )
