"""PNG and JPEG: decoded once (they are small), greyscale → 1 channel, RGB(A) → 3 channels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from coverslip.errors import ImportFailed
from coverslip.formats import ChannelMeta, ImageMeta

# SECURITY: a decompression bomb is refused instead of filling memory (about 1 GB of RGB).
MAX_PIXELS = 350_000_000
RGB_CHANNELS = [
    ChannelMeta("Red", "FF0000"),
    ChannelMeta("Green", "00FF00"),
    ChannelMeta("Blue", "0000FF"),
]
_GREY_MODES = {
    "1": np.uint8,
    "L": np.uint8,
    "I;16": np.uint16,
    "I;16B": np.uint16,
    "I": np.int32,
    "F": np.float32,
}


class RasterReader:
    """A PNG or JPEG file."""

    def __init__(self, path: Path, fmt: str) -> None:
        PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", PILImage.DecompressionBombWarning)
                with PILImage.open(path) as image:
                    image.load()
                    self.pixels = self._array(image)
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise ImportFailed(
                f"more than {MAX_PIXELS:,} pixels: refused as a decompression bomb"
            ) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImportFailed(f"not a readable {fmt.upper()} ({exc})") from None
        channels, height, width = self.pixels.shape
        self.meta = ImageMeta(
            name=path.stem,
            format=fmt,
            size_t=1,
            size_c=channels,
            size_z=1,
            size_y=height,
            size_x=width,
            pixel_type=self.pixels.dtype.name,
            channels=RGB_CHANNELS if channels == 3 else [ChannelMeta("")],
        )

    @staticmethod
    def _array(image: PILImage.Image) -> np.ndarray:
        """Return the pixels as (C, Y, X)."""
        mode = image.mode
        if mode in _GREY_MODES:
            return np.asarray(image, dtype=_GREY_MODES[mode])[np.newaxis]
        if mode == "LA":
            return np.asarray(image.getchannel("L"), dtype=np.uint8)[np.newaxis]
        if mode != "RGB":
            image = image.convert("RGB")
        return np.moveaxis(np.asarray(image, dtype=np.uint8), 2, 0)

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.pixels[c, y0:y1]

    def close(self) -> None:
        pass
