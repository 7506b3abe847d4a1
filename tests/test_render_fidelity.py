"""Rendering fidelity: Coverslip's pictures against OMERO's arithmetic, rewritten here in numpy.

Each reference below is OMERO's own formula (omero-renderer ``omeis/providers/re``) computed
independently of the code under test, with Java's rounding: Math.round(x) is floor(x + 0.5)
and (int) truncates. Where OMERO is an integer function the comparison allows 0 levels.
Where Coverslip keeps the correct picture instead of an arithmetic defect of OMERO's, the test
says so and checks the correct picture.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from coverslip.errors import BadParameter
from coverslip.render.kernel import render
from coverslip.render.luts import get_lut
from coverslip.render.projection import project
from coverslip.render.service import Region, Renderer
from coverslip.render.settings import ChannelSettings, RenderingDef, apply_query, default_def
from tests.helpers import omero_8_16, omero_32

RNG = np.random.default_rng(2024)
CIVIDIS_TABLE = Path(__file__).resolve().parent.parent / "scripts" / "lut_cividis.txt"


# ---------------------------------------------------------------------------------------------
# The public render API, fed from an in-memory TCZYX array


class ArrayPyramid:
    """One pyramid level over a TCZYX array; reads like the real pyramid (np.stack of planes)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.levels = [SimpleNamespace(width=data.shape[4], height=data.shape[3])]

    def level_for(self, scale: float) -> int:
        return 0

    def read_planes(self, level: int, planes: list[tuple[int, int, int]], y: slice, x: slice):
        return np.stack([self.data[t, c, z][y, x] for t, c, z in planes])


def picture(data: np.ndarray, rdef: RenderingDef, z: int = 0) -> np.ndarray:
    """Render plane (z, t=0) of a TCZYX array through Renderer.rgb, as the gateway does."""
    size_t, size_c, size_z, size_y, size_x = data.shape
    image = SimpleNamespace(
        size_t=size_t,
        size_c=size_c,
        size_z=size_z,
        size_y=size_y,
        size_x=size_x,
        pixel_type=data.dtype.name,
    )
    region = Region(0, 0, size_x, size_y)
    return Renderer().rgb(image, ArrayPyramid(data), rdef, z, 0, region)


def grey_levels(values: np.ndarray, ch: ChannelSettings) -> np.ndarray:
    """Render 1-D ``values`` as one greyscale channel and return the level of each."""
    data = values.reshape(1, 1, 1, 1, -1)
    rgb = picture(data, RenderingDef(channels=(ch,), model="greyscale"))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[0, :, 0]


# ---------------------------------------------------------------------------------------------
# No active channel


def test_all_channels_off_is_black_from_the_kernel() -> None:
    rdef = RenderingDef(channels=(ChannelSettings(active=False),) * 3)
    rgb = render([None, None, None], rdef, "uint16", shape=(5, 7))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8 and not rgb.any()


def test_all_channels_off_is_black_through_the_renderer() -> None:
    data = RNG.integers(0, 4000, (1, 3, 1, 6, 9), dtype=np.uint16)
    rdef = apply_query(RenderingDef(channels=(ChannelSettings(),) * 3), {"c": "-1,-2,-3"}, 3)
    rgb = picture(data, rdef)
    assert rgb.shape == (6, 9, 3) and not rgb.any()


# ---------------------------------------------------------------------------------------------
# Quantization


def test_linear_ignores_its_coefficient() -> None:
    values = np.arange(0, 4096, dtype=np.uint16)
    for k in (0.3, 2.0, 7.5):
        ch = ChannelSettings(start=100, end=3000, family="linear", coefficient=k)
        want = omero_8_16(values, 100, 3000, "linear", 1.0)
        assert np.array_equal(grey_levels(values, ch), want), k


@pytest.mark.parametrize(
    ("dtype", "asked", "used"),
    [
        ("uint8", (-50.0, 200.0), (0.0, 200.0)),  # clamped to the type's range
        ("uint8", (20.0, 300.0), (0.0, 255.0)),  # wider than 255 levels: the type's range
        ("uint8", (200.0, 20.0), (0.0, 255.0)),  # start above end: the type's range
        ("int8", (-300.0, 0.0), (-128.0, 127.0)),
        ("uint16", (1000.0, 66000.0), (1000.0, 65535.0)),
        ("uint16", (1000.0, 70000.0), (0.0, 65535.0)),  # wider than the type
        ("uint16", (-10.0, 70000.0), (0.0, 65535.0)),
        ("int16", (5000.0, -5000.0), (-32768.0, 32767.0)),
    ],
)
def test_windows_are_fitted_to_the_type(dtype: str, asked: tuple, used: tuple) -> None:
    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64).astype(dtype)
    ch = ChannelSettings(start=asked[0], end=asked[1])
    assert np.array_equal(grey_levels(values, ch), omero_8_16(values, *used, "linear", 1.0))


