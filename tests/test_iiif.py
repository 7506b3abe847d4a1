"""IIIF Image API 3.0: decoded output against numpy on the source, errors, and the official validator."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from falcon import testing

from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import ArrayReader, decode, quantize
from tests.servers import free_port, wait_for_port

VALIDATION_ID = "67352ccc-d1b0-11e1-89ae-279075081939"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> CoverslipApp:
    home = Home(tmp_path_factory.mktemp("iiif"))
    return create_app(home.settings({}, {"iiif.aliases": "squares=1"}), home)


@pytest.fixture(scope="module")
def client(app: CoverslipApp) -> testing.TestClient:
    return testing.TestClient(app)


@pytest.fixture(scope="module")
def image(app: CoverslipApp) -> tuple[int, np.ndarray]:
    """A public 1-channel uint16 image of 2 Z planes, 600 × 800 (three pyramid levels)."""
    data = np.random.default_rng(3).integers(0, 4096, (1, 1, 2, 600, 800), dtype=np.uint16)
    services = app.services
    owner, _default = services.catalog.ensure_local_admin()
    image_id = services.catalog.create_image("iiif", owner, services.auth.ensure_public_group())
    services.importer().build(image_id, ArrayReader(data, "iiif"), ImportOptions())
    return image_id, data


def png(client: testing.TestClient, path: str) -> np.ndarray:
    answer = client.simulate_get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == "*"
    return decode(answer.content)


def test_info_json(client: testing.TestClient, image: tuple[int, np.ndarray]) -> None:
    image_id, _ = image
    answer = client.simulate_get(f"/iiif/3/{image_id}/info.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/ld+json")
    assert 'level2.json>;rel="profile"' in answer.headers["link"]
    info = json.loads(answer.text)
    # The id comes from web.host and web.port here (no public URL, no forwarding proxy),
    # never from the client's Host header.
    assert info["id"] == f"http://127.0.0.1:4080/iiif/3/{image_id}"
    assert (info["type"], info["profile"], info["width"], info["height"]) == (
        "ImageService3",
        "level2",
        800,
        600,
    )
    assert info["tiles"] == [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4]}]
    assert info["sizes"][0] == {"width": 200, "height": 150}
    base = client.simulate_get(f"/iiif/3/{image_id}")
    assert base.status_code == 303 and base.headers["location"].endswith(
        f"/iiif/3/{image_id}/info.json"
    )


def test_region_in_pixels_and_percent(
    client: testing.TestClient, image: tuple[int, np.ndarray]
) -> None:
    image_id, data = image
    plane = data[0, 0, 1]
    low, high = float(data.min()), float(data.max())
    got = png(client, f"/iiif/3/{image_id};z=1/100,50,300,200/max/0/default.png")
    np.testing.assert_array_equal(got[..., 0], quantize(plane[50:250, 100:400], low, high))
    pct = png(client, f"/iiif/3/{image_id};z=1/pct:25,50,50,25/max/0/default.png")
    np.testing.assert_array_equal(pct[..., 0], quantize(plane[300:450, 200:600], low, high))


def test_rotation_mirroring_and_quality(
    client: testing.TestClient, image: tuple[int, np.ndarray]
) -> None:
    image_id, data = image
    region = quantize(data[0, 0, 0, 0:120, 0:160], float(data.min()), float(data.max()))
    query = "?c=1|" + f"{float(data.min()):g}:{float(data.max()):g}"
    rotated = png(client, f"/iiif/3/{image_id};z=0/0,0,160,120/max/90/gray.png{query}")
    np.testing.assert_array_equal(rotated[..., 0], np.rot90(region, k=-1))
    mirrored = png(client, f"/iiif/3/{image_id};z=0/0,0,160,120/max/!180/gray.png{query}")
    np.testing.assert_array_equal(mirrored[..., 0], np.flipud(region))
    for rotation, want in [
        ("!90", np.rot90(np.fliplr(region), k=-1)),
        ("270", np.rot90(region, k=1)),
        ("!0", np.fliplr(region)),
    ]:
        turned = png(
            client, f"/iiif/3/{image_id};z=0/0,0,160,120/max/{rotation}/default.png{query}"
        )
        assert turned.shape == (*want.shape, 3), rotation
        for component in range(3):
            np.testing.assert_array_equal(turned[..., component], want, err_msg=rotation)
    bitonal = png(client, f"/iiif/3/{image_id};z=0/0,0,160,120/max/0/bitonal.png{query}")
    np.testing.assert_array_equal(bitonal[..., 0], np.where(region >= 128, 255, 0))


def test_sizes(client: testing.TestClient, image: tuple[int, np.ndarray]) -> None:
    image_id, _ = image
    for size, shape in [
        ("max", (600, 800)),
        ("400,", (300, 400)),
        (",150", (150, 200)),
        ("pct:10", (60, 80)),
        ("!100,100", (75, 100)),
        ("!5000,5000", (600, 800)),  # not larger than the region without ^
        ("^!1000,1000", (750, 1000)),
        ("90,40", (40, 90)),
        ("^1000,", (750, 1000)),
    ]:
        assert png(client, f"/iiif/3/{image_id}/full/{size}/0/default.jpg").shape[:2] == shape, size


def test_canonical_link_header(client: testing.TestClient, image: tuple[int, np.ndarray]) -> None:
    image_id, _ = image
    base = f"http://127.0.0.1:4080/iiif/3/{image_id}"
    for path, canonical in [
        ("full/max/0/default.jpg", "full/max/0/default.jpg"),
        ("0,0,800,600/800,/0/default.jpg", "full/max/0/default.jpg"),
        ("pct:0,0,100,100/pct:100/0/gray.png", "full/max/0/gray.png"),
        ("full/400,/90/default.jpg", "full/400,300/90/default.jpg"),
        ("10,20,30,40/max/!0/default.png", "10,20,30,40/max/!0/default.png"),
        ("10,20,30,40/15,/0/default.png", "10,20,30,40/15,20/0/default.png"),
    ]:
        answer = client.simulate_get(f"/iiif/3/{image_id}/{path}")
        assert answer.status_code == 200, answer.text
        assert f'<{base}/{canonical}>;rel="canonical"' in answer.headers["link"], path


def test_unsupported_format_is_400_naming_it(
    client: testing.TestClient, image: tuple[int, np.ndarray]
) -> None:
    answer = client.simulate_get(f"/iiif/3/{image[0]}/full/max/0/default.bmp")
    assert answer.status_code == 400 and answer.json["description"].startswith("format:")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("{id}/full/max/0/default.gif", 400),
        ("{id}/full/max/0/fancy.jpg", 400),
        ("{id}/full/1000,/0/default.jpg", 400),
        ("{id}/full/max/45x/default.jpg", 400),
        ("{id}/0,0,0,10/max/0/default.jpg", 400),
        ("{id}/5000,5000,10,10/max/0/default.jpg", 400),
        ("{id}/nonsense/max/0/default.jpg", 400),
        ("{id};z=9/full/max/0/default.jpg", 400),
        ("{id};q=1/full/max/0/default.jpg", 400),
        ("999999/full/max/0/default.jpg", 404),
        ("no-such-id/info.json", 404),
    ],
)
def test_errors(
    client: testing.TestClient, image: tuple[int, np.ndarray], path: str, status: int
) -> None:
    answer = client.simulate_get("/iiif/3/" + path.format(id=image[0]))
    assert answer.status_code == status, answer.text


def test_private_images_are_404(app: CoverslipApp, client: testing.TestClient) -> None:
    services = app.services
    owner, group = services.catalog.ensure_local_admin()
    hidden = services.catalog.create_image("hidden", owner, group)
    services.importer().build(
        hidden, ArrayReader(np.zeros((1, 1, 1, 8, 8), np.uint8)), ImportOptions()
    )
    assert client.simulate_get(f"/iiif/3/{hidden}/info.json").status_code == 404
    assert client.simulate_get(f"/iiif/3/{hidden}/full/max/0/default.jpg").status_code == 404


@pytest.fixture(scope="module")
def validator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real server with the validator's 1000×1000 squares image under its identifier."""
    folder = tmp_path_factory.mktemp("validator")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "-d",
            str(folder),
            "iiif-validator-ng==0.1.0",
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(folder.glob("iiif_validator_ng-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        (folder / "squares.png").write_bytes(archive.read("iiif_validator/validation_image.png"))
    home = folder / "home"
    env = {**os.environ, "COVERSLIP_HOME": str(home), "COVERSLIP_WEB_WORKERS": "2"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "coverslip.cli", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("user", "ensure-admin")
    output = run("import", str(folder / "squares.png"), "--group", "Public", "--json")
    image_id = json.loads(output.strip().splitlines()[-1])["imported"][0]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "coverslip.cli", "serve", "--port", str(port)],
        env={**env, "COVERSLIP_IIIF_ALIASES": f"{VALIDATION_ID}={image_id}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, 60)
        yield port
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_official_validator_level_2(validator_server: int) -> None:
    validate = Path(sys.executable).with_name("iiif-validate.py")
    done = subprocess.run(
        [
            sys.executable,
            str(validate),
            "-s",
            f"127.0.0.1:{validator_server}",
            "-p",
            "iiif/3",
            "-i",
            VALIDATION_ID,
            "--version=3.0",
            "--level",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # NOTE: the validator's size_noup also wants `!2000,3000` on a 1000² image refused; the
    # Image API 3.0 says `!w,h` returns an image "as large as possible but not larger than the
    # extracted region, w or h", which Coverslip does (the region's size; see
    # test_sizes). Its other sizes there must still fail.
    report = done.stdout + done.stderr
    results = re.findall(r"^\[\d+\] test (\S+) (PASS|FAIL)", report, re.MULTILINE)
    assert len(results) >= 33, report[-4000:]
    failed = [name for name, verdict in results if verdict == "FAIL"]
    assert failed in ([], ["size_noup"]), report[-4000:]
    for size in ("1500,1500", ",1500", "1500,", "pct:200"):
        url = (
            f"http://127.0.0.1:{validator_server}/iiif/3/{VALIDATION_ID}/full/{size}/0/default.jpg"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)
        assert refused.value.code == 400, size


def test_jpeg_quality_and_chroma_are_settings(
    app: CoverslipApp, image: tuple[int, np.ndarray]
) -> None:
    from PIL import Image as PILImage
    from PIL import JpegImagePlugin

    image_id, _ = image
    path = f"/iiif/3/{image_id}/0,0,256,256/max/0/default.jpg?c=1|0:4095$FF8000"

    def jpeg(client: testing.TestClient) -> tuple[int, int]:
        answer = client.simulate_get(path)
        assert answer.status_code == 200, answer.text
        decoded = PILImage.open(io.BytesIO(answer.content))
        return JpegImagePlugin.get_sampling(decoded), len(answer.content)

    full, full_size = jpeg(testing.TestClient(app))
    assert full == 0  # 4:4:4, the default
    home = Home(app.services.home.root)
    smaller = create_app(
        home.settings({}, {"iiif.jpeg_quality": 50, "iiif.jpeg_chroma": "4:2:0"}), home
    )
    subsampled, size = jpeg(testing.TestClient(smaller))
    assert subsampled == 2  # 4:2:0
    assert size < full_size
