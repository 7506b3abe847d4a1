"""OME-Zarr label images as regions of interest: each label value an ROI with a Mask shape on
every plane it occurs on, its box, statistics and pixels checked against numpy over the
label array written here; label images that do not fit the image are left out."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import zarr
from falcon import testing
from PIL import Image

from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app
from tests.servers import store_settings
from tests.test_format_omezarr import group, write_image

RNG = np.random.default_rng(12)
Z, HEIGHT, WIDTH = 2, 40, 50


def nuclei() -> np.ndarray:
    """Z, Y, X labels: 1 on plane 0 only, 2 on both planes, 5 a lone pixel on plane 1."""
    found = np.zeros((Z, HEIGHT, WIDTH), dtype=np.uint16)
    found[0, 3:9, 4:12] = 1
    found[0, 20:30, 30:33] = 2
    found[0, 25, 34] = 2  # a second piece: the box holds both
    found[1, 10:14, 40:49] = 2
    found[1, 39, 49] = 5
    return found


def cells() -> np.ndarray:
    """Y, X labels, the same on every plane: one ring-shaped cell."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    distance = np.hypot(yy - 20, xx - 20)
    return ((distance > 5) & (distance < 12)).astype(np.int32) * 3


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """An OME-Zarr image with a labels group, and its pixels (C, Z, Y, X)."""
    folder = tmp_path_factory.mktemp("labels")
    data = RNG.integers(0, 4000, (2, Z, HEIGHT, WIDTH), dtype=np.uint16)  # C, Z, Y, X
    path = folder / "cells.zarr"
    write_image(path, [data], 2, "czyx")
    names = ["nuclei", "cells", "floats", "small", "ghost"]
    group(path / "labels", 2, {"labels": names})
    write_image(path / "labels" / "nuclei", [nuclei()], 2, "zyx")
    colours = {"colors": [{"label-value": 1, "rgba": [255, 0, 0, 255]}]}
    zarr.open_group(path / "labels" / "nuclei", mode="a").attrs["image-label"] = colours
    write_image(path / "labels" / "cells", [cells()], 2, "yx")
    write_image(path / "labels" / "floats", [np.ones((HEIGHT, WIDTH), np.float32)], 2, "yx")
    write_image(path / "labels" / "small", [np.ones((HEIGHT // 2, WIDTH), np.uint8)], 2, "yx")
    return path, data


def imported(home: Home, path: Path, **settings: str) -> tuple[testing.TestClient, int]:
    app = create_app(home.settings({}, settings), home)
    services = app.services
    owner, _default = services.catalog.ensure_local_admin()
    options = ImportOptions(owner_id=owner, group_id=services.auth.ensure_public_group())
    return testing.TestClient(app), services.importer().import_path(path, options)


@pytest.fixture(scope="module")
def served(
    labelled: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> tuple[testing.TestClient, int, np.ndarray, Home]:
    path, data = labelled
    home = Home(tmp_path_factory.mktemp("labels-home") / "home")
    client, image_id = imported(home, path)
    return client, image_id, data, home


def test_each_label_value_is_an_roi_with_a_mask_per_plane(
    served: tuple[testing.TestClient, int, np.ndarray, Home],
) -> None:
    client, image_id, _, home = served
    answer = client.simulate_get(f"/webgateway/get_rois_json/{image_id}/")
    assert answer.status_code == 200, answer.text
    rois = answer.json
    # "floats" are not integers, "small" does not fit, "ghost" is not there: left out.
    assert [roi["name"] for roi in rois] == ["nuclei 1", "nuclei 2", "nuclei 5", "cells 3"]
    assert [roi["id"] for roi in rois] == [1, 2, 3, 4]
    labels = {"nuclei": nuclei(), "cells": cells()}
    for roi in rois:
        name, value = roi["name"].split()
        for shape in roi["shapes"]:
            assert shape["type"] == "Mask"
            assert (shape["label"], shape["labelValue"]) == (name, int(value))
            stack = labels[name]
            plane = stack[shape["theZ"]] if stack.ndim == 3 else stack
            ys, xs = np.nonzero(plane == int(value))
            box = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert (shape["x"], shape["y"], shape["width"], shape["height"]) == box
    planes = {roi["name"]: [s["theZ"] for s in roi["shapes"]] for roi in rois}
    assert planes == {"nuclei 1": [0], "nuclei 2": [0, 1], "nuclei 5": [1], "cells 3": [None]}
    first = rois[0]["shapes"][0]
    assert (first["fillColor"], first["fillAlpha"]) == ("#FF0000", 1.0)  # its image-label
    # The labels are kept inside the image's own OME-Zarr, where the format puts them.
    assert (home.pyramid(image_id) / "labels" / "nuclei" / ".zattrs").is_file()


def shapes_by_name(client: testing.TestClient, image_id: int) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    rois = client.simulate_get(f"/webgateway/get_rois_json/{image_id}/").json
    return {roi["name"]: roi["shapes"] for roi in rois}


@pytest.mark.parametrize(("name", "index"), [("nuclei 2", 0), ("nuclei 2", 1), ("cells 3", 0)])
def test_mask_statistics_equal_numpy_over_the_label(
    served: tuple[testing.TestClient, int, np.ndarray, Home], name: str, index: int
) -> None:
    client, image_id, data, _ = served
    shape = shapes_by_name(client, image_id)[name][index]
    z = shape["theZ"] if shape["theZ"] is not None else 1
    answer = client.simulate_get(f"/webgateway/shape_stats/{image_id}/{shape['id']}/?theZ={z}")
    assert answer.status_code == 200, answer.text
    stats = answer.json
    inside = (nuclei()[z] == 2) if name == "nuclei 2" else (cells() == 3)
    assert (stats["z"], stats["area"]) == (z, int(inside.sum()))
    for c, channel in enumerate(stats["channels"]):
        values = data[c, z][inside].astype(np.float64)
        assert channel["mean"] == pytest.approx(values.mean())
        assert (channel["min"], channel["max"]) == (values.min(), values.max())
        assert channel["sum"] == pytest.approx(values.sum())


def test_a_planes_mask_statistics_are_each_masks(
    served: tuple[testing.TestClient, int, np.ndarray, Home],
) -> None:
    client, image_id, _, _ = served
    plane = client.simulate_get(f"/webgateway/shape_stats/{image_id}/?theZ=1").json
    on_z1 = [s for shapes in shapes_by_name(client, image_id).values() for s in shapes if s["theZ"] in (None, 1)]  # fmt: skip
    assert sorted(found["shape"] for found in plane["shapes"]) == sorted(s["id"] for s in on_z1)
    for found in plane["shapes"]:
        one = client.simulate_get(f"/webgateway/shape_stats/{image_id}/{found['shape']}/?theZ=1")
        assert found == one.json


def test_a_mask_is_served_as_a_png_of_its_box(
    served: tuple[testing.TestClient, int, np.ndarray, Home],
) -> None:
    client, image_id, _, _ = served
    shape = shapes_by_name(client, image_id)["nuclei 2"][0]
    answer = client.simulate_get(f"/webgateway/render_shape_mask/{image_id}/{shape['id']}/")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGBA"))
    x, y, w, h = shape["x"], shape["y"], shape["width"], shape["height"]
    want = nuclei()[0, y : y + h, x : x + w] == 2
    assert picture.shape == (h, w, 4)
    assert np.array_equal(picture[..., 3] > 0, want)
    red = shapes_by_name(client, image_id)["nuclei 1"][0]
    coloured = client.simulate_get(f"/webgateway/render_shape_mask/{image_id}/{red['id']}/")
    pixels = np.asarray(Image.open(io.BytesIO(coloured.content)).convert("RGBA"))
    assert tuple(pixels[0, 0]) == (255, 0, 0, 255)
    missing = client.simulate_get(f"/webgateway/render_shape_mask/{image_id}/99/")
    assert missing.status_code == 404


def test_an_image_without_labels_draws_no_mask(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    app = create_app(home.settings({}, {}), home)
    services = app.services
    owner, _default = services.catalog.ensure_local_admin()
    write_image(tmp_path / "plain.zarr", [np.zeros((1, 8, 8), np.uint8)], 3)
    options = ImportOptions(owner_id=owner, group_id=services.auth.ensure_public_group())
    image_id = services.importer().import_path(tmp_path / "plain.zarr", options)
    client = testing.TestClient(app)
    assert client.simulate_get(f"/webgateway/get_rois_json/{image_id}/").json == []
    assert not (home.pyramid(image_id) / "labels").exists()
    assert client.simulate_get(f"/webgateway/render_shape_mask/{image_id}/1/").status_code == 404


@pytest.mark.slow
def test_labels_kept_in_an_object_store_are_served_as_the_same_masks(
    labelled: tuple[Path, np.ndarray],
    served: tuple[testing.TestClient, int, np.ndarray, Home],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local, local_id, _, _ = served
    with store_settings(tmp_path, "coverslip-labels", monkeypatch) as (server, settings):
        home = Home(tmp_path / "home")
        client, image_id = imported(home, labelled[0], **settings)
        assert not (home.pyramid(image_id) / "labels").exists()  # in the store only
        keys = [
            item["Key"]
            for item in server.client().list_objects_v2(Bucket="coverslip-labels")["Contents"]  # type: ignore[attr-defined]
        ]
        assert any("/labels/nuclei/" in key for key in keys), keys
        stored = client.simulate_get(f"/webgateway/get_rois_json/{image_id}/")
        assert stored.status_code == 200, stored.text
        assert stored.json == local.simulate_get(f"/webgateway/get_rois_json/{local_id}/").json
        shape = shapes_by_name(client, image_id)["nuclei 2"][0]
        answer = client.simulate_get(f"/webgateway/render_shape_mask/{image_id}/{shape['id']}/")
        picture = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGBA"))
        x, y, w, h = shape["x"], shape["y"], shape["width"], shape["height"]
        assert np.array_equal(picture[..., 3] > 0, nuclei()[0, y : y + h, x : x + w] == 2)
        # The same OME-Zarr in a bucket, registered where it is: its labels are read there.
        for path in sorted(p for p in labelled[0].rglob("*") if p.is_file()):
            key = f"public/cells.zarr/{path.relative_to(labelled[0]).as_posix()}"
            server.client().put_object(Bucket="coverslip-labels", Key=key, Body=path.read_bytes())  # type: ignore[attr-defined]
        services = client.app.services  # type: ignore[attr-defined]
        options = ImportOptions(
            owner_id=services.catalog.ensure_local_admin()[0],
            group_id=services.auth.ensure_public_group(),
            in_place=True,
        )
        [in_place] = services.importer().register_url(
            "s3://coverslip-labels/public/cells.zarr", options
        )
        there = client.simulate_get(f"/webgateway/get_rois_json/{in_place}/").json
        assert there == stored.json