def test_a_window_with_its_start_above_its_end_is_accepted() -> None:
    rdef = apply_query(RenderingDef(channels=(ChannelSettings(),)), {"c": "1|900:100"}, 1)
    assert (rdef.channels[0].start, rdef.channels[0].end) == (900.0, 100.0)
    with pytest.raises(BadParameter):
        apply_query(rdef, {"c": "1|900"}, 1)


@pytest.mark.parametrize(
    ("dtype", "start", "end"),
    [
        ("uint32", 1000.0, 4_000_000_000.0),
        ("uint32", 0.0, 1000.0),
        ("int32", -2_000_000_000.0, 1_000_000.0),
        ("float32", -1.5, 2.5),
        ("float64", 0.001, 0.002),
    ],
)
@pytest.mark.parametrize(
    ("family", "k"),
    [
        ("linear", 1.0),
        ("linear", 3.0),
        ("polynomial", 2.0),
        ("polynomial", 0.5),
        ("exponential", 0.6),
    ],
)
def test_32_bit_and_float_values_snap_to_256_bins(
    dtype: str, start: float, end: float, family: str, k: float
) -> None:
    span = end - start
    if np.dtype(dtype).kind == "f":
        values = RNG.uniform(start - span / 4, end + span / 4, 3000).astype(dtype)
    else:
        info = np.iinfo(dtype)
        low, high = max(info.min, start - span / 4), min(info.max, end + span / 4)
        values = RNG.integers(int(low), int(high), 3000, endpoint=True).astype(dtype)
    values[:2] = [start, end]
    ch = ChannelSettings(start=start, end=end, family=family, coefficient=k)
    want = omero_32(values.astype(np.float64), start, end, family, k)
    assert np.array_equal(grey_levels(values, ch), want)
    inverted = ChannelSettings(start=start, end=end, family=family, coefficient=k, inverted=True)
    assert np.array_equal(grey_levels(values, inverted), 255 - want)


def test_32_bit_rendering_differs_from_the_8_16_bit_formula() -> None:
    # The bins are the point: within one bin every value renders the same.
    values = np.arange(0, 1000, dtype=np.uint32)
    got = grey_levels(
        values, ChannelSettings(start=0, end=1000, family="polynomial", coefficient=2)
    )
    assert np.array_equal(got, omero_32(values, 0, 1000, "polynomial", 2.0))
    assert not np.array_equal(got, omero_8_16(values, 0, 1000, "polynomial", 2.0))


def test_a_null_map_entry_switches_inversion_off() -> None:
    base = RenderingDef(channels=(ChannelSettings(inverted=True), ChannelSettings()))
    rdef = apply_query(base, {"maps": '[null, {"inverted": {"enabled": true}}]'}, 2)
    assert [ch.inverted for ch in rdef.channels] == [False, True]
    values = np.arange(256, dtype=np.uint8)
    data = np.stack([values, values]).reshape(1, 2, 1, 1, 256)
    rgb = picture(data, rdef)
    assert np.array_equal(rgb[0, :, 0], np.minimum(255, values.astype(int) + (255 - values)))
    only_first = apply_query(rdef, {"c": "1,-2"}, 2)
    assert np.array_equal(picture(data, only_first)[0, :, 0], values)


def test_logarithmic_low_levels_are_black_not_wrapped() -> None:
    # NOTE: deliberate deviation. OMERO's log map gives negative levels for positions in
    # (0, 1) and keeps their low byte ((byte) v & 0xFF), so the darkest values turn bright.
    values = np.array([0, 1000, 3000, 5000, 20000], dtype=np.uint32)
    ch = ChannelSettings(start=0, end=1_000_000, family="logarithmic")
    omero = omero_32(values, 0, 1_000_000, "logarithmic", 1.0)
    assert omero.tolist()[:3] == [224, 224, 224]  # the first bin, wrapped: bright in OMERO
    got = grey_levels(values, ch)
    assert got.tolist()[:3] == [0, 0, 0]
    assert np.array_equal(got[3:], omero[3:])


# ---------------------------------------------------------------------------------------------
# Projections (deliberate deviations: the correct picture, not OMERO's defect)


