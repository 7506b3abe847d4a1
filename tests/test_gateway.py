"""The webgateway: decoded PNG output against independent numpy computations on the source array."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from coverslip.home import Home
from coverslip.render.luts import get_lut
from coverslip.render.service import split_layout
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import (
    add_image,
    composite,
    decode,
    omero_32,
    paint,
    pyramid_levels,
    quantize,
)

RNG = np.random.default_rng(42)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home(tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="module")
def app(home: Home) -> CoverslipApp:
    return create_app(home.settings({}, {"pixels.tile_size": "256"}), home)


@pytest.fixture(scope="module")
def client(app: CoverslipApp) -> testing.TestClient:
    return testing.TestClient(app)


@pytest.fixture(scope="module")
def admin_token(app: CoverslipApp) -> dict[str, str]:
    """Headers that sign requests in as the image owner with an API token."""
    owner, _group = app.services.catalog.ensure_local_admin()
    _id, token = app.services.auth.tokens.create(owner, "tests")
    return {"X-Auth-Token": token}


@pytest.fixture(scope="module")
def stack(app: CoverslipApp) -> tuple[int, np.ndarray]:
    """3 channels × 5 Z of uint16, 600 × 700: three pyramid levels with ragged edges."""
    data = RNG.integers(0, 4096, (1, 3, 5, 600, 700), dtype=np.uint16)
    return add_image(app, data, "stack"), data


def get_png(client: testing.TestClient, url: str) -> np.ndarray:
    answer = client.simulate_get(url)
    assert answer.status_code == 200, answer.text
    return decode(answer.content)


def test_tiles_at_every_level_including_ragged_edges(
    client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, data = stack
    # 600 × 700 is below OMERO's big-image size: one resolution, tile level 0 only (as OMERO).
    levels = pyramid_levels(data[0, 0, 2], 1)
    for level in (1, 2):
        answer = client.simulate_get(
            f"/webgateway/render_image_region/{image_id}/2/0/?tile={level},0,0"
        )
        assert answer.status_code == 400 and answer.json["description"].startswith("tile:")
    for level, source in enumerate(levels):
        height, width = source.shape
        for ty in range((height + 255) // 256):
            for tx in range((width + 255) // 256):
                url = (
                    f"/webgateway/render_image_region/{image_id}/2/0/?tile={level},{tx},{ty}"
                    "&c=1|100:4000$FFFFFF&m=g&format=png"
                )
                expected = quantize(
                    source[ty * 256 : (ty + 1) * 256, tx * 256 : (tx + 1) * 256], 100, 4000
                )
                got = get_png(client, url)
                np.testing.assert_array_equal(
                    got[..., 0], expected, err_msg=f"level {level} tile {tx},{ty}"
                )
                np.testing.assert_array_equal(got[..., 1], expected)


def test_tile_with_explicit_size(client: testing.TestClient, stack: tuple[int, np.ndarray]) -> None:
    image_id, data = stack
    got = get_png(
        client,
        f"/webgateway/render_image_region/{image_id}/0/0/?tile=0,2,1,100,50&c=2|0:4095&m=g&format=png",
    )
    np.testing.assert_array_equal(got[..., 0], quantize(data[0, 1, 0, 50:100, 200:300], 0, 4095))


def test_region_colour_composite(client: testing.TestClient, stack: tuple[int, np.ndarray]) -> None:
    image_id, data = stack
    url = (
        f"/webgateway/render_image_region/{image_id}/1/0/?region=10,20,300,200"
        "&c=1|0:3000$FF0000,2|500:4000$00FF80,3|0:4095$4060FF&m=c&format=png"
    )
    plane = data[0, :, 1, 20:220, 10:310]
    expected = composite(
        [
            paint(quantize(plane[0], 0, 3000), "FF0000"),
            paint(quantize(plane[1], 500, 4000), "00FF80"),
            paint(quantize(plane[2], 0, 4095), "4060FF"),
        ]
    )
    np.testing.assert_array_equal(get_png(client, url), expected)


def test_region_clipped_at_the_image_edge(
    client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, data = stack
    got = get_png(
        client,
        f"/webgateway/render_image_region/{image_id}/0/0/?region=650,550,100,100&c=1|0:4095&m=g&format=png",
    )
    np.testing.assert_array_equal(got[..., 0], quantize(data[0, 0, 0, 550:600, 650:700], 0, 4095))


@pytest.mark.parametrize(
    ("family", "k", "inverted"),
    [
        ("linear", 1.0, False),
        ("linear", 1.0, True),
        ("polynomial", 2.0, False),
        ("polynomial", 0.5, True),
        ("exponential", 0.8, False),
        ("exponential", 1.1, False),
        ("logarithmic", 1.0, False),
    ],
)
def test_families(
    client: testing.TestClient, stack: tuple[int, np.ndarray], family: str, k: float, inverted: bool
) -> None:
    image_id, data = stack
    maps = json.dumps(
        [{"inverted": {"enabled": inverted}, "quantization": {"family": family, "coefficient": k}}]
    )
    url = f"/webgateway/render_image_region/{image_id}/0/0/?region=0,0,128,96&c=1|200:3800$FFFFFF&m=g&maps={maps}&format=png"
    expected = quantize(data[0, 0, 0, :96, :128], 200, 3800, family, k, inverted)
    np.testing.assert_array_equal(get_png(client, url)[..., 0], expected)


def test_reverse_is_an_alias_of_inverted(
    client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, data = stack
    maps = json.dumps([{"reverse": {"enabled": True}}])
    got = get_png(
        client,
        f"/webgateway/render_image_region/{image_id}/0/0/?region=0,0,64,64&c=1|0:4095&m=g&maps={maps}&format=png",
    )
    np.testing.assert_array_equal(got[..., 0], 255 - quantize(data[0, 0, 0, :64, :64], 0, 4095))


@pytest.mark.parametrize("lut", ["fire", "viridis", "grays"])
def test_luts(client: testing.TestClient, stack: tuple[int, np.ndarray], lut: str) -> None:
    image_id, data = stack
    got = get_png(
        client,
        f"/webgateway/render_image_region/{image_id}/0/0/?region=0,0,64,64&c=1|0:4095${lut}.lut&m=c&format=png",
    )
    expected = get_lut(lut)[quantize(data[0, 0, 0, :64, :64], 0, 4095)]
    np.testing.assert_array_equal(got, expected)


def test_luts_png_is_every_table_in_the_order_of_luts(client: testing.TestClient) -> None:
    names = [lut["name"] for lut in client.simulate_get("/webgateway/luts/").json["luts"]]
    got = get_png(client, "/webgateway/luts_png/")
    assert got.shape == (10 * len(names), 256, 3)
    for row, name in enumerate(names):
        assert (got[10 * row : 10 * row + 10] == get_lut(name.removesuffix(".lut"))).all(), name


def test_greyscale_renders_the_first_active_channel(
    client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, data = stack
    got = get_png(
        client,
        f"/webgateway/render_image_region/{image_id}/0/0/?region=0,0,64,64&c=-1,2|0:2000$FF0000,3&m=g&format=png",
    )
    expected = quantize(data[0, 1, 0, :64, :64], 0, 2000)
    for lane in range(3):
        np.testing.assert_array_equal(got[..., lane], expected)


@pytest.mark.parametrize("method", ["intmax", "intmean", "intsum"])
def test_projections(
    client: testing.TestClient, stack: tuple[int, np.ndarray], method: str
) -> None:
    image_id, data = stack
    planes = data[0, 0, 1:4].astype(np.int64)
    projected = {
        "intmax": planes.max(axis=0),
        "intmean": planes.sum(axis=0) // 3,
        "intsum": np.minimum(planes.sum(axis=0), 65535),
    }[method]
    end = 12000 if method == "intsum" else 4095
    # render_image projects; render_image_region never does (as OMERO's renderJpegRegion).
    url = f"/webgateway/render_image/{image_id}/0/0/?c=1|0:{end}&m=g&p={method}|1:3&format=png"
    np.testing.assert_array_equal(get_png(client, url)[..., 0], quantize(projected, 0, end))


@pytest.mark.parametrize(
    ("dtype", "window"),
    [
        ("uint8", (10, 240)),
        ("int8", (-100, 100)),
        ("uint16", (0, 60000)),
        ("int16", (-20000, 20000)),
        ("uint32", (0, 3e9)),
        ("int32", (-2e9, 2e9)),
        ("float32", (-1.5, 2.5)),
        ("float64", (-1.5, 2.5)),
    ],
)
def test_every_pixel_type(
    app: CoverslipApp, client: testing.TestClient, dtype: str, window: tuple[float, float]
) -> None:
    if np.dtype(dtype).kind == "f":
        data = RNG.normal(0.5, 1.5, (1, 1, 1, 40, 50)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = RNG.integers(info.min, info.max, (1, 1, 1, 40, 50), dtype=dtype, endpoint=True)
    image_id = add_image(app, data, dtype)
    start, end = window
    got = get_png(
        client, f"/webgateway/render_image/{image_id}/0/0/?c=1|{start}:{end}&m=g&format=png"
    )
    if np.dtype(dtype).itemsize == 4 or np.dtype(dtype).kind == "f":
        want = omero_32(data[0, 0, 0], start, end, "linear", 1.0)  # 256 bins of the window
    else:
        want = quantize(data[0, 0, 0], start, end)
    np.testing.assert_array_equal(got[..., 0], want)


def test_default_settings_window_is_min_to_max(
    client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, data = stack
    got = get_png(client, f"/webgateway/render_image/{image_id}/2/0/?format=png")
    expected = composite(
        [
            paint(quantize(data[0, c, 2], float(data[0, c].min()), float(data[0, c].max())), color)
            # Channels without colour or wavelength: OMERO's red, blue, then green.
            for c, color in enumerate(("FF0000", "0000FF", "00FF00"))
        ]
    )
    np.testing.assert_array_equal(got, expected)


def test_image_data(client: testing.TestClient, stack: tuple[int, np.ndarray]) -> None:
    image_id, data = stack
    info = client.simulate_get(f"/webgateway/imgData/{image_id}/").json
    assert info["size"] == {"width": 700, "height": 600, "z": 5, "t": 1, "c": 3}
    # One resolution in OMERO's terms (not a big image): no tiles, levels or tile size.
    assert info["tiles"] is False and "levels" not in info and "tile_size" not in info
    assert info["rdefs"]["defaultZ"] == 2
    assert info["pixel_range"] == [0, 65535]
    assert [ch["window"]["min"] for ch in info["channels"]] == [
        float(data[0, c].min()) for c in range(3)
    ]
    assert client.simulate_get(f"/webgateway/imgData/{image_id}/rdefs.defaultZ/").json == 2
    assert client.simulate_get(f"/webgateway/imgData/{image_id}/size/").json["width"] == 700


def test_thumbnail_sizes(client: testing.TestClient, stack: tuple[int, np.ndarray]) -> None:
    image_id, _ = stack
    assert decode(
        client.simulate_get(f"/webgateway/render_thumbnail/{image_id}/").content
    ).shape == (82, 96, 3)
    assert decode(
        client.simulate_get(f"/webgateway/render_thumbnail/{image_id}/140/").content
    ).shape == (120, 140, 3)
    assert decode(
        client.simulate_get(f"/webgateway/render_thumbnail/{image_id}/50/70/").content
    ).shape == (70, 50, 3)
    assert decode(
        client.simulate_get(f"/webclient/render_thumbnail/size/64/{image_id}/").content
    ).shape == (54, 64, 3)
    assert decode(
        client.simulate_get(f"/webgateway/render_birds_eye_view/{image_id}/200/").content
    ).shape == (171, 200, 3)


def test_default_thumbnail_needs_no_pixels(app: CoverslipApp, client: testing.TestClient) -> None:
    yy, xx = np.mgrid[0:300, 0:400]
    smooth = 120 + 100 * np.sin(xx / 40.0) * np.cos(yy / 30.0)
    data = smooth.astype(np.uint8)[None, None, None]
    image_id = add_image(app, data, "thumb")
    shutil.rmtree(app.services.home.pyramid(image_id))
    app.services.pixels.forget(image_id)
    answer = client.simulate_get(f"/webgateway/render_thumbnail/{image_id}/")
    assert answer.status_code == 200
    thumb = decode(answer.content)[..., 0].astype(float)
    assert thumb.shape == (72, 96)
    # The default window is min..max; the thumbnail is that picture scaled down (JPEG: a tolerance).
    low, high = float(data.min()), float(data.max())
    full = quantize(data[0, 0, 0], low, high).astype(float)
    expected = np.asarray(
        PILImage.fromarray(full.astype(np.uint8)).resize((96, 72), PILImage.Resampling.BOX), float
    )
    assert np.abs(thumb - expected).mean() < 4
    # A size nobody rendered before needs pixels, which are gone: a clear 409, not a 500.
    assert client.simulate_get(f"/webgateway/render_thumbnail/{image_id}/64/").status_code == 409


def test_saved_settings_show_at_once_and_etags(
    app: CoverslipApp, client: testing.TestClient, admin_token: dict[str, str]
) -> None:
    data = RNG.integers(0, 1000, (1, 1, 1, 64, 64), dtype=np.uint16)
    image_id = add_image(app, data, "saved")
    first = client.simulate_get(f"/webgateway/render_thumbnail/{image_id}/")
    etag = first.headers["etag"]
    assert (
        client.simulate_get(
            f"/webgateway/render_thumbnail/{image_id}/", headers={"If-None-Match": etag}
        ).status_code
        == 304
    )
    tile_url = f"/webgateway/render_image_region/{image_id}/0/0/?tile=0,0,0&format=png"
    before = get_png(client, tile_url)
    anonymous = client.simulate_post(f"/webgateway/saveImgRDef/{image_id}/?c=1|0:10$FFFFFF&m=g")
    assert anonymous.status_code == 403
    saved = client.simulate_post(
        f"/webgateway/saveImgRDef/{image_id}/?c=1|0:10$FFFFFF&m=g", headers=admin_token
    )
    assert saved.status_code == 200, saved.text
    after = client.simulate_get(
        f"/webgateway/render_thumbnail/{image_id}/", headers={"If-None-Match": etag}
    )
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    np.testing.assert_array_equal(get_png(client, tile_url)[..., 0], quantize(data[0, 0, 0], 0, 10))
    assert not np.array_equal(before, get_png(client, tile_url))
    rdef = client.simulate_get(f"/webgateway/getImgRDef/{image_id}/").json["rdef"]
    assert rdef["c"].startswith("1|0:10$FFFFFF") and rdef["m"] == "g"
    assert (
        client.simulate_post(f"/webgateway/resetRDef/{image_id}/", headers=admin_token).status_code
        == 200
    )
    np.testing.assert_array_equal(get_png(client, tile_url), before)


def test_get_thumbnails(
    app: CoverslipApp, client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, _ = stack
    broken = add_image(app, RNG.integers(0, 9, (1, 1, 1, 20, 20), dtype=np.uint8), "broken")
    shutil.rmtree(app.services.home.pyramid(broken))
    app.services.cache.drop_image(broken)
    app.services.pixels.forget(broken)
    answer = client.simulate_get(
        f"/webgateway/get_thumbnails/?id={image_id}&id=999999&id={broken}&id={image_id}"
    )
    assert answer.status_code == 200
    body = answer.json
    assert set(body) == {str(image_id), "999999", str(broken)}
    assert body[str(image_id)].startswith("data:image/jpeg;base64,")
    assert body["999999"] is None and body[str(broken)] is None
    many = "&".join(f"id={i}" for i in range(51))
    refused = client.simulate_get(f"/webgateway/get_thumbnails/?{many}")
    assert refused.status_code == 400 and "at most 50" in refused.json["description"]


def test_split_channel_and_histogram(
    app: CoverslipApp, client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, data = stack
    split = client.simulate_get(f"/webgateway/render_split_channel/{image_id}/0/0/?format=png")
    assert split.status_code == 200
    # NOTE: the rendered grid is Coverslip's (bounded to 2048 px); imgData's split_channel is
    # OMERO's full-size layout (tests/test_gateway_fidelity.py).
    layout = split_layout(app.services.metadata.image(image_id), 3)
    assert decode(split.content).shape[:2] == (layout["height"], layout["width"])
    histogram = client.simulate_get(
        f"/webgateway/histogram_json/{image_id}/channel/0/?bins=16&theZ=0"
    ).json["data"]
    assert len(histogram) == 16 and sum(histogram) == 600 * 700


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("render_image_region/{id}/0/0/", "region"),
        ("render_image_region/{id}/0/0/?tile=7,0,0", "tile"),
        ("render_image_region/{id}/0/0/?tile=0,9,9", "tile"),
        ("render_image_region/{id}/0/0/?region=1,2,3", "region"),
        ("render_image_region/{id}/0/0/?region=5000,5000,10,10", "region"),
        ("render_image/{id}/9/0/", "z"),
        ("render_image/{id}/0/3/", "t"),
        ("render_image/{id}/?c=5", "c"),
        ("render_image/{id}/?c=1|a:b", "c"),
        ("render_image/{id}/?m=x", "m"),
        ("render_image/{id}/?maps=[{{", "maps"),
        ("render_image/{id}/?p=intfoo", "p"),
        ("render_image/{id}/?q=2", "q"),
        ("render_image/{id}/?format=gif", "format"),
        ("render_thumbnail/{id}/?z=x", "z"),
        ("render_thumbnail/{id}/5000/", "w"),
        ("histogram_json/{id}/channel/9/", "c"),
    ],
)
def test_bad_parameters_are_named(
    client: testing.TestClient, stack: tuple[int, np.ndarray], url: str, name: str
) -> None:
    image_id, _ = stack
    answer = client.simulate_get("/webgateway/" + url.format(id=image_id))
    assert answer.status_code == 400, answer.text
    assert answer.json["description"].startswith(f"{name}:"), answer.json


def test_missing_image_is_404(client: testing.TestClient) -> None:
    for url in (
        "render_image/424242/",
        "render_thumbnail/424242/",
        "imgData/424242/",
        "render_image_region/424242/0/0/?tile=0,0,0",
    ):
        answer = client.simulate_get("/webgateway/" + url)
        assert answer.status_code == 404
        assert answer.json["description"] == "Not Found"
    placeholder = client.simulate_get("/webclient/render_thumbnail/424242/")
    assert placeholder.status_code == 200 and placeholder.headers["content-type"] == "image/png"


def with_original(app: CoverslipApp, name: str, payload: bytes) -> int:
    """Add an image whose original is ``payload`` under ``name``; return its id."""
    data = RNG.integers(0, 255, (1, 1, 1, 30, 30), dtype=np.uint8)
    image_id = add_image(app, data, "orig")
    original = app.services.home.original_dir(image_id)
    original.mkdir(parents=True, exist_ok=True)
    (original / name).write_bytes(payload)
    app.services.catalog.update_image(image_id, original_name=name)
    return image_id


def test_archived_file_download(
    app: CoverslipApp, client: testing.TestClient, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 4
    image_id = with_original(app, "orig.bin", payload)
    whole = client.simulate_get(f"/webgateway/archived_files/download/{image_id}/")
    assert whole.status_code == 200 and whole.content == payload
    assert "orig.bin" in whole.headers["content-disposition"]
    part = client.simulate_get(
        f"/webgateway/archived_files/download/{image_id}/", headers={"Range": "bytes=10-19"}
    )
    assert part.status_code == 206 and part.content == payload[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(payload)}"
    assert (
        client.simulate_get(
            f"/webgateway/archived_files/download/{image_id}/", headers={"Range": "bytes=5000-"}
        ).status_code
        == 416
    )


def test_several_originals_download_as_one_zip(
    app: CoverslipApp, client: testing.TestClient
) -> None:
    payloads = [RNG.bytes(3 * 1024 * 1024 + 17), b"second", b""]
    ids = [
        with_original(app, name, data)
        for name, data in zip(
            ("cells.ome.tif", "cells.ome.tif", "empty.png"), payloads, strict=True
        )
    ]
    query = "&".join(f"image={i}" for i in [*ids, ids[0]])  # asked twice, zipped once
    answer = client.simulate_get("/webgateway/archived_files/download/", query_string=query)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert "originals.zip" in answer.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.testzip() is None  # every CRC right
        names = archive.namelist()
        assert names == ["cells.ome.tif", f"cells ({ids[1]}).ome.tif", "empty.png"]
        assert [archive.read(name) for name in names] == payloads
    # Nothing is sent unless every image may be downloaded: one missing is a 404, no zip.
    missing = client.simulate_get(
        "/webgateway/archived_files/download/", query_string=f"image={ids[0]}&image=424242"
    )
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
    for bad in ("", "image=x", "image=1&image=-2"):
        refused = client.simulate_get("/webgateway/archived_files/download/", query_string=bad)
        assert refused.status_code == 400 and refused.json["title"], bad


SEGMENT = st.one_of(st.integers(-5, 10**6).map(str), st.text(max_size=6))
VALUE = st.one_of(
    st.text(max_size=30),
    st.from_regex(
        r"-?[0-9]{1,2}(\|-?[0-9.]{0,5}:-?[0-9.]{0,5})?(\$[0-9A-Fa-f]{0,8})?", fullmatch=True
    ),
    st.integers(-10, 10**7).map(str),
)
PARAMS = st.dictionaries(
    st.sampled_from(
        [
            "c",
            "m",
            "maps",
            "p",
            "q",
            "format",
            "z",
            "t",
            "region",
            "tile",
            "ia",
            "id",
            "bins",
            "theZ",
        ]
    ),
    VALUE,
    max_size=4,
)
ROUTES = [
    "render_image/{id}/{a}/{b}",
    "render_image_region/{id}/{a}/{b}",
    "render_thumbnail/{id}/{a}/{b}",
    "render_birds_eye_view/{id}/{a}",
    "get_thumbnails/{a}",
    "imgData/{id}/{a}",
    "render_split_channel/{id}/{a}/{b}",
    "histogram_json/{id}/channel/{a}",
    "getImgRDef/{a}",
    "luts",
]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(route=st.sampled_from(ROUTES), a=SEGMENT, b=SEGMENT, params=PARAMS)
def test_fuzz_never_500(
    client: testing.TestClient,
    stack: tuple[int, np.ndarray],
    route: str,
    a: str,
    b: str,
    params: dict[str, str],
) -> None:
    path = "/webgateway/" + route.format(id=stack[0], a=quote(a, safe=""), b=quote(b, safe=""))
    answer = client.simulate_get(path, params=params)
    assert answer.status_code in (200, 304, 400, 404, 409), (
        path,
        params,
        answer.status_code,
        answer.text,
    )


def test_saved_settings_purge_the_image_s_old_renders(
    app: CoverslipApp, client: testing.TestClient, admin_token: dict[str, str]
) -> None:
    data = RNG.integers(0, 4000, (1, 1, 1, 40, 50), dtype=np.uint16)
    image_id = add_image(app, data, "purged")
    other = add_image(app, data, "kept")
    for iid in (image_id, other):
        get_png(client, f"/webgateway/render_image/{iid}/0/0/?format=png")
    folder = app.services.home.cache / str(image_id)

    def renders(iid: int) -> list[Path]:
        return [p for p in (app.services.home.cache / str(iid)).rglob("*") if p.is_file()]

    assert renders(image_id) and renders(other)
    saved = client.simulate_post(
        f"/webgateway/saveImgRDef/{image_id}/?c=1|0:10$FFFFFF", headers=admin_token
    )
    assert saved.status_code == 200, saved.text
    assert not folder.exists() or renders(image_id) == []
    assert renders(other)
