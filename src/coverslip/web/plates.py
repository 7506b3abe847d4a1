"""The plate grid of OMERO's webgateway: `/webgateway/plate/<id>/[<field>/]` as JSON.

Rows of wells, each cell the field's image with its thumbnail URL, as OMERO.web's
``plateGrid_json`` answers it; a plate the caller may not see is a 404 like a missing one.
"""

from __future__ import annotations

from typing import Any

import falcon

from coverslip.errors import NotFound
from coverslip.services import Services
from coverslip.web.access import Access, install_ids
from coverslip.web.gateway_meta import PRIVATE


class PlateGrid:
    """GET the grid of one field of a plate (field 0 by default)."""

    def __init__(self, services: Services, access: Access) -> None:
        self.services = services
        self.access = access

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        plate_id: int | None,
        field: int | None = 0,
    ) -> None:
        if plate_id is None or field is None:
            raise NotFound("no such plate")
        plate = self.services.catalog.get_plate(plate_id)
        caller = self.access.caller(req)
        if not self.services.auth.can(caller, "read", plate):
            raise NotFound(f"plate {plate_id} does not exist")
        prefix = req.root_path or ""
        grid: list[list[dict[str, Any] | None]] = [
            [None for _ in plate.columns] for _ in plate.rows
        ]
        for well in plate.wells:
            inside = 0 <= well.row < len(plate.rows) and 0 <= well.column < len(plate.columns)
            if not inside or field >= len(well.images):
                continue
            try:
                image = self.services.metadata.image(well.images[field])
            except NotFound:
                continue
            grid[well.row][well.column] = {
                "id": image.id,
                "wellId": well.id,
                "field": field,
                "name": image.name,
                "description": "",
                "author": "",
                "date": image.created.isoformat() if image.created else None,
                "thumb_url": f"{prefix}/webgateway/render_thumbnail/{image.id}/96/",
            }
        resp.media = {"rowlabels": plate.rows, "collabels": plate.columns, "grid": grid}
        resp.cache_control = PRIVATE


def add_routes(app: falcon.App, services: Services, access: Access) -> None:
    install_ids(app)
    grid = PlateGrid(services, access)
    app.add_route("/webgateway/plate/{plate_id:id}", grid)
    app.add_route("/webgateway/plate/{plate_id:id}/{field:id}", grid)
