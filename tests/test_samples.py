"""Every sample file from real instruments imports with the sizes its reference reader reports,
and a rendered plane equals that plane read with the reference reader and rendered here.

The samples live beside the checkout (``shared/samples``, see its MANIFEST.md); they are used
in place, never copied into the repository. Expected values are the manifest's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from falcon import testing

from coverslip.errors import ImportFailed
from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import decode, omero_32, quantize

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="the sample files are not here")

UNCHECKED = -1.0
Plane = Callable[[Path], np.ndarray]  # the (Y, X) plane t=0, c=0, z=0 by the reference reader


def _tifffile(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data, axes = series.asarray(), series.axes
    index = tuple(slice(None) if axis in "YX" else 0 for axis in axes)
    return np.asarray(data[index])


def _czi(path: Path) -> np.ndarray:
    from pylibCZIrw import czi as pyczi

    with pyczi.open_czi(str(path)) as doc:
        box = doc.total_bounding_rectangle
        plane = doc.read(plane={"T": 0, "Z": 0, "C": 0}, roi=(box.x, box.y, box.w, box.h))
    # NOTE: pylibCZIrw gives BGR for colour pixel types; channel 0 is red.
    return plane[..., -1] if plane.shape[-1] == 3 else plane[..., 0]


def _nd2(path: Path) -> np.ndarray:
    import nd2

    with nd2.ND2File(path) as f:
        data = f.asarray()
        dims = list(f.sizes)
    return np.asarray(data[tuple(slice(None) if d in "YX" else 0 for d in dims)])


def _lif(path: Path) -> np.ndarray:
    import liffile

    with liffile.LifFile(path) as f:
        image = f.images[0]
        data, dims = image.asarray(), image.dims
    # An XZ scan: the Z rows by X columns are the picture.
    return np.asarray(data[tuple(slice(None) if d in "ZYX" else 0 for d in dims)])


def _dv(path: Path) -> np.ndarray:
    import mrc

    data = np.asarray(mrc.imread(str(path)))
    return data.reshape(-1, *data.shape[-2:])[0]


def _mrc(path: Path) -> np.ndarray:
    import mrcfile

    with mrcfile.open(path, permissive=True) as m:
        return np.array(m.data[0])


def _oib(path: Path) -> np.ndarray:
    import oiffile

    with oiffile.OifFile(path) as o:
        return np.asarray(o.asarray()[0])


def _dicom(path: Path) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    frames = ds.pixel_array[..., 0]
    across = int(np.ceil(ds.TotalPixelMatrixColumns / ds.Columns))
    rows = [np.hstack(frames[i : i + across]) for i in range(0, len(frames), across)]
    return np.vstack(rows)[: ds.TotalPixelMatrixRows, : ds.TotalPixelMatrixColumns]


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image).astype(np.uint16)


def _npy(path: Path) -> np.ndarray:
    return np.load(path)[..., 0]


def _zarr(level: str) -> Plane:
    def read(path: Path) -> np.ndarray:
        import zarr

        array = zarr.open_array(str(path / level), mode="r")
        return np.asarray(array[(0,) * (array.ndim - 2)])

    return read


def _multifile(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path.parent / "multifile-Z1.ome.tiff")


@dataclass(frozen=True)
class Sample:
    path: str
    shape: tuple[int, int, int, int, int]  # T, C, Z, Y, X of the first image
    pixel_type: str
    plane: Plane
    channels: tuple[str, ...] | None = None
    # µm; None where the file gives none; UNCHECKED where the manifest does not say.
    size_x: float | None = UNCHECKED
    size_z: float | None = UNCHECKED
    images: int | None = None  # how many images the file holds, where the manifest says
    axes: str | None = None


SAMPLE_LIST = [
    Sample("tiff/5channel.tif", (1, 5, 1, 64, 64), "uint8", _tifffile),
    Sample("tiff/MetamorphImage.tif", (1, 1, 1, 520, 696), "uint16", _tifffile, ("Cy5",), 0.645),
    Sample(
        "tiff/colocsample1b-green.tif",
        (1, 1, 33, 152, 172),
        "uint8",
        _tifffile,
        size_x=0.3282,
        size_z=0.646,
    ),
    Sample(
        "tiff/multich_multi_time.tif",
        (2, 3, 501, 11, 13),
        "uint16",
        _tifffile,
        size_x=None,  # ImageJ unit "pixel": no physical size
    ),
    Sample("tiff/olympus_SIS.tif", (1, 3, 1, 101, 112), "uint8", _tifffile, images=2),
    Sample("ome-tiff/multi-channel-z-series.ome.tif", (1, 3, 5, 167, 439), "int8", _tifffile),
    Sample(
        "qptiff/small_vectra.qptiff",
        (1, 3, 1, 1440, 1920),
        "uint8",
        _tifffile,
        ("DAPI", "FITC", "Cy3"),
        0.4965,
    ),
    Sample("svs/small.svs", (1, 3, 1, 16, 16), "uint8", _tifffile),
    Sample("dicom/sm_image.dcm", (1, 3, 1, 50, 50), "uint8", _dicom, size_x=0.499),
    Sample(
        "czi/CD_s_1_t_3_c_2_z_5.czi",
        (3, 2, 5, 170, 240),
        "uint16",
        _czi,
        ("LED555", "LED470"),
        0.09058,
    ),
    Sample("czi/RGB-8bit.czi", (1, 3, 1, 624, 924), "uint8", _czi, size_x=1.083),
    Sample("czi/mosaic_test.czi", (1, 1, 1, 624, 1756), "uint16", _czi, ("EGFP",), 1.083),
    Sample(
        "nd2/cluster.nd2",
        (3, 2, 10, 31, 38),
        "uint16",
        _nd2,
        ("5-FAM/pH 9.0", "FM 4-64/2% CHAPS"),
        0.1678,
        0.5,
    ),
    Sample("lif/testdata_2channel_xz.lif", (20, 2, 1, 128, 128), "uint8", _lif, images=3),
    Sample("dv/toxo.dv", (1, 2, 17, 128, 128), "uint16", _dv, size_x=0.1326, size_z=0.3),
    Sample("mrc/EMD-3197.map", (1, 1, 20, 20, 20), "float32", _mrc, size_x=0.00114, size_z=0.00114),
    Sample("oib/test.oib", (1, 3, 1, 256, 256), "uint16", _oib, size_x=0.177),
    Sample("png/flatfield_corr_matrix.png", (1, 1, 1, 2160, 2560), "uint16", _png),
    Sample("npy/bulk-water_frame0.npy", (1, 3, 1, 424, 640), "uint8", _npy, axes="YXC"),
    Sample(
        "ome-zarr/CMU-1-Small-Region.ome.zarr",
        (1, 3, 1, 2967, 2220),
        "uint8",
        _zarr("0/0"),
        size_x=0.499,
        images=3,
    ),
    Sample(
        "ome-zarr/blobs_image_v04.ome.zarr",
        (1, 3, 1, 12, 12),
        "float64",
        _zarr("0"),
        ("0", "1", "2"),
    ),
    Sample("ome-tiff/multifile/multifile-Z1.ome.tiff", (1, 1, 5, 24, 18), "uint8", _multifile),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> CoverslipApp:
    home = Home(tmp_path_factory.mktemp("samples"))
    return create_app(home.settings({}, {"imports.thumbnail": False}), home)


@pytest.fixture(scope="module")
def client(app: CoverslipApp) -> tuple[testing.TestClient, dict[str, str]]:
    owner, _group = app.services.catalog.ensure_local_admin()
    _id, token = app.services.auth.tokens.create(owner, "samples")
    return testing.TestClient(app), {"X-Auth-Token": token}


def close(found: float | None, expected: float | None) -> bool:
    if expected == UNCHECKED:
        return True
    if expected is None:
        return found is None
    return found is not None and abs(found - expected) <= 1e-3 * expected


@pytest.mark.parametrize("sample", SAMPLE_LIST, ids=[s.path.split("/")[-1] for s in SAMPLE_LIST])
def test_sample_imports_as_its_reference_reader_reads_it(
    app: CoverslipApp, client: tuple[testing.TestClient, dict[str, str]], sample: Sample
) -> None:
    path = SAMPLES / sample.path
    options = ImportOptions(axes=sample.axes, allow_duplicate=True)
    ids = app.services.importer().import_fileset(path, options)
    if sample.images is not None:
        assert len(ids) == sample.images
    image = app.services.catalog.get_image(ids[0])
    assert image.status == "active"
    shape = (image.size_t, image.size_c, image.size_z, image.size_y, image.size_x)
    assert (shape, image.pixel_type) == (sample.shape, sample.pixel_type)
    if sample.channels is not None:
        assert tuple(ch.name for ch in image.channels) == sample.channels
    assert close(image.physical_size_x, sample.size_x), image.physical_size_x
    assert close(image.physical_size_z, sample.size_z), image.physical_size_z
    # A rendered region of plane z=0, t=0, channel 1 with a linear window, against numpy.
    plane = sample.plane(path)
    assert plane.shape == shape[3:]
    height, width = min(256, shape[3]), min(256, shape[4])
    region = plane[:height, :width].astype(np.float64)
    finite = region[np.isfinite(region)]
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + 1
    test, headers = client
    url = (
        f"/webgateway/render_image_region/{ids[0]}/0/0/?region=0,0,{width},{height}"
        f"&c=1|{low!r}:{high!r}$FFFFFF&m=c&format=png"
    )
    answer = test.simulate_get(url, headers=headers)
    assert answer.status_code == 200, answer.text
    rendered = decode(answer.content)
    kind = np.dtype(image.pixel_type)
    if kind.kind == "f" or kind.itemsize >= 4:  # OMERO's 32-bit and float quantizers: 256 bins
        expected = omero_32(region, low, high, "linear", 1.0)
    else:
        expected = quantize(region, low, high)
    np.testing.assert_array_equal(rendered[..., 0], expected)


def test_cellomics_c01_is_refused_in_one_clear_line(app: CoverslipApp) -> None:
    with pytest.raises(ImportFailed, match="not a format Coverslip reads"):
        app.services.importer().import_fileset(SAMPLES / "c01/iamac01file.c01", ImportOptions())


def test_metadata_only_plate_fails_by_field_and_keeps_nothing(app: CoverslipApp) -> None:
    before = len(app.services.catalog.list_images())
    path = SAMPLES / "ome-zarr/idr-2551-plate-v0.4-metadata-only.zarr"
    with pytest.raises(ImportFailed, match="field"):
        app.services.importer().import_fileset(path, ImportOptions())
    assert len(app.services.catalog.list_images()) == before
    assert app.services.catalog.list_plates() == []


def test_vendor_metadata_reaches_imgdata_and_images_show(
    app: CoverslipApp, client: tuple[testing.TestClient, dict[str, str]]
) -> None:
    from click.testing import CliRunner

    from coverslip.cli import main

    path = SAMPLES / "nd2/cluster.nd2"
    (image_id,) = app.services.importer().import_fileset(path, ImportOptions(allow_duplicate=True))
    test, headers = client
    answer = test.simulate_get(f"/webgateway/imgData/{image_id}/", headers=headers)
    assert answer.status_code == 200, answer.text
    meta = answer.json["meta"]
    assert meta["originalMetadata"], "the vendor's key-values are listed"
    assert meta["acquisitionDate"]
    assert [ch["label"] for ch in answer.json["channels"]] == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
    assert all(ch["emissionWave"] for ch in answer.json["channels"])
    home = str(app.services.home.root)
    shown = CliRunner().invoke(main, ["--home", home, "images", "show", str(image_id)])
    assert shown.exit_code == 0, shown.output
    assert '"original"' in shown.stdout and meta["acquisitionDate"] in shown.stdout
