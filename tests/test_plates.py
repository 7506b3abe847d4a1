"""HCS plates: an OME-Zarr plate imports as one plate of wells and fields; OMERO's grid JSON."""

from __future__ import annotations

import json
from pathlib import Path

import falcon.testing
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from coverslip.cli import main
from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.pixels import Pyramid
from coverslip.web.app import create_app

ROWS, COLUMNS, FIELDS = ["A", "B"], ["1", "2", "3"], 2


def write_plate(path: Path) -> dict[tuple[str, str, int], np.ndarray]:
    """Write an OME-Zarr 0.5 plate: wells A1, A3 and B2, two fields each; return the fields."""
    rng = np.random.default_rng(21)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    wells = [("A", "1"), ("A", "3"), ("B", "2")]
    root.attrs["ome"] = {
        "version": "0.5",
        "plate": {
            "name": "screen-7",
            "rows": [{"name": r} for r in ROWS],
            "columns": [{"name": c} for c in COLUMNS],
            "wells": [
                {"path": f"{r}/{c}", "rowIndex": ROWS.index(r), "columnIndex": COLUMNS.index(c)}
                for r, c in wells
            ],
            "field_count": FIELDS,
        },
    }
    fields = {}
    for r, c in wells:
        well = root.create_group(f"{r}/{c}")
        well.attrs["ome"] = {
            "version": "0.5",
            "well": {"images": [{"path": str(f)} for f in range(FIELDS)]},
        }
        for f in range(FIELDS):
            data = rng.integers(0, 4000, size=(1, 1, 1, 24, 32), dtype=np.uint16)
            image = well.create_group(str(f))
            image.attrs["ome"] = {
                "version": "0.5",
                "multiscales": [
                    {
                        "axes": [
                            {"name": "t", "type": "time"},
                            {"name": "c", "type": "channel"},
                            {"name": "z", "type": "space", "unit": "micrometer"},
                            {"name": "y", "type": "space", "unit": "micrometer"},
                            {"name": "x", "type": "space", "unit": "micrometer"},
                        ],
                        "datasets": [
                            {
                                "path": "0",
                                "coordinateTransformations": [
                                    {"type": "scale", "scale": [1, 1, 1, 0.65, 0.65]}
                                ],
                            }
                        ],
                    }
                ],
            }
            image.create_array("0", data=data, chunks=data.shape)
            fields[(r, c, f)] = data[0, 0, 0]
    return fields


@pytest.fixture
def plate(tmp_path: Path) -> tuple[Home, int, dict[tuple[str, str, int], np.ndarray]]:
    home = Home(tmp_path / "home")
    fields = write_plate(tmp_path / "screen.ome.zarr")
    app = create_app(home.settings({}, {"imports.thumbnail": False}), home)
    ids = app.services.importer().import_fileset(tmp_path / "screen.ome.zarr", ImportOptions())
    assert len(ids) == len(fields)
    (found,) = app.services.catalog.list_plates()
    return home, found.id, fields


def test_plate_imports_as_wells_and_fields(
    plate: tuple[Home, int, dict[tuple[str, str, int], np.ndarray]],
) -> None:
    home, plate_id, fields = plate
    app = create_app(home.settings({}, {"imports.thumbnail": False}), home)
    catalog = app.services.catalog
    found = catalog.get_plate(plate_id)
    assert (found.name, found.rows, found.columns) == ("screen-7", ROWS, COLUMNS)
    assert len(found.wells) == 3
    for well in found.wells:
        assert len(well.images) == FIELDS
        for f, image_id in enumerate(well.images):
            expected = fields[(ROWS[well.row], COLUMNS[well.column], f)]
            plane = Pyramid(home.pyramid(image_id)).read(0, 0, 0, 0, slice(None), slice(None))
            np.testing.assert_array_equal(plane, expected)
            assert catalog.plate_of(image_id) == (plate_id, well.row, well.column, f)


def test_plate_grid_json_as_omero_answers_it(
    plate: tuple[Home, int, dict[tuple[str, str, int], np.ndarray]],
) -> None:
    home, plate_id, _fields = plate
    app = create_app(home.settings({}, {"imports.thumbnail": False}), home)
    client = falcon.testing.TestClient(app)
    # The local administrator owns the plate; anonymous visitors of a non-public group see none.
    assert client.simulate_get(f"/webgateway/plate/{plate_id}/").status_code == 404
    assert client.simulate_get("/webgateway/plate/999/").status_code == 404
    assert client.simulate_get(f"/webgateway/plate/{plate_id}/x/").status_code == 404
    auth = app.services.auth
    user = auth.directory.add_user("screener", None)
    auth.directory.add_member(app.services.catalog.get_plate(plate_id).group_id, user)
    _token_id, token = auth.tokens.create(user)
    headers = {"X-Auth-Token": token}
    for field in (0, 1):
        result = client.simulate_get(f"/webgateway/plate/{plate_id}/{field}/", headers=headers)
        assert result.status_code == 200, result.text
        grid = result.json
        assert (grid["rowlabels"], grid["collabels"]) == (ROWS, COLUMNS)
        assert [[cell is not None for cell in row] for row in grid["grid"]] == [
            [True, False, True],
            [False, True, False],
        ]
        cell = grid["grid"][0][0]
        assert cell["field"] == field
        assert cell["thumb_url"] == f"/webgateway/render_thumbnail/{cell['id']}/96/"
        thumb = client.simulate_get(cell["thumb_url"], headers=headers)
        assert thumb.status_code == 200
    result = CliRunner().invoke(main, ["--home", str(home.root), "plates", "show", str(plate_id)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [(w["row"], w["column"]) for w in shown["wells"]] == [("A", "1"), ("A", "3"), ("B", "2")]
