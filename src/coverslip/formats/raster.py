"""PNG and JPEG, decoded once when opened: greyscale is one channel, colour is Red, Green, Blue."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image as PILImage

from coverslip.errors import ImportFailed
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, single
from coverslip.formats.meta import RGB_CHANNELS

# SECURITY: a decompression bomb is refused before it is decoded. 100 million pixels decode
# to at most 600 MB (16-bit RGB), which keeps an import within its memory budget.
MAX_PIXELS = 100_000_000
PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS

GREY_MODES = {
    "1": np.uint8,
    "L": np.uint8,
    "I;16": np.uint16,
    "I;16L": np.uint16,
    "I;16B": np.uint16,
    "I": np.int32,
    "F": np.float32,
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_header(path: Path) -> tuple[int, int]:
    """Return (bit depth, colour type) from a PNG's IHDR chunk, or (0, 0)."""
    with path.open("rb") as handle:
        head = handle.read(33)
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return 0, 0
    return head[24], head[25]


class RasterReader:
    """A PNG or JPEG file, held decoded as (Y, X, C) or (Y, X)."""

    def __init__(self, path: Path, fmt: str) -> None:
        label = fmt.upper()
        try:
            with PILImage.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImportFailed(
                        f"{width} × {height} pixels is more than the {MAX_PIXELS:,} a {label} "
                        "may have (refused as a possible decompression bomb)"
                    )
                depth, colour = _png_header(path) if fmt == "png" else (0, 0)
                if depth == 16 and colour in (2, 6):
                    # NOTE: Pillow reduces 16-bit colour PNGs to 8 bits; imagecodecs keeps them.
                    self.pixels = imagecodecs.png_decode(path.read_bytes())[..., :3]
                else:
                    image.load()  # NOTE: here, so that a truncated file fails on open
                    self.pixels = self._array(image)
        except ImportFailed:
            raise
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise ImportFailed(
                f"more than {MAX_PIXELS:,} pixels (refused as a possible decompression bomb)"
            ) from None
        except MemoryError:
            raise ImportFailed(f"the {label} is too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - decoders raise OSError, ValueError, SyntaxError…
            raise ImportFailed(f"not a readable {label} ({type(exc).__name__}: {exc})") from None
        self.pixels = self.pixels.astype(self.pixels.dtype.newbyteorder("="), copy=False)
        colour_image = self.pixels.ndim == 3
        self.meta = ImageMeta(
            name=path.stem,
            format=fmt,
            size_t=1,
            size_c=3 if colour_image else 1,
            size_z=1,
            size_y=int(self.pixels.shape[0]),
            size_x=int(self.pixels.shape[1]),
            pixel_type=self.pixels.dtype.name,
            channels=[ChannelMeta(n, c) for n, c in RGB_CHANNELS]
            if colour_image
            else [ChannelMeta("")],
        )

    @staticmethod
    def _array(image: PILImage.Image) -> np.ndarray:
        """Return greyscale pixels as (Y, X) of their own type, anything else as 8-bit (Y, X, 3)."""
        mode = image.mode
        if mode in GREY_MODES:
            return np.asarray(image, dtype=GREY_MODES[mode])
        if mode == "LA":
            return np.asarray(image.getchannel("L"), dtype=np.uint8)
        if mode != "RGB":  # RGBA, P, PA, CMYK, YCbCr: alpha is dropped
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8)

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        if self.pixels.ndim == 2:
            return self.pixels[y0:y1]
        return np.ascontiguousarray(self.pixels[y0:y1, :, c])

    def close(self) -> None:
        pass


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a PNG or JPEG."""
    return single(fmt, path, lambda: RasterReader(path, fmt))
