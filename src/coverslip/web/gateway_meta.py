"""OMERO.web's webgateway JSON routes: imgData, rendering settings, LUTs, histograms, originals."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import falcon
import numpy as np

from coverslip.catalog import ImageExtras
from coverslip.errors import BadParameter, Forbidden, NotFound
from coverslip.render.luts import LUT_NAMES
from coverslip.render.service import split_layout
from coverslip.render.settings import apply_query
from coverslip.web.access import PRIVATE, install_ids
from coverslip.web.files import send_file
from coverslip.web.rendering import RENDER_PARAMS, RenderContext, View, int_param

PIXEL_RANGES = {
    "uint8": (0, 255),
    "int8": (-128, 127),
    "uint16": (0, 65535),
    "int16": (-32768, 32767),
    "uint32": (0, 4294967295),
    "int32": (-2147483648, 2147483647),
}


def _pixel_range(view: View) -> list[float]:
    found = PIXEL_RANGES.get(view.image.pixel_type)
    if found is not None:
        return list(found)
    channels = view.image.channels
    return (
        [min(ch.min for ch in channels), max(ch.max for ch in channels)] if channels else [0.0, 1.0]
    )


def image_data(view: View, caller_can: dict[str, bool]) -> dict[str, Any]:
    """Return the imgData JSON of OMERO's imageMarshal for one image as the caller sees it."""
    image, rdef, pyramid = view.image, view.rdef, view.pyramid
    levels = len(pyramid.levels)
    data: dict[str, Any] = {
        "id": image.id,
        "meta": {
            "imageName": image.name,
            "imageDescription": "",
            "imageAuthor": str(image.owner_id),
            "projectName": "Multiple",
            "projectId": None,
            "projectDescription": "",
            "datasetName": "Multiple" if len(image.dataset_ids) != 1 else "",
            "datasetId": image.dataset_ids[0] if len(image.dataset_ids) == 1 else None,
            "datasetDescription": "",
            "wellSampleId": "",
            "wellId": "",
            "imageTimestamp": image.created.timestamp(),
            "imageId": image.id,
            "pixelsType": image.pixel_type,
        },
        "perms": caller_can,
        "tiles": levels > 1,
        "interpolate": True,
        "size": {
            "width": image.size_x,
            "height": image.size_y,
            "z": image.size_z,
            "t": image.size_t,
            "c": image.size_c,
        },
        "pixel_size": {
            "x": image.physical_size_x,
            "y": image.physical_size_y,
            "z": image.physical_size_z,
        },
        "init_zoom": 0,
        "pixel_range": _pixel_range(view),
        "channels": [
            {
                "emissionWave": meta.emission_wave,
                "label": meta.name,
                "color": setting.color,
                "inverted": setting.inverted,
                "reverseIntensity": setting.inverted,
                "family": setting.family,
                "coefficient": setting.coefficient,
                "window": {
                    "min": meta.min,
                    "max": meta.max,
                    "start": setting.start,
                    "end": setting.end,
                },
                "active": setting.active,
                **({"lut": setting.lut} if setting.lut else {}),
            }
            for meta, setting in zip(image.channels, rdef.channels, strict=False)
        ],
        "split_channel": _split(view),
        "rdefs": {
            "model": rdef.model,
            "projection": rdef.projection
            if rdef.projection_start is None
            else f"{rdef.projection}|{rdef.projection_start}:{rdef.projection_end}",
            "defaultZ": rdef.default_z,
            "defaultT": rdef.default_t,
            "invertAxis": False,
        },
    }
    if levels > 1:
        data["tile_size"] = {"width": image.tile_size, "height": image.tile_size}
        data["levels"] = levels
        data["zoomLevelScaling"] = {
            str(i): lv.width / image.size_x for i, lv in enumerate(pyramid.levels)
        }
    return data


