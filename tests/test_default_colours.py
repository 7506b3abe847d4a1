"""Default channel colours at import, as OMERO's importer: the file's colour, else the emission
(or excitation) wavelength's (≤ 500 nm blue, 501–559 nm green, ≥ 560 nm red), else red, blue,
green by position; one channel without a colour is white (shown in greyscale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.services import Services


@pytest.fixture
def services(tmp_path: Path) -> Services:
    home = Home(tmp_path / "home")
    return Services.build(home.settings({}, {}), home)


def colours_after_import(services: Services, path: Path) -> list[str]:
    image_id = services.importer().import_path(path, ImportOptions())
    image = services.catalog.get_image(image_id)
    assert image is not None
    return [ch.color for ch in image.channels]


def write_ome(path: Path, size_c: int, channel: dict[str, list[object]]) -> Path:
    data = np.arange(size_c * 16 * 20, dtype=np.uint16).reshape(size_c, 16, 20)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CYX", "Channel": channel})
    return path


def test_emission_wavelengths_give_blue_green_red(services: Services, tmp_path: Path) -> None:
    path = write_ome(
        tmp_path / "waves.ome.tif",
        3,
        {"Name": ["DAPI", "GFP", "mCherry"], "EmissionWavelength": [450, 520, 600]},
    )
    assert colours_after_import(services, path) == ["0000FF", "00FF00", "FF0000"]


def test_excitation_stands_in_for_a_missing_emission(services: Services, tmp_path: Path) -> None:
    path = write_ome(tmp_path / "ex.ome.tif", 2, {"ExcitationWavelength": [405, 640]})
    assert colours_after_import(services, path) == ["0000FF", "FF0000"]


def test_a_colour_from_the_file_wins(services: Services, tmp_path: Path) -> None:
    # OME Color is a signed 32-bit RGBA integer: 0xFF00FFFF is magenta, -16776961 red.
    path = write_ome(
        tmp_path / "given.ome.tif",
        2,
        {"Color": [-16711681, -16776961], "EmissionWavelength": [450, 450]},
    )
    assert colours_after_import(services, path) == ["FF00FF", "FF0000"]


def test_no_metadata_gives_red_then_blue_then_green(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    data = np.zeros((3, 8, 8), dtype=np.uint8)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "CYX", "mode": "composite"})
    assert colours_after_import(services, path) == ["FF0000", "0000FF", "00FF00"]
