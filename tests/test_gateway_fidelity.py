"""The webgateway as OMERO.web answers it: tile levels, projections, ia, thumbnails, imgData, histograms.

Each expectation is OMERO's behaviour (omero-web webgateway views.py and marshal.py, omero-py's
ImageWrapper, omero-server's ThumbnailBean / ThumbnailCtx / JavaImageScalingService), computed
here independently with numpy on the source array.
"""

from __future__ import annotations

import io
import json
from urllib.parse import quote

import numpy as np
import pytest
from falcon import testing
from PIL import Image as PILImage

from coverslip.home import Home
from coverslip.render.service import Renderer
from coverslip.render.settings import default_def
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import add_image, decode, quantize

RNG = np.random.default_rng(7)
BIG = (3200, 3300)  # more pixels than OMERO's 3192 × 3192: a "big image" with a pyramid


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> CoverslipApp:
    home = Home(tmp_path_factory.mktemp("fidelity"))
    return create_app(home.settings({}, {"pixels.tile_size": "256"}), home)


@pytest.fixture(scope="module")
def client(app: CoverslipApp) -> testing.TestClient:
    return testing.TestClient(app)


@pytest.fixture(scope="module")
def flat(app: CoverslipApp) -> tuple[int, np.ndarray]:
    """2 channels × 3 Z × 2 T of uint16, 600 × 700: Coverslip levels, but one OMERO resolution."""
    data = RNG.integers(0, 4096, (2, 2, 3, 600, 700), dtype=np.uint16)
    return add_image(app, data, "flat"), data


@pytest.fixture(scope="module")
def big(app: CoverslipApp) -> tuple[int, np.ndarray]:
    """One uint8 channel, 3300 × 3200: five levels, all of them OMERO resolutions."""
    data = RNG.integers(0, 256, (1, 1, 1, *BIG), dtype=np.uint8)
    data[0, 0, 0, 0, :2] = (0, 255)
    return add_image(app, data, "big"), data


def mean_levels(plane: np.ndarray, count: int) -> list[np.ndarray]:
    """The 2×2-mean pyramid with numpy: edge pixels average what they cover, rounded half up."""
    levels = [plane]
    for _ in range(count - 1):
        a = levels[-1].astype(np.float64)
        h, w = a.shape
        padded = np.full((h + h % 2, w + w % 2), np.nan)
        padded[:h, :w] = a
        blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
        levels.append(np.floor(np.nanmean(blocks, axis=(1, 3)) + 0.5).astype(plane.dtype))
    return levels


