"""Regions of interest from an OME-TIFF's OME-XML: get_rois_json as OMERO.web answers it, and
each shape's statistics against numpy over a mask computed here from the shape's geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from falcon import testing

from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app

RNG = np.random.default_rng(5)
HEIGHT, WIDTH = 90, 120
OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Image ID="Image:0" Name="cells">
    <Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="{w}" SizeY="{h}"
            SizeZ="2" SizeC="2" SizeT="1" BigEndian="false">
      <Channel ID="Channel:0:0" Name="DAPI" SamplesPerPixel="1"/>
      <Channel ID="Channel:0:1" Name="GFP" SamplesPerPixel="1"/>
      <TiffData IFD="0" PlaneCount="4"/>
    </Pixels>
    <ROIRef ID="ROI:0"/>
    <ROIRef ID="ROI:1"/>
  </Image>
  <ROI ID="ROI:0" Name="nucleus">
    <Union>
      <Rectangle ID="Shape:0:0" X="10.5" Y="20" Width="30" Height="15.5" TheZ="1"
                 StrokeColor="-16776961" Text="box"/>
      <Ellipse ID="Shape:0:1" X="80" Y="45.5" RadiusX="20.5" RadiusY="12"/>
    </Union>
  </ROI>
  <ROI ID="ROI:1">
    <Union>
      <Polygon ID="Shape:1:0" Points="5.2,5.1 40.3,8.2 22.1,30.3"/>
      <Point ID="Shape:1:1" X="100.7" Y="3.2"/>
      <Line ID="Shape:1:2" X1="0" Y1="0" X2="50" Y2="60"/>
    </Union>
  </ROI>
  <ROI ID="ROI:2"><Union><Point ID="Shape:2:0" X="1" Y="1"/></Union></ROI>
</OME>"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[testing.TestClient, int, np.ndarray]:
    folder = tmp_path_factory.mktemp("rois")
    data = RNG.integers(0, 4000, (2, 2, HEIGHT, WIDTH), dtype=np.uint16)  # C, Z, Y, X
    path = folder / "cells.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        planes = [data[c, z] for c in range(2) for z in range(2)]  # XYZCT: Z fastest
        tif.write(planes[0], description=OME.format(w=WIDTH, h=HEIGHT), metadata=None)
        for plane in planes[1:]:
            tif.write(plane, metadata=None)
    home = Home(folder / "home")
    app = create_app(home.settings({}, {}), home)
    services = app.services
    owner, _default = services.catalog.ensure_local_admin()
    options = ImportOptions(owner_id=owner, group_id=services.auth.ensure_public_group())
    image_id = services.importer().import_path(path, options)
    return testing.TestClient(app), image_id, data


def test_rois_json_lists_the_images_rois_as_omero_web(
    served: tuple[testing.TestClient, int, np.ndarray],
) -> None:
    client, image_id, _ = served
    answer = client.simulate_get(f"/webgateway/get_rois_json/{image_id}/")
    assert answer.status_code == 200, answer.text
    rois = answer.json
    assert [roi["id"] for roi in rois] == [1, 2]  # ROI:2 is not the image's
    assert rois[0]["name"] == "nucleus"
    rect, ellipse = rois[0]["shapes"]
    assert (rect["type"], rect["x"], rect["y"], rect["width"], rect["height"]) == (
        "Rectangle",
        10.5,
        20.0,
        30.0,
        15.5,
    )
    assert (rect["theZ"], rect["theT"], rect["textValue"]) == (1, None, "box")
    assert (rect["strokeColor"], rect["strokeAlpha"]) == ("#FF0000", 1.0)  # 0xFF0000FF signed
    assert (ellipse["type"], ellipse["radiusX"], ellipse["radiusY"]) == ("Ellipse", 20.5, 12.0)
    polygon, point, line = rois[1]["shapes"]
    assert polygon["points"] == "5.2,5.1 40.3,8.2 22.1,30.3"
    assert (point["type"], line["type"], line["x2"]) == ("Point", "Line", 50.0)
    assert [s["id"] for roi in rois for s in roi["shapes"]] == [1, 2, 3, 4, 5]


def centres() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    return yy + 0.5, xx + 0.5


def expected(values: np.ndarray, inside: np.ndarray) -> dict[str, float]:
    chosen = values[inside].astype(np.float64)
    return {
        "min": chosen.min(), "max": chosen.max(), "mean": chosen.mean(),
        "sum": chosen.sum(), "std": chosen.std(),
    }  # fmt: skip


@pytest.mark.parametrize("shape_id", [1, 2, 4])
def test_shape_statistics_equal_numpy_over_the_same_mask(
    served: tuple[testing.TestClient, int, np.ndarray], shape_id: int
) -> None:
    client, image_id, data = served
    yy, xx = centres()
    masks = {
        # The rectangle is on Z 1 (its TheZ); a pixel is inside when its centre is.
        1: (1, (xx >= 10.5) & (xx < 40.5) & (yy >= 20) & (yy < 35.5)),
        2: (None, ((xx - 80) / 20.5) ** 2 + ((yy - 45.5) / 12) ** 2 <= 1),
        4: (None, (np.floor(xx) == 100) & (np.floor(yy) == 3)),
    }
    z, inside = masks[shape_id]
    answer = client.simulate_get(f"/webgateway/shape_stats/{image_id}/{shape_id}/")
    assert answer.status_code == 200, answer.text
    stats = answer.json
    plane = stats["z"]
    if z is not None:
        assert plane == z
    assert stats["area"] == int(inside.sum())
    for c, channel in enumerate(stats["channels"]):
        want = expected(data[c, plane], inside)
        for key, value in want.items():
            assert channel[key] == pytest.approx(value), (c, key)
    # Another plane by query.
    other = client.simulate_get(f"/webgateway/shape_stats/{image_id}/{shape_id}/?theZ=0").json
    assert other["z"] == 0 and other["channels"][1]["sum"] == pytest.approx(
        float(data[1, 0][inside].sum())
    )


def test_a_polygon_holds_the_pixels_whose_centres_it_encloses(
    served: tuple[testing.TestClient, int, np.ndarray],
) -> None:
    client, image_id, data = served
    yy, xx = centres()
    corners = [(5.2, 5.1), (40.3, 8.2), (22.1, 30.3)]  # no pixel centre on an edge
    # Inside a triangle: on the same side of each edge as the opposite corner.
    inside = np.ones(xx.shape, dtype=bool)
    for (xa, ya), (xb, yb), (xc, yc) in zip(
        corners, corners[1:] + corners[:1], corners[2:] + corners[:2], strict=True
    ):
        side = (xb - xa) * (yy - ya) - (yb - ya) * (xx - xa)
        inside &= np.sign(side) == np.sign((xb - xa) * (yc - ya) - (yb - ya) * (xc - xa))
    stats = client.simulate_get(f"/webgateway/shape_stats/{image_id}/3/?theZ=0").json
    assert stats["area"] == int(inside.sum())
    assert stats["channels"][0]["sum"] == pytest.approx(float(data[0, 0][inside].sum()))


def test_bad_shapes_are_named(served: tuple[testing.TestClient, int, np.ndarray]) -> None:
    client, image_id, _ = served
    line = client.simulate_get(f"/webgateway/shape_stats/{image_id}/5/")
    assert line.status_code == 400 and "encloses no pixels" in line.text
    missing = client.simulate_get(f"/webgateway/shape_stats/{image_id}/99/")
    assert missing.status_code == 404
    unknown = client.simulate_get("/webgateway/get_rois_json/9999/")
    assert unknown.status_code == 404


def test_a_planes_statistics_come_in_one_answer(
    served: tuple[testing.TestClient, int, np.ndarray],
) -> None:
    client, image_id, data = served
    answer = client.simulate_get(f"/webgateway/shape_stats/{image_id}/?theZ=0&theT=0")
    assert answer.status_code == 200, answer.text
    plane = answer.json
    assert (plane["z"], plane["t"]) == (0, 0)
    # The rectangle is on Z 2 only: the image's other four shapes are on every plane.
    by_shape = {found["shape"]: found for found in plane["shapes"]}
    assert sorted(by_shape) == [2, 3, 4, 5]
    assert by_shape[5]["area"] is None and "encloses no pixels" in by_shape[5]["why"]  # the line
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    ellipse = ((xx - 80) / 20.5) ** 2 + ((yy - 45.5) / 12) ** 2 <= 1
    assert by_shape[2]["area"] == int(ellipse.sum())
    for c, channel in enumerate(by_shape[2]["channels"]):
        values = data[c, 0][ellipse].astype(np.float64)
        assert channel["mean"] == pytest.approx(values.mean())
        assert (channel["min"], channel["max"]) == (values.min(), values.max())
    point = data[:, 0, 3, 100]  # the point at (100.7, 3.2) holds the pixel it falls in
    assert [ch["max"] for ch in by_shape[4]["channels"]] == [float(v) for v in point]
    on_z2 = client.simulate_get(f"/webgateway/shape_stats/{image_id}/?theZ=1").json
    assert 1 in {found["shape"] for found in on_z2["shapes"]}
    assert client.simulate_get(f"/webgateway/shape_stats/{image_id}/?theZ=9").status_code == 400


def test_an_image_without_rois_has_an_empty_list(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    app = create_app(home.settings({}, {}), home)
    services = app.services
    owner, _default = services.catalog.ensure_local_admin()
    np.save(tmp_path / "plain.npy", np.zeros((8, 8), np.uint8))
    options = ImportOptions(owner_id=owner, group_id=services.auth.ensure_public_group())
    image_id = services.importer().import_path(tmp_path / "plain.npy", options)
    answer = testing.TestClient(app).simulate_get(f"/webgateway/get_rois_json/{image_id}/")
    assert answer.status_code == 200 and answer.json == []