def add_file_metadata(
    data: dict[str, Any], extras: ImageExtras, well: tuple[int, int, int, int] | None
) -> None:
    """Add what the image's file said (objective, date, wavelengths, vendor metadata) to imgData."""
    meta = data["meta"]
    meta.update(
        {
            "objective": extras.objective,
            "acquisitionDate": extras.acquired,
            "timeIncrement": extras.time_increment,
            "series": extras.series,
            "kind": extras.kind,
            "filesetId": extras.fileset_id,
            "labels": extras.labels,
            "originalMetadata": extras.original,
        }
    )
    if well is not None:
        meta["plateId"], meta["wellRow"], meta["wellColumn"], meta["field"] = well
    for channel, found in zip(data["channels"], extras.channels, strict=False):
        channel["excitationWave"] = found.get("excitation_wave")


def _split(view: View) -> dict[str, Any]:
    active = sum(1 for ch in view.rdef.channels if ch.active)
    layout = split_layout(view.image, active)
    grid = {k: layout[k] for k in ("width", "height", "border", "gridx", "gridy")}
    return {"g": grid, "c": grid}


class ImageData:
    """`imgData/<iid>/[<key>/]`: everything about an image; ``key`` picks a dotted sub-path."""

    def __init__(self, ctx: RenderContext, permissions: Any) -> None:
        self.ctx = ctx
        self.permissions = permissions

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, iid: int, key: str | None = None
    ) -> None:
        view = self.ctx.view(req, iid, None, None)
        catalog = self.ctx.services.catalog
        data: Any = image_data(view, self.permissions(req, view.image))
        add_file_metadata(data, catalog.get_extras(iid), catalog.plate_of(iid))
        if key is not None:
            for part in key.split("."):
                data = data.get(part) if isinstance(data, dict) else None
                if data is None:
                    break
        resp.cache_control = PRIVATE  # the permissions in it are the caller's
        resp.media = data


class SaveImgRDef:
    """`saveImgRDef/<iid>/` (POST): save the caller's settings from c, m, maps, p, z, t (z, t 1-based)."""

    def __init__(self, ctx: RenderContext, can_annotate: Any, user_of: Any) -> None:
        self.ctx = ctx
        self.can_annotate = can_annotate
        self.user_of = user_of

    def on_post(self, req: falcon.Request, resp: falcon.Response, iid: int) -> None:
        image = self.ctx.image(req, iid)
        user_id = self.user_of(req)
        if user_id is None or not self.can_annotate(req, image):
            raise Forbidden("you may not save rendering settings on this image")
        _tag, current = self.ctx.settings(req, image)
        params = {name: str(req.params[name]) for name in RENDER_PARAMS if name in req.params}
        rdef = apply_query(current, params, image.size_c) if params else current
        z, t = int_param(req, "z"), int_param(req, "t")
        if z is not None:
            if not 1 <= z <= image.size_z:
                raise BadParameter(
                    "z", f"{z} is outside 1..{image.size_z} (1-based here, as in OMERO)"
                )
            rdef = replace(rdef, default_z=z - 1)
        if t is not None:
            if not 1 <= t <= image.size_t:
                raise BadParameter(
                    "t", f"{t} is outside 1..{image.size_t} (1-based here, as in OMERO)"
                )
            rdef = replace(rdef, default_t=t - 1)
        self.ctx.services.catalog.save_rdef(image.id, user_id, rdef.to_json())
        resp.media = True


class ResetRDef:
    """`resetRDef/<iid>/` (POST): drop the caller's own settings; the owner's or the defaults apply."""

    def __init__(self, ctx: RenderContext, can_annotate: Any, user_of: Any) -> None:
        self.ctx = ctx
        self.can_annotate = can_annotate
        self.user_of = user_of

    def on_post(self, req: falcon.Request, resp: falcon.Response, iid: int) -> None:
        image = self.ctx.image(req, iid)
        user_id = self.user_of(req)
        if user_id is None:
            raise Forbidden("sign in to reset rendering settings")
        # SECURITY: a reader who may not annotate resets only their own settings; the image's
        # settings version (part of everyone's cache keys and ETags) stays.
        bump = bool(self.can_annotate(req, image))
        self.ctx.services.catalog.delete_rdef(image.id, user_id, bump=bump)
        resp.media = True


