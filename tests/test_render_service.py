"""The render service below web/: what it imports, and that every surface renders through it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from falcon import testing

from coverslip.errors import NotFound
from coverslip.home import Home
from coverslip.render.service import Region
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import add_image, decode, quantize


def _loads(statement: str, module: str) -> bool:
    """Return whether running ``statement`` in a fresh interpreter loads ``module``."""
    code = f"import sys\n{statement}\nprint({module!r} in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return out.strip() == "True"


def test_pixels_and_render_do_not_load_the_database() -> None:
    assert not _loads("import coverslip.render.service, coverslip.pixels.pyramid", "sqlalchemy")
    assert not _loads("import coverslip.pixels", "sqlalchemy")


def test_the_image_record_is_one_type_wherever_it_is_imported() -> None:
    from coverslip.catalog import Image as from_catalog
    from coverslip.catalog.records import Image as from_records
    from coverslip.model import Image

    assert from_catalog is from_records is Image


def test_the_render_service_loads_no_falcon_and_no_database() -> None:
    assert not _loads("import coverslip.render.app", "falcon")
    assert not _loads("import coverslip.render.app", "sqlalchemy")


# -- the service itself, on images imported through the real pipeline -----------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> CoverslipApp:
    home = Home(tmp_path_factory.mktemp("render-service"))
    return create_app(home.settings({}, {"pixels.tile_size": "256"}), home)


@pytest.fixture(scope="module")
def client(app: CoverslipApp) -> testing.TestClient:
    return testing.TestClient(app)


@pytest.fixture(scope="module")
def flat(app: CoverslipApp) -> tuple[int, np.ndarray]:
    data = np.random.default_rng(7).integers(10, 4000, (1, 1, 1, 90, 120), dtype=np.uint16)
    return add_image(app, data, "flat"), data


@pytest.fixture(scope="module")
def hidden(app: CoverslipApp) -> int:
    group = app.services.auth.directory.add_group("render-private", "private")
    data = np.zeros((1, 1, 1, 8, 8), dtype=np.uint8)
    return add_image(app, data, "secret", group=group)


def test_a_plane_is_the_numpy_rendering_of_its_source(
    app: CoverslipApp, flat: tuple[int, np.ndarray]
) -> None:
    image_id, data = flat
    render = app.services.render
    view = render.view(app.services.auth.anonymous, image_id, query={"m": "g"})
    got = decode(render.fetch(render.plane(view, "png", 0.9)))
    plane = data[0, 0, 0]
    expected = quantize(plane, float(plane.min()), float(plane.max()))
    np.testing.assert_array_equal(got, np.repeat(expected[..., None], 3, axis=2))


def test_gateway_and_iiif_answer_what_the_service_keys(
    app: CoverslipApp, client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, _data = flat
    render = app.services.render
    view = render.view(app.services.auth.anonymous, image_id)
    plane = render.plane(view, "png", 0.85)
    got = client.simulate_get(f"/webgateway/render_image/{image_id}/", params={"format": "png"})
    assert got.status_code == 200 and got.headers["etag"].strip('"').endswith(plane.key)
    whole = Region(0, 0, 120, 90)
    iiif = render.iiif(view, whole, (120, 90), False, 0.0, "color", "png")
    got = client.simulate_get(f"/iiif/3/{image_id}/full/max/0/default.png")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.headers["etag"].strip('"').endswith(iiif.key)
    thumb = render.thumbnail(app.services.auth.anonymous, image_id, None, None, None)
    # The import rendered the default thumbnail under the key the gateway asks for.
    assert app.services.cache.get(image_id, thumb.key) is not None
    got = client.simulate_get(f"/webgateway/render_thumbnail/{image_id}/")
    assert got.headers["etag"].strip('"').endswith(thumb.key)


def test_histogram_counts_the_source_plane(
    client: testing.TestClient, flat: tuple[int, np.ndarray]
) -> None:
    image_id, data = flat
    plane = data[0, 0, 0]
    got = client.simulate_get(
        f"/webgateway/histogram_json/{image_id}/channel/0/", params={"bins": "16"}
    )
    expected, _ = np.histogram(plane, bins=16, range=(float(plane.min()), float(plane.max())))
    assert got.json["data"] == expected.tolist()
    bad = client.simulate_get(f"/webgateway/histogram_json/{image_id}/channel/3/")
    assert bad.status_code == 400 and "c" in bad.json["description"]


def test_a_saved_setting_replaces_the_parsed_one(
    app: CoverslipApp, flat: tuple[int, np.ndarray]
) -> None:
    image_id, _data = flat
    services = app.services
    render = services.render
    anyone = services.auth.anonymous
    owner = render.image(anyone, image_id).owner_id
    for start, end in ((100.0, 900.0), (200.0, 300.0)):
        _tag, current = render.settings(anyone, render.image(anyone, image_id))
        channel = replace(current.channels[0], start=start, end=end)
        services.catalog.save_rdef(image_id, owner, replace(current, channels=(channel,)).to_json())
        image = render.image(anyone, image_id)
        tag, rdef = render.settings(anyone, image)
        assert (rdef.channels[0].start, rdef.channels[0].end) == (start, end)
        assert tag == f"u{owner}@{image.rdef_version}"


def test_a_hidden_image_is_refused_like_a_missing_one(app: CoverslipApp, hidden: int) -> None:
    services = app.services
    anyone = services.auth.anonymous
    with pytest.raises(NotFound) as missing:
        services.render.view(anyone, 987_654)
    with pytest.raises(NotFound) as refused:
        services.render.view(anyone, hidden)
    assert str(refused.value).replace(str(hidden), "ID") == str(missing.value).replace(
        "987654", "ID"
    )
    record = services.catalog.get_image(hidden)
    with pytest.raises(NotFound):
        services.auth.visible_image(anyone, record)
    owner = services.auth.caller_for_user(record.owner_id, "session")
    assert owner is not None
    assert services.auth.visible_image(owner, record) is record
    assert services.render.view(owner, hidden).image.id == hidden