def lanczos3_reference(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """java-image-scaling's ResampleOp (Lanczos3), written out pixel by pixel from its source.

    Java computes in 32-bit floats (the filter's sines in doubles); so does this.
    """
    f32 = np.float32

    def lanczos(x: np.float32) -> np.float32:
        if x == 0:
            return f32(1)
        x = f32(abs(x))
        if not x < 3:
            return f32(0)
        x = f32(x * f32(np.pi))
        return f32(3.0 * np.sin(float(x)) * np.sin(float(f32(x / f32(3)))) / float(f32(x * x)))

    def weights(src: int, dst: int) -> list[list[tuple[int, np.float32]]]:
        scale = f32(dst) / f32(src)
        if scale < 1:
            size = f32(f32(3) / scale)
            norm = f32(1 / (np.ceil(float(size)) / 3.0))
        else:
            size, norm = f32(3), f32(1)
        center, step, rows = f32(f32(0.5) / scale), f32(f32(1) / scale), []
        for _ in range(dst):
            taps, total = [], f32(0)
            for pixel in range(int(center - size), int(float(center) + float(size) + 1.0) + 1):
                w = lanczos(f32(f32(center - f32(pixel)) * norm))
                if w != 0:
                    mirrored = (
                        -pixel if pixel < 0 else (2 * src - 1 - pixel if pixel >= src else pixel)
                    )
                    taps.append((mirrored, w))
                    total = f32(total + w)
            rows.append([(p, f32(w / total)) for p, w in taps])
            center = f32(center + step)
        return rows

    def byte(v: np.ndarray) -> np.ndarray:
        return np.where(v < 0, 0, np.where(v > 255, 255, np.trunc(v + f32(0.5)))).astype(np.uint8)

    work = np.zeros((rgb.shape[0], width, 3), dtype=np.uint8)
    for x, taps in enumerate(weights(rgb.shape[1], width)):
        total = np.zeros((rgb.shape[0], 3), dtype=np.float32)
        for p, w in taps:
            total = total + rgb[:, p].astype(np.float32) * w
        work[:, x] = byte(total)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    for y, taps in enumerate(weights(rgb.shape[0], height)):
        total = np.zeros((width, 3), dtype=np.float32)
        for p, w in taps:
            total = total + work[p].astype(np.float32) * w
        out[y] = byte(total)
    return out


def get(client: testing.TestClient, url: str) -> np.ndarray:
    answer = client.simulate_get(url)
    assert answer.status_code == 200, answer.text
    return decode(answer.content)


def bad(client: testing.TestClient, url: str, name: str) -> None:
    answer = client.simulate_get(url)
    assert answer.status_code == 400, answer.text
    assert answer.json["description"].startswith(f"{name}:"), answer.json


# -- tiles and regions ------------------------------------------------------------------


def test_an_image_with_one_resolution_has_only_tile_level_0(
    client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, data = flat
    url = f"/webgateway/render_image_region/{image_id}/0/0/?c=1|0:4095&m=g&format=png&tile="
    np.testing.assert_array_equal(
        get(client, url + "0,1,1")[..., 0], quantize(data[0, 0, 0, 256:512, 256:512], 0, 4095)
    )
    for level in (1, 2, 3):
        bad(client, url + f"{level},0,0", "tile")


def test_a_big_image_has_every_level_and_no_more(
    client: testing.TestClient, big: tuple[int, np.ndarray]
) -> None:
    image_id, data = big
    levels = mean_levels(data[0, 0, 0], 5)
    url = f"/webgateway/render_image_region/{image_id}/0/0/?c=1|0:255&m=g&format=png&tile="
    for level, tx, ty in [(1, 6, 6), (3, 1, 1), (4, 0, 0)]:
        source = levels[level][ty * 256 : (ty + 1) * 256, tx * 256 : (tx + 1) * 256]
        got = get(client, url + f"{level},{tx},{ty}")
        np.testing.assert_array_equal(got[..., 0], quantize(source, 0, 255), err_msg=str(level))
    bad(client, url + "5,0,0", "tile")


def test_regions_and_tiles_are_never_projected(
    client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, data = flat
    base = f"/webgateway/render_image_region/{image_id}/1/0/?c=1|0:4095&m=g&format=png&p=intmax"
    plane = quantize(data[0, 0, 1, 20:84, 10:74], 0, 4095)
    np.testing.assert_array_equal(get(client, base + "&region=10,20,64,64")[..., 0], plane)
    tile = get(client, base + "&tile=0,0,0")[..., 0]
    np.testing.assert_array_equal(tile, quantize(data[0, 0, 1, :256, :256], 0, 4095))
    # render_image does project, as in OMERO.
    projected = get(
        client, f"/webgateway/render_image/{image_id}/0/0/?c=1|0:4095&m=g&format=png&p=intmax"
    )
    np.testing.assert_array_equal(projected[..., 0], quantize(data[0, 0].max(axis=0), 0, 4095))


def test_inverted_axis_only_swaps_the_sizes_imgdata_reports(
    client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, data = flat
    url = f"/webgateway/render_image/{image_id}/2/1/?c=1|0:4095&m=g&format=png&ia=1"
    np.testing.assert_array_equal(get(client, url)[..., 0], quantize(data[1, 0, 2], 0, 4095))
    plain = client.simulate_get(f"/webgateway/imgData/{image_id}/").json
    swapped = client.simulate_get(f"/webgateway/imgData/{image_id}/?ia=1").json
    assert (plain["size"]["z"], plain["size"]["t"]) == (3, 2)
    assert (swapped["size"]["z"], swapped["size"]["t"]) == (2, 3)
    assert (plain["rdefs"]["invertAxis"], swapped["rdefs"]["invertAxis"]) == (False, True)


# -- thumbnails ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stripes(app: CoverslipApp) -> tuple[int, np.ndarray]:
    """224 × 160 uint8 of 1-pixel vertical stripes, 0 and 255 (a box filter turns them grey)."""
    plane = np.zeros((160, 224), dtype=np.uint8)
    plane[:, ::2] = 255
    plane[::7] = 128
    return add_image(app, plane[None, None, None], "stripes"), plane


def test_thumbnail_size_truncates_the_short_side(
    client: testing.TestClient, stripes: tuple[int, np.ndarray]
) -> None:
    image_id, _ = stripes
    assert get(client, f"/webgateway/render_thumbnail/{image_id}/").shape == (68, 96, 3)
    assert get(client, f"/webgateway/render_thumbnail/{image_id}/50/").shape == (35, 50, 3)
    assert get(client, f"/webgateway/render_thumbnail/{image_id}/40/70/").shape == (70, 40, 3)


def test_thumbnail_is_lanczos3_from_the_whole_plane(
    app: CoverslipApp, client: testing.TestClient, stripes: tuple[int, np.ndarray]
) -> None:
    image_id, plane = stripes
    image = app.services.metadata.image(image_id)
    pyramid = app.services.pixels.open(image)
    rdef = default_def(image.channels, image.pixel_type, 1, 1)
    rgb = np.repeat(plane[..., None], 3, axis=2)  # the default window 0..255 keeps every value
    expected = lanczos3_reference(rgb, 96, 68)
    got = app_renderer(app).thumbnail_rgb(image, pyramid, rdef, 0, 0, (96, 68))
    np.testing.assert_array_equal(got, expected)
    jpeg = get(client, f"/webgateway/render_thumbnail/{image_id}/").astype(float)
    box = np.asarray(PILImage.fromarray(rgb).resize((96, 68), PILImage.Resampling.BOX), float)
    assert np.abs(jpeg - expected).mean() < 3
    assert np.abs(box - expected).mean() > 10  # what the box filter made is far from it


def test_a_big_thumbnail_is_scaled_from_the_first_level_at_or_below_its_size(
    app: CoverslipApp, client: testing.TestClient, big: tuple[int, np.ndarray]
) -> None:
    image_id, data = big
    image = app.services.metadata.image(image_id)
    pyramid = app.services.pixels.open(image)
    rdef = default_def(image.channels, image.pixel_type, 1, 1)
    levels = mean_levels(data[0, 0, 0], 5)
    # 320 wide: level 3 (413 × 400) is above it, level 4 (207 × 200) at or below.
    smallest = np.repeat(levels[4][..., None], 3, axis=2)
    got = app_renderer(app).thumbnail_rgb(image, pyramid, rdef, 0, 0, (320, 310))
    np.testing.assert_array_equal(got, lanczos3_reference(smallest, 320, 310))
    # 500 wide: level 3 has a side at or below it.
    third = np.repeat(levels[3][..., None], 3, axis=2)
    got = app_renderer(app).thumbnail_rgb(image, pyramid, rdef, 0, 0, (500, 484))
    np.testing.assert_array_equal(got, lanczos3_reference(third, 500, 484))


def app_renderer(app: CoverslipApp) -> Renderer:
    return Renderer(max_pixels=app.services.settings["render.max_pixels"])


def test_thumbnails_ignore_rendering_parameters(
    client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, _ = flat
    plain = get(client, f"/webgateway/render_thumbnail/{image_id}/80/")
    for query in (
        "c=1|0:10$FF0000&m=g",
        "p=intmax",
        "maps=" + json.dumps([{"inverted": {"enabled": True}}]),
    ):
        np.testing.assert_array_equal(
            get(client, f"/webgateway/render_thumbnail/{image_id}/80/?{query}"),
            plain,
            err_msg=query,
        )
    other_z = get(client, f"/webgateway/render_thumbnail/{image_id}/80/?z=0")
    assert not np.array_equal(other_z, plain)  # z still applies (the default Z is 1)


def _tables(data: bytes) -> dict[int, list[int]]:
    return {k: list(v) for k, v in PILImage.open(io.BytesIO(data)).quantization.items()}


def test_default_jpeg_quality_is_085(
    client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, _ = flat
    sample = io.BytesIO()
    PILImage.new("RGB", (16, 16)).save(sample, "JPEG", quality=85)
    expected = _tables(sample.getvalue())
    for url in (f"render_thumbnail/{image_id}/", f"render_image/{image_id}/0/0/"):
        assert _tables(client.simulate_get("/webgateway/" + url).content) == expected, url
    sample = io.BytesIO()
    PILImage.new("RGB", (16, 16)).save(sample, "JPEG", quality=50)
    asked = client.simulate_get(f"/webgateway/render_image/{image_id}/0/0/?q=0.5").content
    assert _tables(asked) == _tables(sample.getvalue())


# -- imgData --------------------------------------------------------------------------------


def test_image_data_of_a_flat_multichannel_image(
    app: CoverslipApp, client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, _ = flat
    info = client.simulate_get(f"/webgateway/imgData/{image_id}/").json
    meta = info["meta"]
    assert meta["imageAuthor"] == "Administrator"
    assert meta["imageArchived"] is False  # no original kept for an array import
    assert (meta["datasetName"], meta["datasetId"], meta["projectName"]) == (
        "Multiple",
        None,
        "Multiple",
    )
    assert meta["pixelsType"] == "uint16"
    assert info["tiles"] is False
    assert not {"levels", "tile_size", "zoomLevelScaling", "resolutions"} & set(info)
    assert info["pixel_range"] == [0, 65535]
    # splitChannelDims: 2 channels on 2 × 1, 3 panes (with the merge) on 2 × 2, full size.
    assert info["split_channel"] == {
        "g": {"width": 700 * 2 + 2 * 3, "height": 600 + 2 * 2, "border": 2, "gridx": 2, "gridy": 1},
        "c": {
            "width": 700 * 2 + 2 * 3,
            "height": 600 * 2 + 2 * 3,
            "border": 2,
            "gridx": 2,
            "gridy": 2,
        },
    }


def test_image_data_of_a_pyramidal_image(
    client: testing.TestClient, big: tuple[int, np.ndarray]
) -> None:
    image_id, _ = big
    info = client.simulate_get(f"/webgateway/imgData/{image_id}/").json
    sizes = [(3300, 3200), (1650, 1600), (825, 800), (413, 400), (207, 200)]
    assert info["tiles"] is True and info["levels"] == 5
    assert info["tile_size"] == {"width": 256, "height": 256}
    assert info["resolutions"] == {
        str(i): {"sizeX": w, "sizeY": h} for i, (w, h) in enumerate(sizes)
    }
    assert info["zoomLevelScaling"] == {str(i): w / 3300 for i, (w, _h) in enumerate(sizes)}
    assert info["pixel_range"] == [0, 255] and info["meta"]["pixelsType"] == "uint8"
    assert info["split_channel"]["g"] == {
        "width": 3304,
        "height": 3204,
        "border": 2,
        "gridx": 1,
        "gridy": 1,
    }
    assert info["split_channel"]["c"]["gridx"] == 2 and info["split_channel"]["c"]["gridy"] == 1


@pytest.mark.parametrize(
    ("dtype", "name", "expected"),
    [
        ("float32", "float", [-2147483648.0, 2147483647.0]),
        ("float64", "double", [-9223372036854775808.0, 9223372036854775807.0]),
        ("int16", "int16", [-32768.0, 32767.0]),
    ],
)
def test_image_data_pixel_type_and_range(
    app: CoverslipApp, client: testing.TestClient, dtype: str, name: str, expected: list[float]
) -> None:
    data = RNG.normal(0, 100, (1, 1, 1, 20, 30)).astype(dtype)
    image_id = add_image(app, data, dtype)
    info = client.simulate_get(f"/webgateway/imgData/{image_id}/").json
    assert info["meta"]["pixelsType"] == name
    assert info["pixel_range"] == expected


def test_image_data_names_the_dataset_and_the_owner(
    app: CoverslipApp, client: testing.TestClient, stripes: tuple[int, np.ndarray]
) -> None:
    image_id, _ = stripes
    catalog = app.services.catalog
    owner, _group = catalog.ensure_local_admin()
    image = catalog.get_image(image_id)
    dataset = catalog.create_dataset("Stripes", owner, image.group_id, description="lines")
    catalog.add_to_dataset(dataset, [image_id])
    app.services.metadata.clear()
    meta = client.simulate_get(f"/webgateway/imgData/{image_id}/").json["meta"]
    assert (meta["datasetName"], meta["datasetId"], meta["datasetDescription"]) == (
        "Stripes",
        dataset,
        "lines",
    )
    assert meta["imageAuthor"] == "Administrator"
    info = client.simulate_get(f"/webgateway/imgData/{image_id}/").json
    assert info["size"]["c"] == 1 and info["split_channel"]["g"]["gridx"] == 1


# -- histograms -------------------------------------------------------------------------------


def test_histogram_counts_the_whole_plane_up_to_3192_squared(
    app: CoverslipApp, client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, data = flat
    plane = data[1, 1, 2]
    low, high = float(data[:, 1].min()), float(data[:, 1].max())
    url = f"/webgateway/histogram_json/{image_id}/channel/1/?theZ=2&theT=1&bins=64"
    assert (
        client.simulate_get(url).json["data"]
        == np.histogram(plane, bins=64, range=(low, high))[0].tolist()
    )
    # 2100 × 2000 has levels, but fits OMERO's plane size: every pixel of level 0 counts.
    medium = RNG.integers(0, 256, (1, 1, 1, 2000, 2100), dtype=np.uint8)
    medium[0, 0, 0, 0, :2] = (0, 255)
    medium_id = add_image(app, medium, "medium")
    got = client.simulate_get(f"/webgateway/histogram_json/{medium_id}/channel/0/?bins=256").json
    assert got["data"] == np.histogram(medium, bins=256, range=(0, 255))[0].tolist()


def test_histogram_of_a_projection_counts_the_projected_plane(
    client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, data = flat
    low, high = float(data[:, 1].min()), float(data[:, 1].max())
    stack = data[0, 1, 1:3].astype(np.int64)  # T 0, channel 1, Z 2..3 (1:2 0-based)
    for p, plane in (("intmax|1:2", stack.max(axis=0)), ("intmean|1:2", stack.sum(axis=0) // 2)):
        url = f"/webgateway/histogram_json/{image_id}/channel/1/?theT=0&bins=64&p={p}"
        got = client.simulate_get(url).json["data"]
        assert got == np.histogram(plane, bins=64, range=(low, high))[0].tolist(), p
    # A sum beyond the channel's max is not counted: the bins stay the channel's.
    url = f"/webgateway/histogram_json/{image_id}/channel/1/?theT=0&bins=8&p=intsum"
    total = data[0, 1].astype(np.int64).sum(axis=0)
    got = client.simulate_get(url).json["data"]
    assert got == np.histogram(total, bins=8, range=(low, high))[0].tolist()


def test_histogram_of_a_big_image_counts_its_largest_level_that_fits(
    client: testing.TestClient, big: tuple[int, np.ndarray]
) -> None:
    image_id, data = big
    level1 = mean_levels(data[0, 0, 0], 2)[1]  # 1650 × 1600: the first within 3192²
    got = client.simulate_get(f"/webgateway/histogram_json/{image_id}/channel/0/?bins=32").json
    assert got["data"] == np.histogram(level1, bins=32, range=(0, 255))[0].tolist()


# -- integer parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["+1", " 1", "1 ", "\uff11", "1_0", "1.0", "0x1", "-0"])
def test_integer_parameters_are_ascii_digits(
    client: testing.TestClient, flat: tuple[int, np.ndarray], value: str
) -> None:
    image_id, _ = flat
    for path, name in [
        (f"render_image/{image_id}/", "z"),
        (f"render_thumbnail/{image_id}/", "t"),
        (f"histogram_json/{image_id}/channel/0/", "theZ"),
        (f"histogram_json/{image_id}/channel/0/", "bins"),
    ]:
        query = f"{name}={quote(value, safe='')}"
        answer = client.simulate_get("/webgateway/" + path, query_string=query)
        assert answer.status_code == 400, (path, value, answer.text)
        assert answer.json["description"].startswith(f"{name}:"), answer.json


@pytest.mark.parametrize("segment", ["+1", "%201", "%EF%BC%91", "1_0"])
def test_path_numbers_and_ids_are_ascii_digits(
    client: testing.TestClient, flat: tuple[int, np.ndarray], segment: str
) -> None:
    image_id, _ = flat
    for path in (
        f"render_image/{image_id}/{segment}/",
        f"render_image/{image_id}/0/{segment}/",
        f"render_thumbnail/{image_id}/{segment}/",
        f"histogram_json/{image_id}/channel/{segment}/",
        f"render_image/{segment}/",
        f"imgData/{segment}/",
    ):
        assert client.simulate_get("/webgateway/" + path).status_code == 404, path
    assert client.simulate_get(f"/webgateway/render_image/{image_id}/1/").status_code == 200
