"""OMERO.web's webgateway JSON routes: imgData, rendering settings, LUTs, histograms, originals."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon
import numpy as np
import tifffile

from coverslip.catalog import ImageExtras
from coverslip.errors import BadParameter, CoverslipError, Forbidden, NotFound
from coverslip.formats import ome_rois
from coverslip.formats.omezarr_labels import Masks, label_rois, mask_rgba
from coverslip.pixels.objects import is_remote, join
from coverslip.render.encode import encode
from coverslip.render.luts import LUT_NAMES, get_lut
from coverslip.render.service import resolution_count
from coverslip.render.settings import apply_query
from coverslip.web.access import PRIVATE, install_ids, parse_id
from coverslip.web.files import original_blocks, send_original, zip_stream
from coverslip.web.rendering import RENDER_PARAMS, RenderContext, View, int_param

# OMERO's names of the pixel types (omero.model.enums.PixelsType*).
PIXELS_TYPES = {"float32": "float", "float64": "double"}
# The most images one zip of originals may hold (a selection of a dataset page is far less).
ZIP_MAX_IMAGES = 500


def pixel_range(pixel_type: str) -> list[float]:
    """Return imgData's pixel_range as OMERO's ImageWrapper.getPixelRange computes it.

    From the byte width alone: signed types (floats included) give ±2**(8·bytes)/2 as
    floats, unsigned ones 0..2**(8·bytes) − 1; so float is ±2**31 and double ±2**63.
    """
    dtype = np.dtype(pixel_type)
    top = 2 ** (8 * dtype.itemsize)
    if dtype.kind in "if":
        return [-top / 2, top / 2 - 1]
    return [0, top - 1]


def split_dims(size_x: int, size_y: int, size_c: int, border: int = 2) -> dict[str, Any]:
    """Return imgData's split_channel as OMERO's ImageWrapper.splitChannelDims computes it.

    Full-size panes on a near-square grid: one per channel ("g"), one more for the merge ("c").
    """
    dims: dict[str, Any] = {}
    for key, panes in (("g", size_c), ("c", size_c + 1)):
        root = math.sqrt(panes)
        rows = int(round(root))
        cols = rows + 1 if root > rows else rows
        dims[key] = {
            "width": size_x * cols + border * (cols + 1),
            "height": size_y * rows + border * (rows + 1),
            "border": border,
            "gridx": cols,
            "gridy": rows,
        }
    return dims


def image_data(
    view: View,
    caller_can: dict[str, bool],
    author: str = "",
    dataset: tuple[str, str] | None = None,
    archived: bool = False,
    inverted: bool = False,
) -> dict[str, Any]:
    """Return the imgData JSON of OMERO's imageMarshal for one image as the caller sees it.

    ``dataset`` is the (name, description) of the one dataset holding the image, if exactly
    one does; ``inverted`` is OMERO's ``ia``: it swaps the Z and T sizes reported, nothing else.
    """
    image, rdef, pyramid = view.image, view.rdef, view.pyramid
    levels = resolution_count(image, pyramid)
    size_z, size_t = (image.size_t, image.size_z) if inverted else (image.size_z, image.size_t)
    data: dict[str, Any] = {
        "id": image.id,
        "meta": {
            "imageName": image.name,
            "imageDescription": image.description,
            "imageAuthor": author,
            "imageArchived": archived,
            "projectName": "Multiple",
            "projectId": None,
            "projectDescription": "",
            "datasetName": dataset[0] if dataset else "Multiple",
            "datasetId": image.dataset_ids[0] if dataset else None,
            "datasetDescription": dataset[1] if dataset else "",
            "wellSampleId": "",
            "wellId": "",
            "imageTimestamp": image.created.timestamp(),
            "imageId": image.id,
            "pixelsType": PIXELS_TYPES.get(image.pixel_type, image.pixel_type),
        },
        "perms": caller_can,
        "tiles": levels > 1,
        "interpolate": True,
        "size": {
            "width": image.size_x,
            "height": image.size_y,
            "z": size_z,
            "t": size_t,
            "c": image.size_c,
        },
        "pixel_size": {
            "x": image.physical_size_x,
            "y": image.physical_size_y,
            "z": image.physical_size_z,
        },
        "init_zoom": 0,
        "pixel_range": pixel_range(image.pixel_type),
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
        "split_channel": split_dims(image.size_x, image.size_y, image.size_c),
        "rdefs": {
            "model": rdef.model,
            "projection": rdef.projection
            if rdef.projection_start is None
            else f"{rdef.projection}|{rdef.projection_start}:{rdef.projection_end}",
            "defaultZ": rdef.default_z,
            "defaultT": rdef.default_t,
            "invertAxis": inverted,
        },
    }
    if levels > 1:
        shown = pyramid.levels[:levels]
        data["tile_size"] = {"width": image.tile_size, "height": image.tile_size}
        data["levels"] = levels
        data["resolutions"] = {
            str(i): {"sizeX": lv.width, "sizeY": lv.height} for i, lv in enumerate(shown)
        }
        data["zoomLevelScaling"] = {str(i): lv.width / image.size_x for i, lv in enumerate(shown)}
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


class ImageData:
    """`imgData/<iid>/[<key>/]`: everything about an image; ``key`` picks a dotted sub-path.

    ``getDefaults=true`` answers with the settings the import gave, not the saved ones (what
    the viewer's Reset shows before anything is saved).
    """

    def __init__(self, ctx: RenderContext, permissions: Any) -> None:
        self.ctx = ctx
        self.permissions = permissions

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, iid: int, key: str | None = None
    ) -> None:
        imported = req.get_param("getDefaults") == "true"
        view = self.ctx.view(req, iid, None, None, imported=imported)
        services = self.ctx.services
        catalog = services.catalog
        image = view.image
        account = services.auth.directory.account(image.owner_id)
        author = (account.user.full_name or account.user.username) if account else ""
        dataset = None
        if len(image.dataset_ids) == 1:
            found = catalog.get_dataset(image.dataset_ids[0])
            dataset = (found.name, found.description)
        data: Any = image_data(
            view,
            self.permissions(req, image),
            author=author,
            dataset=dataset,
            archived=services.original(image) is not None,
            inverted=req.get_param("ia") == "1",
        )
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
        self.ctx.services.cache.purge_image(image.id)  # its renders under older settings
        resp.media = True


class CopyImgRDef:
    """`copyImgRDef_json/?fromid=<iid>` (POST, ``toids`` and ``to_type`` image or dataset): save
    the settings the caller sees on one image as their settings on others, as OMERO.web's
    "paste" and "save to all" do. Answers ``{"True": [ids], "False": [ids]}``: an image is
    False when the caller may not see it or annotate it, or when its channel count or pixel
    type differs from the source's."""

    def __init__(self, ctx: RenderContext, access: Any) -> None:
        self.ctx = ctx
        self.access = access

    def _targets(self, req: falcon.Request, to_type: str, ids: list[int]) -> list[int]:
        if to_type == "image":
            return ids
        catalog = self.ctx.services.catalog
        images: dict[int, None] = {}  # ordered, once each
        for dataset_id in ids:  # the images the caller may see; the rest are not listed
            for image in catalog.list_images(dataset_id=dataset_id, status="active"):
                if self.access.visible(req, image):
                    images[image.id] = None
        return list(images)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user_id = self.access.user_id(req)
        if user_id is None:
            raise Forbidden("sign in to copy rendering settings")
        form = req.get_media(default_when_empty={})
        if not isinstance(form, dict):
            raise BadParameter("body", "send toids and to_type as a form")
        fields = {**form, **{k: v for k, v in req.params.items() if k in ("fromid", "to_type")}}
        fromid = parse_id(str(fields.get("fromid", "")))
        if fromid is None:
            raise BadParameter("fromid", "fromid is required: the image whose settings are copied")
        raw = fields.get("toids", [])
        listed = raw if isinstance(raw, list) else [raw]
        ids = [parse_id(str(value)) for value in listed]
        if not ids or any(value is None for value in ids):
            raise BadParameter("toids", "toids must list one or more ids")
        to_type = str(fields.get("to_type", "image"))
        if to_type not in ("image", "dataset"):
            raise BadParameter("to_type", f"{to_type!r} is not image or dataset")
        source = self.ctx.image(req, fromid)
        _tag, rdef = self.ctx.settings(req, source, names=())
        done: dict[str, list[int]] = {"True": [], "False": []}
        catalog = self.ctx.services.catalog
        for target_id in self._targets(req, to_type, [i for i in ids if i is not None]):
            try:
                target = self.ctx.image(req, target_id)
            except CoverslipError:
                done["False"].append(target_id)
                continue
            fits = (target.size_c, target.pixel_type) == (source.size_c, source.pixel_type)
            if not fits or not self.access.can_annotate(req, target):
                done["False"].append(target_id)
                continue
            placed = replace(
                rdef,
                default_z=min(rdef.default_z, target.size_z - 1),
                default_t=min(rdef.default_t, target.size_t - 1),
            )
            catalog.save_rdef(target.id, user_id, placed.to_json())
            self.ctx.services.cache.purge_image(target.id)
            done["True"].append(target_id)
        resp.media = done


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
        if bump:  # SECURITY: only who may annotate can empty the image's cache
            self.ctx.services.cache.purge_image(image.id)
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


# Rows of each table in luts_png, one table under the other in the order of luts/.
LUT_ROWS = 10


class LutsPng:
    """`luts_png/`: every lookup table of luts/ as a strip 256 colours wide, 10 rows high, one
    under the other in the same order (for colour previews, as OMERO.web serves it)."""

    def __init__(self) -> None:
        strips = [np.repeat(get_lut(name)[np.newaxis], LUT_ROWS, axis=0) for name in LUT_NAMES]
        self.png = encode(np.concatenate(strips), "png")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "image/png"
        resp.cache_control = ["public", "max-age=86400"]
        resp.data = self.png


class Histogram:
    """`histogram_json/<iid>/channel/<c>/?theZ=&theT=&bins=`: counts over the channel's min..max."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int, c: int) -> None:
        view = self.ctx.view(req, iid, int_param(req, "theZ"), int_param(req, "theT"))
        bins = int_param(req, "bins", 256)
        assert bins is not None
        resp.cache_control = PRIVATE
        resp.media = {"data": self.ctx.render.histogram(view, c, bins)}


class PixelValues:
    """`pixel_values/<iid>/<z>/<t>/?x=&y=[&w=&h=]`: the stored values of every channel in a
    small area (at most 64×64) of a plane at full resolution, never projected.

    Coverslip's own route, beside OMERO's: the viewer's readout under the cursor reads it.
    """

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int, z: int, t: int) -> None:
        view = self.ctx.view(req, iid, z, t, names=(), project=False)
        where = {}
        for name, default in (("x", None), ("y", None), ("w", 1), ("h", 1)):
            value = int_param(req, name, default, negative=True)
            if value is None:
                raise BadParameter(name, f"{name} is required")
            where[name] = value
        resp.cache_control = PRIVATE
        resp.media = self.ctx.render.values(view, **where)


class Rois:
    """`get_rois_json/<iid>/`: the image's regions of interest, from its OME-XML and its
    OME-Zarr label images, as OMERO.web answers them (a list of ROIs, each with its shapes);
    `shape_stats/<iid>/<shape>/` (Coverslip's own): the pixel count and each channel's
    statistics inside one shape; `render_shape_mask/<iid>/<shape>/`: a Mask shape's pixels
    as a PNG of its box, in its colour."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx
        self._found: dict[tuple[int, object], Masks] = {}

    def masks(self, view: View) -> Masks:
        image = view.image
        key = (image.id, image.updated)
        found = self._found.get(key)
        if found is None:
            if len(self._found) > 256:
                self._found.clear()
            found = self._found[key] = self._read(image)
        return found

    def _read(self, image: Any) -> Masks:
        rois = self._ome_rois(image)
        first_roi = max((roi["id"] for roi in rois), default=0) + 1
        first_shape = max((s["id"] for roi in rois for s in roi["shapes"]), default=0) + 1
        labels = self.ctx.services.catalog.get_extras(image.id).labels
        if not labels:
            return Masks(rois, {})
        where = self._labels_group(image)
        shape = (image.size_t, image.size_z, image.size_y, image.size_x)
        objects = self.ctx.services.pixels.objects
        found = label_rois(where, labels, shape, first_roi, first_shape, objects)
        return Masks(rois + found.rois, found.bits)

    def _labels_group(self, image: Any) -> Path | str:
        """Return the ``labels`` group kept with the image's pixels: a folder, or the URL of
        one in an object store or on a web server."""
        if image.pyramid_path is None:
            return Path(self.ctx.services.home.pyramid(image.id)) / "labels"
        if is_remote(image.pyramid_path):
            return join(image.pyramid_path, "labels")
        return Path(image.pyramid_path) / "labels"

    def _ome_rois(self, image: Any) -> list[dict[str, Any]]:
        services = self.ctx.services
        path = services.original(image)
        if not isinstance(path, Path) or not path.name.lower().endswith((".tif", ".tiff")):
            return []
        try:
            with tifffile.TiffFile(path) as tif:
                text = tif.ome_metadata
        except (OSError, ValueError, tifffile.TiffFileError):
            return []
        if not text:
            return []
        return ome_rois.parse_rois(text, services.catalog.get_extras(image.id).series_index)

    def _shape(self, view: View, shape_id: int) -> dict[str, Any]:
        masks = self.masks(view)
        for roi in masks.rois:
            for shape in roi["shapes"]:
                if shape["id"] == shape_id:
                    return with_bits(masks, shape)
        raise NotFound(f"image {view.image.id} has no shape {shape_id}")

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int) -> None:
        view = self.ctx.view(req, iid, None, None, names=(), project=False)
        resp.cache_control = PRIVATE
        resp.media = self.masks(view).rois

    def on_get_stats(
        self, req: falcon.Request, resp: falcon.Response, iid: int, shape_id: int
    ) -> None:
        view = self.ctx.view(req, iid, None, None, names=(), project=False)
        shape = self._shape(view, shape_id)
        # The plane asked, else the shape's own, else the image's default plane.
        z, t = (
            next(v for v in (int_param(req, name), shape[key], default) if v is not None)
            for name, key, default in (("theZ", "theZ", view.z), ("theT", "theT", view.t))
        )
        if (z, t) != (view.z, view.t):
            view = self.ctx.view(req, iid, z, t, names=(), project=False)
        resp.cache_control = PRIVATE
        resp.media = self.ctx.render.shape_stats(view, shape)

    def on_get_plane_stats(self, req: falcon.Request, resp: falcon.Response, iid: int) -> None:
        """`shape_stats/<iid>/?theZ=&theT=`: the statistics of every shape on one plane in one
        answer (a label image has hundreds); one without any (a line, a label, one too large)
        has ``area`` null and says ``why``."""
        view = self.ctx.view(req, iid, int_param(req, "theZ"), int_param(req, "theT"), names=(), project=False)  # fmt: skip
        masks = self.masks(view)
        found = []
        for roi in masks.rois:
            for shape in roi["shapes"]:
                if shape["theZ"] not in (None, view.z) or shape["theT"] not in (None, view.t):
                    continue
                try:
                    found.append(self.ctx.render.shape_stats(view, with_bits(masks, shape)))
                except BadParameter as exc:  # a line or a label; a shape too large to read
                    found.append(
                        {
                            "shape": shape["id"],
                            "type": shape["type"],
                            "area": None,
                            "why": exc.message,
                        }
                    )
        resp.cache_control = PRIVATE
        resp.media = {"z": view.z, "t": view.t, "shapes": found}

    def on_get_mask(
        self, req: falcon.Request, resp: falcon.Response, iid: int, shape_id: int
    ) -> None:
        view = self.ctx.view(req, iid, None, None, names=(), project=False)
        shape = self._shape(view, shape_id)
        if "bits" not in shape:
            raise NotFound(f"shape {shape_id} of image {iid} is a {shape['type']}, not a Mask")
        resp.content_type = "image/png"
        resp.cache_control = PRIVATE
        resp.data = encode(mask_rgba(shape, shape["bits"]), "png")


def with_bits(masks: Masks, shape: dict[str, Any]) -> dict[str, Any]:
    """Return ``shape`` with its pixels (``bits``) when it is a label image's Mask."""
    bits = masks.bits.get(shape["id"])
    return shape if bits is None else {**shape, "bits": bits}


class ArchivedFile:
    """`archived_files/download/<iid>/`: the original file, byte for byte (Range supported);
    `archived_files/download/?image=1&image=2`: the originals of several images in one zip,
    as OMERO.web answers it."""

    def __init__(self, ctx: RenderContext, can_download: Any) -> None:
        self.ctx = ctx
        self.can_download = can_download

    def _original(self, req: falcon.Request, iid: int) -> tuple[Any, Path | str]:
        image = self.ctx.services.auth.visible_image(self.ctx.caller(req), iid)
        if not self.can_download(req, image):
            raise Forbidden(f"downloading the original of image {iid} is not allowed")
        where = self.ctx.services.original(image)
        if where is None:
            raise NotFound(f"image {iid} has no original file")
        return image, where

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int) -> None:
        image, where = self._original(req, iid)
        send_original(req, resp, self.ctx.services, image, where)

    on_head = on_get

    def on_get_many(self, req: falcon.Request, resp: falcon.Response) -> None:
        raw = req.get_param_as_list("image") or []
        ids = [parse_id(value) for value in raw]
        if not ids or any(value is None for value in ids):
            raise BadParameter("image", "name the images with image=ID, one or more")
        if len(set(ids)) > ZIP_MAX_IMAGES:
            raise BadParameter("image", f"at most {ZIP_MAX_IMAGES} images in one download")
        # Every image is checked before the first byte: a refusal is an error, not a cut zip.
        entries, names = [], set()
        for iid in dict.fromkeys(i for i in ids if i is not None):
            image, where = self._original(req, iid)
            name = image.original_name or f"image-{iid}"
            if name in names:
                stem, dot, suffix = name.partition(".")
                name = f"{stem} ({iid}){dot}{suffix}"
            names.add(name)
            entries.append((name, original_blocks(self.ctx.services, where)))
        resp.content_type = "application/zip"
        resp.cache_control = ["private"]
        resp.downloadable_as = "originals.zip"
        if req.method != "HEAD":
            resp.stream = zip_stream(entries)

    on_head_many = on_get_many


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
    app.add_route("/webgateway/copyImgRDef_json", CopyImgRDef(ctx, access))
    app.add_route("/webgateway/luts", Luts())
    app.add_route("/webgateway/luts_png", LutsPng())
    app.add_route("/webgateway/histogram_json/{iid:id}/channel/{c:nat}", Histogram(ctx))
    app.add_route("/webgateway/pixel_values/{iid:id}/{z:nat}/{t:nat}", PixelValues(ctx))
    rois = Rois(ctx)
    app.add_route("/webgateway/get_rois_json/{iid:id}", rois)
    app.add_route("/webgateway/shape_stats/{iid:id}/{shape_id:nat}", rois, suffix="stats")
    app.add_route("/webgateway/shape_stats/{iid:id}", rois, suffix="plane_stats")
    app.add_route("/webgateway/render_shape_mask/{iid:id}/{shape_id:nat}", rois, suffix="mask")
    download = ArchivedFile(ctx, access.can_download)
    for prefix in ("/webgateway", "/webclient"):
        app.add_route(f"{prefix}/archived_files/download/{{iid:id}}", download)
        app.add_route(f"{prefix}/archived_files/download", download, suffix="many")
