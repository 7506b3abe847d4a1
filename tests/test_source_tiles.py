"""A slide's own JPEG tiles are sent as stored only when the answer's pixels are exactly theirs.

Expected pixels come from tifffile decoding the written file, and expected bytes from the
file's own tile streams: never from Coverslip.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile
from falcon import testing

from coverslip.formats.tiles import JpegLevel
from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import decode
from tests.servers import store_settings

RNG = np.random.default_rng(11)


def smooth(height: int, width: int, seed: int) -> np.ndarray:
    """An RGB picture JPEG keeps well (tiles of a few KB) but not exactly."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy + seed * 40) % 256], axis=-1)
    noise = RNG.integers(0, 24, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_slide(path: Path) -> None:
    """A JPEG-tiled slide: 1024×768 at 256² tiles, its half, and a quarter tiled at 128²."""
    options: dict[str, Any] = {"photometric": "rgb", "compression": "jpeg", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(smooth(768, 1024, 0), tile=(256, 256), **options)
        tif.write(smooth(384, 512, 1), tile=(256, 256), subfiletype=1, **options)
        tif.write(smooth(192, 256, 2), tile=(128, 128), subfiletype=1, **options)


def file_tile(path: Path, page: int, number: int) -> bytes:
    with tifffile.TiffFile(path) as tif:
        stored = tif.pages[page]
        handle = tif.filehandle
        handle.seek(stored.dataoffsets[number])
        return bytes(handle.read(stored.databytecounts[number]))


def file_pixels(path: Path, page: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[page].asarray()


def served(root: Path, path: Path, **settings: Any) -> tuple[testing.TestClient, int]:
    home = Home(root)
    app: CoverslipApp = create_app(home.settings({}, {"cache.enabled": False, **settings}), home)
    services = app.services
    owner, _default = services.catalog.ensure_local_admin()
    options = ImportOptions(owner_id=owner, group_id=services.auth.ensure_public_group())
    image_id = services.importer().import_path(path, options)
    return testing.TestClient(app), image_id


def until_stored(client: testing.TestClient, path: str, expected: bytes) -> None:
    """Ask ``path`` until the answer is ``expected``: the first requests of an image are
    rendered while its original is opened on a thread of its own."""
    deadline = time.monotonic() + 30
    while get(client, path) != expected:
        assert time.monotonic() < deadline, f"{path} never answered the file's own tile"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jpeg-slide") / "slide.tif"
    write_slide(path)
    return path


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, slide: Path) -> tuple[testing.TestClient, int]:
    http, image_id = served(tmp_path_factory.mktemp("home"), slide)
    until_stored(
        http, f"/iiif/3/{image_id}/0,0,256,256/256,256/0/default.jpg", file_tile(slide, 0, 0)
    )
    return http, image_id


def get(client: testing.TestClient, path: str) -> bytes:
    answer = client.simulate_get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    return bytes(answer.content)


def test_iiif_tiles_of_the_files_levels_are_its_own_streams(
    client: tuple[testing.TestClient, int], slide: Path
) -> None:
    http, image_id = client
    full = file_pixels(slide, 0)
    # Tile (1, 2) of level 0, and tile (1, 0) of level 1 (scale factor 2).
    data = get(http, f"/iiif/3/{image_id}/256,512,256,256/256,256/0/default.jpg")
    assert data == file_tile(slide, 0, 2 * 4 + 1)
    assert np.array_equal(decode(data), full[512:768, 256:512])
    half = get(http, f"/iiif/3/{image_id}/512,0,512,512/256,256/0/color.jpg")
    assert half == file_tile(slide, 1, 1)
    assert np.array_equal(decode(half), file_pixels(slide, 1)[0:256, 256:512])


def test_the_gateway_sends_stored_tiles_unless_a_quality_is_asked(
    client: tuple[testing.TestClient, int], slide: Path
) -> None:
    http, image_id = client
    base = f"/webgateway/render_image_region/{image_id}/0/0/?tile=0,3,1"
    assert get(http, base) == file_tile(slide, 0, 1 * 4 + 3)
    identity = "&c=1|0:255$FF0000,2|0:255$00FF00,3|0:255$0000FF&m=c"
    assert get(http, base + identity) == file_tile(slide, 0, 1 * 4 + 3)
    encoded = get(http, base + "&q=0.5")
    assert encoded != file_tile(slide, 0, 1 * 4 + 3)
    expected = file_pixels(slide, 0)[256:512, 768:1024].astype(int)
    assert np.abs(decode(encoded).astype(int) - expected).mean() < 8


@pytest.mark.parametrize(
    "path",
    [
        # a window that changes pixels, another channel order, greyscale
        "/webgateway/render_image_region/{id}/0/0/?tile=0,0,0&c=1|0:200$FF0000,2|0:255$00FF00,3|0:255$0000FF",
        "/webgateway/render_image_region/{id}/0/0/?tile=0,0,0&c=1|0:255$00FF00,2|0:255$FF0000,3|0:255$0000FF",
        "/webgateway/render_image_region/{id}/0/0/?tile=0,0,0&m=g",
        "/webgateway/render_image_region/{id}/0/0/?tile=0,0,0,128,128",
        # scaled, mirrored, turned, grey, PNG
        "/iiif/3/{id}/0,0,256,256/128,128/0/default.jpg",
        "/iiif/3/{id}/0,0,256,256/256,256/!0/default.jpg",
        "/iiif/3/{id}/0,0,256,256/256,256/90/default.jpg",
        "/iiif/3/{id}/0,0,256,256/256,256/0/gray.jpg",
        "/iiif/3/{id}/0,0,256,256/256,256/0/default.png",
        # not on the tile grid; a level the file tiles at 128² (rendered at 256²)
        "/iiif/3/{id}/128,0,256,256/256,256/0/default.jpg",
        "/iiif/3/{id}/0,0,1024,768/256,192/0/default.jpg",
    ],
)
def test_anything_that_changes_pixels_is_rendered(
    client: tuple[testing.TestClient, int], slide: Path, path: str
) -> None:
    http, image_id = client
    answer = http.simulate_get(path.format(id=image_id))
    assert answer.status_code == 200, answer.text
    stored = {file_tile(slide, page, n) for page in (0, 1, 2) for n in range(4)}
    assert bytes(answer.content) not in stored


def test_off_by_setting(tmp_path: Path, slide: Path) -> None:
    http, image_id = served(tmp_path / "home", slide, **{"render.source_tiles": False})
    get(http, f"/iiif/3/{image_id}/0,0,256,256/256,256/0/default.jpg")
    time.sleep(0.5)  # time enough to open the original, were it opened
    data = get(http, f"/iiif/3/{image_id}/0,0,256,256/256,256/0/default.jpg")
    assert data != file_tile(slide, 0, 0)
    assert np.abs(decode(data).astype(int) - file_pixels(slide, 0)[:256, :256]).mean() < 6


def test_a_level_whose_tiles_do_not_decode_to_its_pixels_is_rendered(
    tmp_path: Path, slide: Path
) -> None:
    http, image_id = served(tmp_path / "home", slide)
    kept = next((tmp_path / "home").rglob("originals/**/slide.tif"))
    # The kept original's first tile of level 0 now holds the first tile of level 1.
    damaged = tmp_path / "damaged.tif"
    shutil.copy(kept, damaged)
    with tifffile.TiffFile(kept) as tif:
        first, other = tif.pages[0], tif.pages[1]
        offset = first.dataoffsets[0]
        replacement = file_tile(kept, 1, 0)[: first.databytecounts[0]]
        assert other.dataoffsets[0]
    with damaged.open("r+b") as handle:
        handle.seek(offset)
        handle.write(replacement)
    kept.chmod(0o644)
    shutil.copy(damaged, kept)
    # Level 1 is checked and whole: its tiles are sent as stored, level 0's never.
    until_stored(
        http, f"/iiif/3/{image_id}/0,0,512,512/256,256/0/default.jpg", file_tile(kept, 1, 0)
    )
    data = get(http, f"/iiif/3/{image_id}/256,0,256,256/256,256/0/default.jpg")
    assert data != file_tile(kept, 0, 1)


def test_shared_tables_and_rgb_samples_are_spliced_into_each_tile() -> None:
    """An abbreviated tile (tables in the page's JPEGTables) decodes on its own once spliced."""
    picture = smooth(256, 256, 3)
    whole = imagecodecs.jpeg8_encode(picture, level=85, colorspace="rgb", outcolorspace="rgb")
    # Split the stream after SOI into the tables (DQT, DHT) and the rest, as a TIFF stores it.
    position, tables, rest = 2, b"", b""
    while position < len(whole):
        marker, length = whole[position + 1], int.from_bytes(whole[position + 2 : position + 4])
        segment = whole[position : position + 2 + length]
        if marker in (0xDB, 0xC4):
            tables += segment
        elif marker == 0xDA:
            rest += whole[position:]
            break
        elif marker != 0xEE:  # the Adobe segment goes: the TIFF's photometric says RGB
            rest += segment
        position += 2 + length
    # Components numbered 1, 2, 3 (not "R", "G", "B"), as the TIFF's photometric tag names them.
    for named, numbered in (
        (b"R\x11\x00G\x11\x00B\x11", b"\x01\x11\x00\x02\x11\x00\x03\x11"),
        (b"R\x00G\x00B\x00", b"\x01\x00\x02\x00\x03\x00"),
    ):
        assert rest.count(named) == 1
        rest = rest.replace(named, numbered)
    level = JpegLevel(256, 256, 256, (0,), (0,), tables)
    abbreviated = b"\xff\xd8" + rest
    with pytest.raises(imagecodecs.Jpeg8Error):
        imagecodecs.jpeg8_decode(abbreviated)
    rgb = imagecodecs.jpeg8_decode(level.stream(abbreviated, adobe=True))
    expected = imagecodecs.jpeg8_decode(whole)
    assert np.array_equal(rgb, expected)
    # Without the Adobe segment a decoder takes the samples for YCbCr: other colours.
    assert not np.array_equal(imagecodecs.jpeg8_decode(level.stream(abbreviated, False)), expected)


@pytest.mark.slow
def test_an_original_in_an_object_store_sends_its_own_tiles(
    tmp_path: Path, slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store_settings(tmp_path, "coverslip-source", monkeypatch) as (_server, settings):
        http, image_id = served(tmp_path / "home", slide, **settings)
        assert not list((tmp_path / "home").rglob("slide.tif"))  # kept in the store only
        path = f"/iiif/3/{image_id}/768,256,256,256/256,256/0/default.jpg"
        until_stored(http, path, file_tile(slide, 0, 1 * 4 + 3))
        assert get(http, f"/webgateway/render_image_region/{image_id}/0/0/?tile=0,2,1") == (
            file_tile(slide, 0, 1 * 4 + 2)
        )