def test_uint32_projections_do_not_saturate_at_the_int32_maximum() -> None:
    # NOTE: OMERO's ProjectionBean holds uint32 in a Java int, so max and sum stop at 2**31 - 1.
    stack = np.array([[[3_000_000_000, 5]], [[4_000_000_000, 7]]], dtype=np.uint32)
    assert project(stack, "intmax", "uint32").tolist() == [[4_000_000_000, 7]]
    assert project(stack, "intsum", "uint32").tolist() == [[4_294_967_295, 12]]
    assert project(stack, "intmean", "uint32").tolist() == [[3_500_000_000, 6]]


def test_mean_of_one_plane_is_that_plane() -> None:
    # NOTE: OMERO's mean and sum skip the last plane of the range (z < end), so one plane
    # projects to black there.
    plane = RNG.integers(0, 60000, (1, 4, 5), dtype=np.uint16)
    assert np.array_equal(project(plane, "intmean", "uint16"), plane[0])
    assert np.array_equal(project(plane, "intsum", "uint16"), plane[0])


# ---------------------------------------------------------------------------------------------
# Defaults of a new image


def meta(color: str | None = None, emission: float | None = None, excitation: float | None = None):
    return {
        "color": color,
        "window_start": 0,
        "window_end": 100,
        "emission_wave": emission,
        "excitation_wave": excitation,
    }


@pytest.mark.parametrize(
    ("count", "model"),
    [(1, "greyscale"), (2, "color"), (7, "color"), (8, "greyscale"), (9, "greyscale")],
)
def test_default_model_by_channel_count(count: int, model: str) -> None:
    assert default_def([meta()] * count, "uint8", 1, 1).model == model


def test_default_colours_follow_omeros_colors_factory() -> None:
    # ColorsFactory.determineColor: ≤ 500 blue, 501..559 green, ≥ 560 red.
    waves = [350, 500, 501, 559, 560, 700]
    rdef = default_def([meta(emission=w) for w in waves], "uint16", 1, 1)
    assert [ch.color for ch in rdef.channels] == [
        "0000FF",
        "0000FF",
        "00FF00",
        "00FF00",
        "FF0000",
        "FF0000",
    ]
    # Without any wavelength: red, blue, then green; a file colour always wins.
    plain = default_def([meta(), meta(), meta(), meta("123456")], "uint16", 1, 1)
    assert [ch.color for ch in plain.channels] == ["FF0000", "0000FF", "00FF00", "123456"]
    # Excitation only counts when there is no emission, and such a channel has no emission
    # data: beside channels with emission data it becomes white.
    mixed = default_def([meta(emission=520), meta(excitation=640), meta()], "uint16", 1, 1)
    assert [ch.color for ch in mixed.channels] == ["00FF00", "FFFFFF", "FFFFFF"]
    only_excitation = default_def([meta(excitation=640), meta(excitation=450)], "uint16", 1, 1)
    assert [ch.color for ch in only_excitation.channels] == ["FF0000", "0000FF"]


def test_default_window_of_a_flat_channel_is_the_type_range() -> None:
    flat = {"color": None, "window_start": 7, "window_end": 7}
    rdef = default_def([flat], "int16", 1, 1)
    assert (rdef.channels[0].start, rdef.channels[0].end) == (-32768, 32767)


# ---------------------------------------------------------------------------------------------
# LUTs


def test_cividis_is_omeros_table() -> None:
    published = np.loadtxt(CIVIDIS_TABLE)
    assert published.shape == (256, 3)
    want = np.floor(published * 255.0 + 0.5).astype(np.uint8)
    assert np.array_equal(get_lut("cividis.lut"), want)
    assert get_lut("cividis.lut")[0].tolist() == [0, 32, 77]
    assert get_lut("cividis.lut")[255].tolist() == [255, 234, 70]


def test_luts_are_found_by_their_exact_file_name() -> None:
    values = np.arange(256, dtype=np.uint8)
    base = RenderingDef(channels=(ChannelSettings(start=0, end=255, color="00FF00"),))
    fire = get_lut("fire.lut")
    for text, want in [
        ("fire.lut", fire[values]),
        ("FIRE.lut", np.stack([0 * values, values, 0 * values], axis=1)),  # no such table
        ("FIRE.LUT", np.stack([0 * values, values, 0 * values], axis=1)),  # ignored
        ("fire", np.stack([0 * values, values, 0 * values], axis=1)),  # ignored
    ]:
        rdef = apply_query(base, {"c": f"1${text}"}, 1)
        rgb = picture(values.reshape(1, 1, 1, 1, 256), rdef)
        assert np.array_equal(rgb[0], want), text