class GetImgRDef:
    """`getImgRDef/<iid>/`: the settings that apply to the caller, as OMERO query parameters."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int) -> None:
        image = self.ctx.image(req, iid)
        _tag, rdef = self.ctx.settings(req, image)
        query = dict(part.split("=", 1) for part in rdef.to_query().split("&") if "=" in part)
        resp.cache_control = PRIVATE
        resp.media = {"rdef": {**query, "z": rdef.default_z + 1, "t": rdef.default_t + 1}}


class Luts:
    """`luts/`: the lookup tables this server renders with."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "luts": [
                {"id": i, "name": f"{name}.lut", "path": "", "size": 768}
                for i, name in enumerate(LUT_NAMES)
            ]
        }


class Histogram:
    """`histogram_json/<iid>/channel/<c>/?theZ=&theT=&bins=`: counts over the channel's min..max."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int, c: int) -> None:
        view = self.ctx.view(req, iid, int_param(req, "theZ"), int_param(req, "theT"))
        image = view.image
        if not 0 <= c < image.size_c:
            raise BadParameter("c", f"{c} is outside 0..{image.size_c - 1}")
        bins = int_param(req, "bins", 256)
        assert bins is not None
        if not 1 <= bins <= 65536:
            raise BadParameter("bins", f"{bins} is not between 1 and 65536")
        # NOTE: a histogram of the level nearest 1024² is as informative and much cheaper.
        level = view.pyramid.level_for(min(1.0, 1024 / max(image.size_x, image.size_y)))
        plane = view.pyramid.read(level, view.t, c, view.z, slice(None), slice(None))
        channel = image.channels[c]
        values = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane
        counts, _edges = np.histogram(
            values,
            bins=bins,
            range=(channel.min, channel.max if channel.max > channel.min else channel.min + 1),
        )
        resp.cache_control = PRIVATE
        resp.media = {"data": counts.tolist()}


class ArchivedFile:
    """`archived_files/download/<iid>/`: the original file, byte for byte (Range supported)."""

    def __init__(self, ctx: RenderContext, can_download: Any) -> None:
        self.ctx = ctx
        self.can_download = can_download

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int) -> None:
        image = self.ctx.services.metadata.image(iid)
        if not self.ctx.visible(req, image):
            raise NotFound(f"image {iid} does not exist")
        if not self.can_download(req, image):
            raise Forbidden("downloading the original of this image is not allowed")
        folder = self.ctx.services.home.original_dir(image.id)
        path = folder / image.original_name
        if not path.is_file():
            raise NotFound(f"image {iid} has no original file")
        send_file(req, resp, path, image.original_name, image.md5, self.ctx.services.settings)

    on_head = on_get


def add_routes(app: falcon.App, ctx: RenderContext, access: Any) -> None:
    """Mount the JSON and download routes; ``access`` answers permission questions for a request."""
    install_ids(app)
    for prefix in ("/webgateway", "/webclient"):
        data = ImageData(ctx, access.permissions)
        app.add_route(f"{prefix}/imgData/{{iid:id}}", data)
        app.add_route(f"{prefix}/imgData/{{iid:id}}/{{key}}", data)
    app.add_route(
        "/webgateway/saveImgRDef/{iid:id}", SaveImgRDef(ctx, access.can_annotate, access.user_id)
    )
    app.add_route(
        "/webgateway/resetRDef/{iid:id}", ResetRDef(ctx, access.can_annotate, access.user_id)
    )
    app.add_route("/webgateway/getImgRDef/{iid:id}", GetImgRDef(ctx))
    app.add_route("/webgateway/luts", Luts())
    app.add_route("/webgateway/histogram_json/{iid:id}/channel/{c:int}", Histogram(ctx))
    download = ArchivedFile(ctx, access.can_download)
    app.add_route("/webgateway/archived_files/download/{iid:id}", download)
    app.add_route("/webclient/archived_files/download/{iid:id}", download)
