"""The `coverslip` command end to end in a temporary instance home."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from coverslip.cli import main


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    home = tmp_path / "home"

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--home", str(home), *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_import_list_show_delete(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tifffile.imwrite(
        tmp_path / "a.tif", np.full((3, 40, 50), 7, np.uint16), photometric="minisblack"
    )
    np.save(tmp_path / "b.npy", np.zeros((20, 30), np.uint8))
    out = json.loads(
        run(
            "import", str(tmp_path / "a.tif"), str(tmp_path / "b.npy"), "--dataset", "Lab", "--json"
        )
    )
    assert out["failed"] == 0
    first, second = out["imported"]
    listed = json.loads(run("images", "list", "--json"))
    assert [(i["id"], i["status"]) for i in listed] == [(first, "active"), (second, "active")]
    assert listed[0]["size"] == {"t": 1, "c": 1, "z": 3, "y": 40, "x": 50}
    assert "a" in run("images", "list")
    shown = json.loads(run("images", "show", str(first)))
    assert shown["channels"][0]["min"] == 7
    datasets = json.loads(run("datasets", "list", "--json"))
    assert [(d["name"], d["image_count"]) for d in datasets] == [("Lab", 2)]
    run("images", "delete", str(first))
    assert [i["id"] for i in json.loads(run("images", "list", "--json"))] == [second]
    assert not (tmp_path / "home" / "pixels" / f"{first}.ome.zarr").exists()
    assert not (tmp_path / "home" / "originals" / str(first)).exists()
    assert "does not exist" in run("images", "show", str(first), code=1)


def test_failed_files_are_named_and_the_rest_import(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    np.save(tmp_path / "good.npy", np.zeros((4, 4), np.uint8))
    out = run("import", str(tmp_path / "bad.tif"), str(tmp_path / "good.npy"), code=1)
    assert "bad.tif" in out
    assert "imported 1 image(s)" in out
    again = run("import", str(tmp_path / "good.npy"), code=1)
    assert "already imported as image" in again


def test_datasets_commands(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    np.save(tmp_path / "a.npy", np.zeros((4, 4), np.uint8))
    image_id = json.loads(run("import", str(tmp_path / "a.npy"), "--json"))["imported"][0]
    assert "created dataset" in run("datasets", "create", "Screen")
    dataset_id = json.loads(run("datasets", "list", "--json"))[0]["id"]
    run("datasets", "add", str(dataset_id), str(image_id))
    assert json.loads(run("datasets", "list", "--json"))[0]["image_count"] == 1
    run("datasets", "remove", str(dataset_id), str(image_id))
    assert json.loads(run("datasets", "list", "--json"))[0]["image_count"] == 0
    assert "exists already" in run("datasets", "create", "Screen", code=1)


def test_config_commands(run) -> None:  # type: ignore[no-untyped-def]
    assert run("config", "get", "web.port").strip() == "4080"
    run("config", "set", "web.port", "5050")
    assert run("config", "get", "web.port").strip() == "5050"
    listed = json.loads(run("config", "list", "--json"))
    assert {k: listed[0][k] for k in ("name", "value")} == {"name": "web.port", "value": 5050}
    err = run("config", "set", "web.port", "http", code=1)
    assert "web.port" in err and "'http'" in err and "integer" in err
    assert "unknown setting" in run("config", "set", "web.prot", "1", code=1)
    run("config", "unset", "web.port")
    assert run("config", "get", "web.port").strip() == "4080"
    assert "web.workers" in run("config", "list", "--defaults")
