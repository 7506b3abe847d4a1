"""The rendering kernel, projections and encoding, against straightforward float formulas."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
from PIL import Image

from coverslip.errors import BadParameter
from coverslip.render.encode import content_type, encode
from coverslip.render.kernel import render
from coverslip.render.luts import LUT_NAMES, get_lut
from coverslip.render.projection import project
from coverslip.render.settings import ChannelSettings, RenderingDef
from tests.helpers import omero_32

# ---------------------------------------------------------------------------------------------
# Reference: OMERO's quantization written as plainly as possible, one value at a time.


def expected_q(
    value: float, start: float, end: float, family: str = "linear", k: float = 1.0
) -> float:
    """Return the unrounded 8-bit value of ``value``, or an exact 0/255 outside the window."""
    if math.isnan(value) or value < start:
        return 0.0
    if value >= end:
        return 255.0
    x = 255.0 * (value - start) / (end - start)
    if family == "linear":
        k = 1.0  # OMERO's QuantumStrategy.setMapping forces k = 1 for linear
    if family in ("linear", "polynomial"):
        return 255.0 * x**k / 255.0**k
    if family == "exponential":
        try:
            top = math.exp(255.0**k)
        except OverflowError:
            return 0.0  # OMERO: exp(255**k) is infinite, everything below the end is black
        return 255.0 * (math.exp(x**k) - 1.0) / (top - 1.0)
    assert family == "logarithmic"
    if x <= 1.0:
        return 0.0  # log(x) ≤ 0: black (OMERO wraps the negative values; we clip)
    return 255.0 * math.log(x) / math.log(255.0)


def assert_quantized(got: np.ndarray, values: np.ndarray, ch: ChannelSettings) -> None:
    """Check every 8-bit value, allowing ±1 only where the exact value sits on a .5 boundary."""
    for g, v in zip(got.ravel().tolist(), values.ravel().tolist(), strict=True):
        exact = expected_q(v, ch.start, ch.end, ch.family, ch.coefficient)
        want = min(255, max(0, math.floor(exact + 0.5)))
        if ch.inverted:
            want = 255 - want
        on_half = abs(exact - math.floor(exact) - 0.5) < 1e-6
        assert g == want or (on_half and abs(g - want) == 1), (v, exact, g, want)


def grey(values: np.ndarray, ch: ChannelSettings, pixel_type: str | None = None) -> np.ndarray:
    """Render ``values`` (1-D) in the greyscale model and return the grey level of each."""
    plane = values.reshape(1, -1)
    rdef = RenderingDef(channels=(ch,), model="greyscale")
    rgb = render([plane], rdef, pixel_type or values.dtype.name)
    assert rgb.shape == (1, values.size, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[0, :, 0]


# ---------------------------------------------------------------------------------------------
# Quantization


def test_linear_uint8_every_value() -> None:
    values = np.arange(256, dtype=np.uint8)
    ch = ChannelSettings(start=10, end=200)
    got = grey(values, ch)
    assert_quantized(got, values, ch)
    assert got[0] == 0 and got[9] == 0 and got[10] == 0 and got[200] == 255 and got[255] == 255


@pytest.mark.parametrize(
    ("family", "k"),
    [
        ("linear", 1.0),
        ("linear", 2.0),  # OMERO ignores the coefficient of linear
        ("polynomial", 0.5),
        ("polynomial", 2.0),
        ("polynomial", 3.3),
        ("exponential", 0.5),
        ("exponential", 1.0),
        ("exponential", 1.8),  # overflows: black below the end, as OMERO
        ("logarithmic", 1.0),
        ("logarithmic", 7.0),  # the coefficient does not enter
    ],
)
@pytest.mark.parametrize("inverted", [False, True])
def test_families_uint16(family: str, k: float, inverted: bool) -> None:
    values = np.concatenate([np.arange(0, 5000, 7), [99, 100, 101, 2999, 3000, 3001, 65535]])
    values = values.astype(np.uint16)
    ch = ChannelSettings(start=100, end=3000, family=family, coefficient=k, inverted=inverted)
    assert_quantized(grey(values, ch), values, ch)


def test_window_with_fractions() -> None:
    values = np.arange(0, 1000, dtype=np.uint16)
    ch = ChannelSettings(start=100.25, end=900.75, family="polynomial", coefficient=0.7)
    assert_quantized(grey(values, ch), values, ch)


@pytest.mark.parametrize(
    ("dtype", "start", "end"),
    [
        ("uint8", 3, 250),
        ("int8", -100, 50),
        ("uint16", 0, 60000),
        ("int16", -30000, -100),
    ],
)
def test_every_8_and_16_bit_type(dtype: str, start: float, end: float) -> None:
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        span = end - start
        values = rng.uniform(start - span, end + span, 400).astype(dtype)
        values[:3] = [start, end, np.nan]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, 400, endpoint=True, dtype=np.int64)
        inside = rng.integers(int(start), int(end), 200, endpoint=True, dtype=np.int64)
        values = np.concatenate(
            [values, inside, [info.min, info.max, int(start), int(end)]]
        ).astype(dtype)
    for ch in (
        ChannelSettings(start=start, end=end),
        ChannelSettings(start=start, end=end, family="polynomial", coefficient=2.0, inverted=True),
    ):
        got = grey(values, ch)
        assert_quantized(got, values.astype(np.float64), ch)


def test_nan_is_black() -> None:
    values = np.array([np.nan, 0.5, np.inf, -np.inf], dtype=np.float32)
    got = grey(values, ChannelSettings(start=0.0, end=1.0))
    assert got.tolist() == [0, 128, 255, 0]


@pytest.mark.parametrize(
    ("dtype", "levels"),
    [
        ("uint8", [0, 0, 255, 255, 255]),
        ("int16", [0, 0, 255, 255, 255]),
        # OMERO's 32-bit and float quantizers divide by the zero width: NaN, rendered 0.
        ("float32", [0, 0, 0, 0, 0]),
    ],
)
def test_start_equals_end(dtype: str, levels: list[int]) -> None:
    values = np.array([0, 9, 10, 11, 100], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = grey(values, ChannelSettings(start=10, end=10))
    assert got.tolist() == levels


def test_big_endian_plane_renders_like_native() -> None:
    values = np.arange(0, 4000, 3, dtype=np.uint16)
    ch = ChannelSettings(start=50, end=3500)
    assert (grey(values.astype(">u2"), ch) == grey(values, ch)).all()


# ---------------------------------------------------------------------------------------------
# Colour, LUTs and compositing


def colour_render(planes: list[np.ndarray | None], channels: list[ChannelSettings]) -> np.ndarray:
    dtype = next(p.dtype for p in planes if p is not None)
    return render(planes, RenderingDef(channels=tuple(channels), model="color"), dtype.name)


def test_colour_scales_each_component() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ch = ChannelSettings(start=0, end=255, color="FF8033")
    rgb = colour_render([values], [ch])
    q = values.astype(np.int64)
    for index, component in enumerate((0xFF, 0x80, 0x33)):
        want = np.vectorize(lambda v, c=component: int(c / 255.0 * v))(q)
        assert (rgb[..., index] == want).all()


@pytest.mark.parametrize(
    ("dtype", "windows"),
    [
        ("uint8", [(0, 255), (0, 255), (0, 255)]),  # a photo: each channel as it is
        ("uint8", [(10, 200), (0, 255), (60, 61)]),
        ("uint16", [(100, 40000), (0, 65535), (3000, 3001)]),
        ("float", [(-1.5, 2.0), (0.0, 1.0), (0.25, 0.75)]),
    ],
)
def test_red_green_blue_channels_each_fill_their_component(
    dtype: str, windows: list[tuple[float, float]]
) -> None:
    rng = np.random.default_rng(5)
    if dtype == "float":
        planes = [rng.uniform(-2, 3, (8, 32)).astype(np.float32) for _ in range(3)]
    else:
        top = np.iinfo(dtype).max
        planes = [rng.integers(0, top, (8, 32), endpoint=True).astype(dtype) for _ in range(3)]
    # Blue first: the components follow the colours, not the channel order.
    colours = ["0000FF", "FF0000", "00FF00"]
    channels = [
        ChannelSettings(start=a, end=b, color=colour)
        for (a, b), colour in zip(windows, colours, strict=True)
    ]
    rgb = colour_render(list(planes), channels)
    for plane, ch, component in zip(planes, channels, (2, 0, 1), strict=True):
        if dtype == "float":
            want = omero_32(plane.astype(np.float64), ch.start, ch.end, "linear", 1.0)
            assert np.array_equal(rgb[..., component], want)
        else:
            assert_quantized(rgb[..., component], plane, ch)
    if windows[0] == (0, 255):
        assert (rgb[..., 2] == planes[0]).all()


def test_two_channels_of_one_colour_add_up() -> None:
    values = np.full((2, 2), 200, np.uint8)
    ch = ChannelSettings(start=0, end=255, color="FF0000")
    rgb = colour_render([values, values // 4], [ch, ch])
    assert (rgb[..., 0] == 250).all() and not rgb[..., 1:].any()
    rgb = colour_render([values, values], [ch, ch])
    assert (rgb[..., 0] == 255).all()


def test_alpha_dims_the_colour() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(1, -1)
    ch = ChannelSettings(start=0, end=255, color="FF0000", alpha=128)
    rgb = colour_render([values], [ch])
    alpha = np.float32(128) / np.float32(255)
    want = [int(np.float32(v) * alpha) for v in range(256)]
    assert rgb[0, :, 0].tolist() == want
    assert not rgb[..., 1:].any()


@pytest.mark.parametrize("name", ["fire.lut", "viridis", "ICE.LUT", "grays"])
def test_lut_indexes_its_table(name: str) -> None:
    values = np.arange(0, 1024, dtype=np.uint16).reshape(32, 32)
    ch = ChannelSettings(start=0, end=1023, lut=name, color="00FF00", alpha=10)
    rgb = colour_render([values], [ch])
    table = get_lut(name)
    q = np.array([min(255, math.floor(255.0 * v / 1023.0 + 0.5)) for v in range(1024)])
    assert (rgb.reshape(-1, 3) == table[q]).all()


def test_published_lut_values() -> None:
    assert {"grays", "fire", "ice", "viridis", "magma", "inferno", "plasma", "cividis"} <= set(
        LUT_NAMES
    )
    assert {"red", "green", "blue", "cyan", "magenta", "yellow"} <= set(LUT_NAMES)
    assert sorted(LUT_NAMES) == LUT_NAMES
    assert get_lut("viridis")[0].tolist() == [68, 1, 84]
    assert get_lut("viridis")[255].tolist() == [253, 231, 37]
    assert get_lut("magma")[0].tolist() == [0, 0, 4]
    assert get_lut("fire")[0].tolist() == [0, 0, 0] and get_lut("fire")[255].tolist() == [255] * 3
    assert get_lut("grays")[77].tolist() == [77, 77, 77]
    assert get_lut("Cyan.lut")[200].tolist() == [0, 200, 200]
    for name in LUT_NAMES:
        table = get_lut(name)
        assert table.shape == (256, 3) and table.dtype == np.uint8
    with pytest.raises(KeyError):
        get_lut("nope.lut")


def test_channels_add_and_saturate() -> None:
    rng = np.random.default_rng(3)
    colours = ["FF0000", "00FF00", "FF00FF", "808080", "FFFFFF", "0000FF"]
    planes = [rng.integers(0, 4096, (20, 30), dtype=np.uint16) for _ in colours]
    # A window of 2901 values: no value falls on a rounding boundary (x.5).
    channels = [ChannelSettings(start=100, end=3001, color=c) for c in colours]
    for count in range(1, len(colours) + 1):
        rgb = colour_render(list(planes[:count]), channels[:count])
        total = np.zeros((20, 30, 3), dtype=np.int64)
        for plane, ch in zip(planes[:count], channels[:count], strict=True):
            q = np.vectorize(lambda v: min(255, math.floor(255.0 * (v - 100) / 2901 + 0.5)))(
                plane.astype(np.float64)
            )
            q = np.where(plane < 100, 0, np.where(plane >= 3001, 255, q))
            for index in range(3):
                component = int(ch.color[2 * index : 2 * index + 2], 16)
                total[..., index] += np.vectorize(lambda v, c=component: int(c / 255.0 * v))(q)
        assert (rgb == np.minimum(total, 255)).all(), count


def test_many_bright_channels_saturate_without_wrapping() -> None:
    plane = np.full((4, 4), 255, dtype=np.uint8)
    channels = [ChannelSettings(start=0, end=10, color="FFFFFF")] * 9
    rgb = colour_render([plane] * 9, channels)
    assert (rgb == 255).all()


def test_inactive_channels_are_skipped_and_may_be_none() -> None:
    plane = np.full((3, 5), 200, dtype=np.uint8)
    channels = [
        ChannelSettings(active=False, color="FF0000"),
        ChannelSettings(start=0, end=255, color="00FF00"),
        ChannelSettings(active=False, color="0000FF"),
    ]
    rgb = colour_render([None, plane, None], channels)
    assert (rgb[..., 1] == 200).all() and not rgb[..., 0].any() and not rgb[..., 2].any()


def test_greyscale_takes_the_first_active_channel_without_colour_or_lut() -> None:
    first = np.full((2, 2), 90, dtype=np.uint8)
    second = np.full((2, 2), 250, dtype=np.uint8)
    channels = (
        ChannelSettings(active=False, start=0, end=255),
        ChannelSettings(start=0, end=200, color="FF0000", lut="fire.lut", inverted=True),
        ChannelSettings(start=0, end=255, color="00FF00"),
    )
    rgb = render([None, first, second], RenderingDef(channels, model="greyscale"), "uint8")
    want = 255 - math.floor(255 * 90 / 200 + 0.5)
    assert (rgb == want).all()


def test_no_active_channel_is_black_or_refused() -> None:
    rdef = RenderingDef((ChannelSettings(active=False),))
    assert not render([None], rdef, "uint8", shape=(3, 4)).any()
    assert render([None], rdef, "uint8", shape=(3, 4)).shape == (3, 4, 3)
    with pytest.raises(BadParameter) as info:
        render([None], rdef, "uint8")
    assert info.value.name == "c"


def test_missing_or_mismatched_planes_are_errors() -> None:
    channels = (ChannelSettings(), ChannelSettings())
    plane = np.zeros((2, 2), dtype=np.uint8)
    with pytest.raises(ValueError):
        render([plane, None], RenderingDef(channels), "uint8")
    with pytest.raises(ValueError):
        render([plane, np.zeros((3, 2), dtype=np.uint8)], RenderingDef(channels), "uint8")


def test_results_are_independent_arrays() -> None:
    ch = ChannelSettings(start=0, end=255)
    a = colour_render([np.full((64, 64), 10, dtype=np.uint8)], [ch])
    b = colour_render([np.full((32, 48), 200, dtype=np.uint8)], [ch])
    c = colour_render([np.full((64, 64), 99, dtype=np.uint8)], [ch])
    assert (a == 10).all() and (b == 200).all() and (c == 99).all()
    assert a.flags.c_contiguous and b.shape == (32, 48, 3)


# ---------------------------------------------------------------------------------------------
# Projections


def stack_of(dtype: str, values: list[list[int | float]]) -> np.ndarray:
    return np.array(values, dtype=dtype).reshape(len(values), 1, -1)


def test_intmax_keeps_the_type() -> None:
    stack = stack_of("int16", [[-5, 3, -700], [-9, 8, -2], [-1, 1, -300]])
    out = project(stack, "intmax")
    assert out.dtype == np.int16 and out.tolist() == [[-1, 8, -2]]


def test_intsum_clips_to_the_type() -> None:
    stack = stack_of("uint8", [[200, 1, 0], [100, 2, 0], [0, 3, 0]])
    out = project(stack, "intsum")
    assert out.dtype == np.uint8 and out.tolist() == [[255, 6, 0]]
    signed = stack_of("int8", [[-100, 100], [-100, 100]])
    assert project(signed, "intsum").tolist() == [[-128, 127]]
    wide = stack_of("uint16", [[60000, 7], [60000, 8]])
    assert project(wide, "intsum", "uint16").tolist() == [[65535, 15]]


def test_intmean_truncates_like_a_java_int_cast() -> None:
    stack = stack_of("int16", [[1, -1, 10, 65], [2, -2, 10, 0], [2, -2, 11, 0]])
    out = project(stack, "intmean")
    assert out.dtype == np.int16
    assert out.tolist() == [[int(5 / 3), int(-5 / 3), int(31 / 3), int(65 / 3)]]


def test_float_projections() -> None:
    stack = stack_of("float32", [[0.5, -1.0], [1.5, 2.0]])
    assert project(stack, "intmean").tolist() == [[1.0, 0.5]]
    assert project(stack, "intsum").tolist() == [[2.0, 1.0]]
    assert project(stack, "intmax").dtype == np.float32


def test_projection_of_one_plane_and_unknown_method() -> None:
    plane = np.arange(6, dtype=np.uint16).reshape(2, 3)
    for method in ("intmax", "intmean", "intsum", "normal"):
        assert (project(plane[np.newaxis], method) == plane).all()
    with pytest.raises(BadParameter) as info:
        project(plane[np.newaxis], "median")
    assert info.value.name == "p"


# ---------------------------------------------------------------------------------------------
# Encoding


def sample_rgb() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:96]
    return np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["png", "tif", "TIFF"])
def test_lossless_formats_round_trip(fmt: str) -> None:
    rgb = sample_rgb()
    decoded = np.asarray(Image.open(io.BytesIO(encode(rgb, fmt))).convert("RGB"))
    assert (decoded == rgb).all()


def test_jpeg_is_close_and_quality_matters() -> None:
    rgb = sample_rgb()
    high = encode(rgb, "jpg", 0.95)
    low = encode(rgb, "jpeg", 0.1)
    decoded = np.asarray(Image.open(io.BytesIO(high)).convert("RGB")).astype(int)
    assert np.abs(decoded - rgb).mean() < 3
    assert len(low) < len(high)


def test_content_types() -> None:
    assert content_type("jpg") == "image/jpeg"
    assert content_type("png") == "image/png"
    assert content_type("tiff") == "image/tiff"
    with pytest.raises(BadParameter):
        content_type("gif")
