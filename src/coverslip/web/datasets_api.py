"""`/api/v2/datasets`: the datasets a caller may see, and new ones, for filing uploads.

Glance has no datasets; this is Coverslip's own small resource, in the images API's style
(JSON, the same sign-in, errors and CSRF). A dataset is created in the group the caller's new
images go into, so what they upload next can be filed in it.
"""

from __future__ import annotations

from typing import Any

import falcon

from coverslip.catalog.records import Dataset
from coverslip.errors import BadParameter
from coverslip.services import Services
from coverslip.web.access import PRIVATE
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
        require_media_type(req, "application/json")
        body = read_json(req)
        if not isinstance(body, dict):
            raise BadParameter("body", "send a JSON object with a name")
        name, description = body.get("name"), body.get("description", "")
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX:
            raise BadParameter("name", f"a dataset needs a name of 1 to {NAME_MAX} characters")
        if not isinstance(description, str):
            raise BadParameter("description", "the description is text")
        group_id = self.image_access.new_image_group(req)
        user_id = self.image_access.user_id(req)
        dataset_id = self.catalog.create_dataset(name.strip(), user_id, group_id, description)
        resp.status = falcon.HTTP_201
        resp.media = self._doc(req, self.catalog.get_dataset(dataset_id))

    def _doc(self, req: falcon.Request, dataset: Dataset) -> dict[str, Any]:
        return {**dataset.to_json(), "can_add": self.access.can_fill_dataset(req, dataset)}


def add_routes(app: falcon.App, base: str, services: Services, image_access: ImageAccess) -> None:
    app.add_route(f"{base}/datasets", DatasetList(services, image_access))
