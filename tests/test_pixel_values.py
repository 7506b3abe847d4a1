"""`pixel_values`: the stored values of a small area, every channel, against the source array."""

from __future__ import annotations

import numpy as np
import pytest
from falcon import testing

from coverslip.home import Home
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import add_image

RNG = np.random.default_rng(8)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> CoverslipApp:
    home = Home(tmp_path_factory.mktemp("values"))
    return create_app(home.settings({}, {"pixels.tile_size": "256"}), home)


@pytest.fixture(scope="module")
def client(app: CoverslipApp) -> testing.TestClient:
    return testing.TestClient(app)


@pytest.fixture(scope="module")
def stack(app: CoverslipApp) -> tuple[int, np.ndarray]:
    """2 channels × 3 Z × 2 T of uint16, 300 × 520 (chunks of 256: areas cross chunk edges)."""
    data = RNG.integers(0, 65535, (2, 2, 3, 300, 520), dtype=np.uint16)
    return add_image(app, data, "stack"), data


def values(client: testing.TestClient, url: str) -> dict:  # type: ignore[type-arg]
    answer = client.simulate_get(url)
    assert answer.status_code == 200, answer.text
    assert "private" in answer.headers["cache-control"]
    return answer.json  # type: ignore[no-any-return]


@pytest.mark.parametrize(("x", "y", "w", "h"), [(0, 0, 1, 1), (250, 250, 12, 9), (519, 299, 1, 1)])
def test_every_channel_of_the_area_is_the_source(
    client: testing.TestClient, stack: tuple[int, np.ndarray], x: int, y: int, w: int, h: int
) -> None:
    image_id, data = stack
    got = values(client, f"/webgateway/pixel_values/{image_id}/2/1/?x={x}&y={y}&w={w}&h={h}")
    assert (got["x"], got["y"], got["w"], got["h"], got["z"], got["t"]) == (x, y, w, h, 2, 1)
    assert got["pixel_type"] == "uint16"
    for index, channel in enumerate(got["channels"]):
        assert channel["index"] == index
        np.testing.assert_array_equal(channel["values"], data[1, index, 2, y : y + h, x : x + w])


def test_an_area_past_the_edge_is_cut_to_the_image(
    client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, data = stack
    got = values(client, f"/webgateway/pixel_values/{image_id}/0/0/?x=510&y=295&w=64&h=64")
    assert (got["w"], got["h"]) == (10, 5)
    np.testing.assert_array_equal(got["channels"][1]["values"], data[0, 1, 0, 295:, 510:])


def test_float_nan_is_null(app: CoverslipApp, client: testing.TestClient) -> None:
    data = np.arange(64, dtype=np.float32).reshape(1, 1, 1, 8, 8) / 3
    data[0, 0, 0, 2, 3] = np.nan
    image_id = add_image(app, data, "floats")
    got = values(client, f"/webgateway/pixel_values/{image_id}/0/0/?x=2&y=2&w=3&h=1")
    assert got["channels"][0]["values"] == [
        [float(data[0, 0, 0, 2, 2]), None, float(data[0, 0, 0, 2, 4])]
    ]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("x=520&y=0", "x"),
        ("x=-1&y=0", "x"),
        ("x=0&y=300", "y"),
        ("y=0", "x"),
        ("x=0&y=0&w=65", "w"),
        ("x=0&y=0&h=0", "h"),
        ("x=0&y=" + "9" * 5000, "y"),
        ("x=+1&y=0", "x"),
    ],
)
def test_bad_areas_are_400_naming_the_parameter(
    client: testing.TestClient, stack: tuple[int, np.ndarray], query: str, named: str
) -> None:
    image_id, _data = stack
    answer = client.simulate_get(f"/webgateway/pixel_values/{image_id}/0/0/?{query}")
    assert answer.status_code == 400, answer.text
    assert answer.json["description"].startswith(f"{named}: "), answer.json


def test_a_plane_the_image_lacks_and_a_hidden_image_are_refused(
    app: CoverslipApp, client: testing.TestClient, stack: tuple[int, np.ndarray]
) -> None:
    image_id, _data = stack
    assert (
        client.simulate_get(f"/webgateway/pixel_values/{image_id}/3/0/?x=0&y=0").status_code == 400
    )
    private = app.services.auth.directory.add_group("private-lab", "private")
    hidden = add_image(app, np.zeros((1, 1, 1, 4, 4), np.uint8), "hidden", group=private)
    answer = client.simulate_get(f"/webgateway/pixel_values/{hidden}/0/0/?x=0&y=0")
    missing = client.simulate_get("/webgateway/pixel_values/999999/0/0/?x=0&y=0")
    assert answer.status_code == missing.status_code == 404
    assert answer.text == missing.text
