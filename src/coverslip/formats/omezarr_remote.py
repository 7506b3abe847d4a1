"""An OME-Zarr image that stays where it is: in an object store (s3://) or on a web server
(http(s)://), read through the same pyramid reader that serves it afterwards."""

from __future__ import annotations

import numpy as np

from coverslip.errors import ImportFailed, StoreUnavailable, UnsupportedFormat
from coverslip.formats import ImageMeta, check_pixel_type
from coverslip.formats.omezarr import omero_channels, physical_sizes
from coverslip.formats.omezarr_labels import listed_labels
from coverslip.pixels.objects import ObjectStore, join
from coverslip.pixels.pyramid import Pyramid, PyramidError, axis_names, read_group


class RemoteOmeZarr:
    """One OME-Zarr image group at a URL; its levels are the pyramid it is served from."""

    def __init__(self, url: str, objects: ObjectStore | None) -> None:
        self.url = url.rstrip("/")
        try:
            _format, attrs, _dense = read_group(self.url, objects)
            if "multiscales" not in attrs and (
                "bioformats2raw.layout" in attrs or "plate" in attrs
            ):
                raise UnsupportedFormat(
                    "a bioformats2raw layout or a plate is registered one image at a time: "
                    "name the image group (e.g. …/0)"
                )
            self.pyramid = Pyramid(self.url, objects)
        except PyramidError as exc:
            raise ImportFailed(str(exc)) from None
        multiscale = attrs["multiscales"][0]
        psx, psy, psz = physical_sizes(multiscale, axis_names(multiscale))
        t, c, z, y, x = self.pyramid.shape
        if 0 in self.pyramid.shape:
            raise ImportFailed(f"the image is empty (shape {self.pyramid.shape})")
        last = self.url.rsplit("/", 1)[-1]
        default = last.removesuffix(".zarr").removesuffix(".ome")
        self.meta = ImageMeta(
            name=str(multiscale.get("name") or "").strip("/") or default,
            format="ome-zarr",
            size_t=t,
            size_c=c,
            size_z=z,
            size_y=y,
            size_x=x,
            pixel_type=check_pixel_type(self.pyramid.dtype),
            channels=omero_channels(attrs, c),
            physical_size_x=psx,
            physical_size_y=psy,
            physical_size_z=psz,
            levels=[(level.height, level.width) for level in self.pyramid.levels[1:]],
            labels=listed_labels(join(self.url, "labels"), objects),
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.read_level_band(0, t, c, z, y0, y1)

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        try:
            band = self.pyramid.read(level, t, c, z, slice(y0, y1), slice(None))
        except StoreUnavailable:
            raise
        except Exception:  # noqa: BLE001 - tensorstore reports missing or corrupt chunks as it can
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z} of level {level} cannot be read"
            ) from None
        return np.ascontiguousarray(band, dtype=self.pyramid.dtype.newbyteorder("="))

    def close(self) -> None:
        pass
