"""The rendering kernel: window → 8-bit through the family map → colour or LUT → composite.

Semantics are OMERO's (omeis.providers.re): QuantumStrategy, Quantization_8_16_bit and
Quantization_32_bit / Quantization_float for the quantization, the codomain ReverseIntensityMap
for inversion, RenderHSBRegionTask for colour and LUT compositing, GreyScaleStrategy for the
greyscale model.

First each channel's window is fitted to the pixel type (QuantumStrategy.setWindow, see
settings.type_window) and "linear" gets coefficient 1 (QuantumStrategy.setMapping). Then every
pixel value v becomes an 8-bit value q:

* 8- and 16-bit types: v < start → 0 and v ≥ end → 255; otherwise x = a·v − b with
  a = 255 / (end − start), b = a·start (x in [0, 255)), then
  q = round(255 · (f(x) − f(0)) / (f(255) − f(0))), rounding half up as Java's Math.round,
  where f is x**k for "linear" and "polynomial", exp(x**k) for "exponential" and log(x)
  (log 1 for x ≤ 0, coefficient ignored) for "logarithmic";
* 32-bit and float types: v is first replaced by the middle of the one of 256 equal bins of
  the window it falls in (a value outside the window by the window's nearest end), then
  mapped the same way; a zero-width window renders 0;
* inverted channels take 255 − q.

Then each channel paints q in its colour, component by component int(C / 255 · q) (times
alpha / 255 when any active channel has alpha below 255), or through its LUT; channels add
up and saturate at 255. The greyscale model paints the first active channel in grey.

NOTE: where OMERO computes nonsense we do not copy it: for "logarithmic", x in (0, 1) gives a
negative q that Java wraps to a bright byte ((byte) v & 0xFF); we clip it to 0. Exponential
maps overflow for k ≳ 1.18 (exp(255**k) is infinite) and render black below the window end,
as in OMERO.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from coverslip.errors import BadParameter
from coverslip.render.luts import get_lut
from coverslip.render.settings import ChannelSettings, RenderingDef, type_window

# Packed colour: three 10-bit lanes (R at bit 0, G at 10, B at 20) in a uint32, so up to four
# channels add up without carrying into the next lane; saturation happens once at the end.
LANE = 10
LANE_MASK = (1 << LANE) - 1

# Integer types small enough to render through one table over every possible value.
_TABLE_TYPES: dict[np.dtype[Any], np.dtype[Any]] = {
    np.dtype(np.uint8): np.dtype(np.uint8),
    np.dtype(np.int8): np.dtype(np.uint8),
    np.dtype(np.uint16): np.dtype(np.uint16),
    np.dtype(np.int16): np.dtype(np.uint16),
}


def _curve(v: np.ndarray, family: str, coefficient: float) -> np.ndarray:
    """Map window positions ``v`` (float64 in [0, 255], overwritten) to 8-bit levels (float64).

    The level is round(255 · (f(v) − f(0)) / (f(255) − f(0))), half up as Java's Math.round.
    """
    # NOTE: OMERO's QuantumStrategy.setMapping forces the coefficient of "linear" to 1.
    k = 1.0 if family == "linear" else coefficient
    with np.errstate(all="ignore"):
        if family == "exponential":
            low, high = 1.0, float(np.exp(np.float64(255.0) ** k))
            mapped = np.exp(np.power(v, k, out=v), out=v)
        elif family == "logarithmic":
            low, high = 0.0, float(np.log(255.0))
            v[v <= 0] = 1.0
            mapped = np.log(v, out=v)
        else:  # linear, polynomial
            low, high = float(np.float64(0.0) ** k), float(np.float64(255.0) ** k)
            mapped = v if k == 1.0 else np.power(v, k, out=v)
        mapped -= low
        mapped *= 255.0 / (high - low)
        mapped += 0.5
        q = np.floor(mapped, out=mapped)
    np.nan_to_num(q, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    # NOTE: OMERO keeps the low byte ((byte) v & 0xFF), so a negative level wraps to a bright
    # one; we clip (see the module docstring).
    np.clip(q, 0.0, 255.0, out=q)
    return q


def quantize(
    values: np.ndarray, start: float, end: float, family: str, coefficient: float, inverted: bool
) -> np.ndarray:
    """Return the 8-bit value (uint8) of each of ``values``, as OMERO's Quantization_8_16_bit."""
    x = np.asarray(values, dtype=np.float64)
    if end > start:
        slope = 255.0 / (end - start)
        v = slope * x
        v -= slope * start
        np.clip(v, 0.0, 255.0, out=v)  # values outside the window are overwritten below
        q = _curve(v, family, coefficient)
        q[~(x >= start)] = 0.0  # also NaN
    else:
        q = np.zeros(x.shape, dtype=np.float64)
    q[x >= end] = 255.0
    out = q.astype(np.uint8)
    if inverted:
        np.subtract(255, out, out=out)
    return out


BINS = 256  # OMERO's cdEnd − cdStart + 1


@lru_cache(maxsize=256)
def _bin_levels(
    start: float, end: float, family: str, coefficient: float, inverted: bool
) -> np.ndarray:
    """Return the 8-bit level of each bin, then of "below the window", "above it" and NaN."""
    if not end > start:
        # OMERO: a zero-width window gives 0 · ∞ = NaN everywhere, which rounds to 0.
        levels = np.zeros(BINS + 3, dtype=np.uint8)
    else:
        step = (end - start) / BINS
        lower = start + np.arange(BINS) * step
        middle = (lower + (lower + step)) / 2.0
        slope = 255.0 / (end - start)
        # The value each bin stands for, then the window's ends, then 0 for NaN.
        values = np.concatenate([middle, [start, end]])
        v = slope * values - slope * start
        levels = np.concatenate([_curve(v, family, coefficient), [0.0]]).astype(np.uint8)
    if inverted:
        levels = 255 - levels
    levels.flags.writeable = False
    return levels


def quantize_binned(
    values: np.ndarray, start: float, end: float, family: str, coefficient: float, inverted: bool
) -> np.ndarray:
    """Return the 8-bit value (uint8) of each of ``values``, as OMERO's Quantization_32_bit.

    OMERO's 32-bit and float quantizers first replace each value by the middle of the one of
    256 equal bins of the window it falls in (values outside the window by the window's end
    nearest to them), then map that middle through the family's curve.
    """
    return _bin_levels(start, end, family, coefficient, inverted).take(
        bin_index(values, start, end)
    )


def bin_index(values: np.ndarray, start: float, end: float) -> np.ndarray:
    """Return, per value, its bin (0..255), 256 below the window, 257 above it, 258 for NaN."""
    x = np.asarray(values, dtype=np.float64)
    if not end > start:
        index = np.where(x <= start, BINS, BINS + 1)
    else:
        # PERF: whole-array arithmetic, then three masks; no gathering through a mask.
        index_f = np.subtract(x, start)
        index_f /= (end - start) / BINS
        np.floor(index_f, out=index_f)
        np.clip(index_f, 0.0, BINS - 1.0, out=index_f)
        with np.errstate(invalid="ignore"):  # NaN is marked below
            index = index_f.astype(np.intp)
        index[x < start] = BINS
        index[x > end] = BINS + 1
    if np.asarray(values).dtype.kind == "f":
        index[np.isnan(x)] = BINS + 2
    return index


@lru_cache(maxsize=256)
def _paint(color: str, alpha: int, lut: str | None, grey: bool, dim: bool) -> np.ndarray:
    """Return the packed colour (uint32, 256 entries) that paints each 8-bit value."""
    q = np.arange(256)
    if grey:
        rgb = np.stack([q, q, q], axis=1)
    elif lut is not None:
        rgb = get_lut(lut).astype(np.int64)
    else:
        components = [int(color[i : i + 2], 16) for i in (0, 2, 4)]
        # NOTE: OMERO computes (int) (C / 255.0 * q): truncated, not rounded.
        rgb = np.stack([((c / 255.0) * q).astype(np.int64) for c in components], axis=1)
        if dim:
            factor = np.float32(alpha) / np.float32(255)
            rgb = (rgb.astype(np.float32) * factor).astype(np.int64)
    packed = rgb[:, 0] | (rgb[:, 1] << LANE) | (rgb[:, 2] << (2 * LANE))
    table = packed.astype(np.uint32)
    table.flags.writeable = False
    return table


def _rendered(ch: ChannelSettings, pixel_type: str) -> ChannelSettings:
    """Return ``ch`` as OMERO's QuantumStrategy applies it: window within the type, linear k = 1."""
    start, end = type_window(ch.start, ch.end, pixel_type)
    coefficient = 1.0 if ch.family == "linear" else ch.coefficient
    if (start, end, coefficient) == (ch.start, ch.end, ch.coefficient):
        return ch
    return replace(ch, start=start, end=end, coefficient=coefficient)


def _settings_key(ch: ChannelSettings) -> tuple[float, float, str, float, bool]:
    return (ch.start, ch.end, ch.family, ch.coefficient, ch.inverted)


@lru_cache(maxsize=64)
def _quantize_table(
    dtype: np.dtype, start: float, end: float, family: str, coefficient: float, inverted: bool
) -> np.ndarray:
    """Return the 8-bit value of every value of ``dtype``, indexed by its unsigned bit pattern."""
    index_type = _TABLE_TYPES[dtype]
    values = np.arange(np.iinfo(index_type).max + 1, dtype=np.int64).astype(index_type)
    return quantize(values.view(dtype), start, end, family, coefficient, inverted)


# PERF: one table per (settings, type, colour) maps a raw value straight to its packed
# colour, so an 8/16-bit channel costs a single take per pixel and no float math.
@lru_cache(maxsize=64)
def _channel_table(
    dtype: np.dtype,
    settings: tuple[float, float, str, float, bool],
    paint: tuple[str, int, str | None, bool, bool],
) -> tuple[np.ndarray, tuple[int, int, int]]:
    table = _paint(*paint).take(_quantize_table(dtype, *settings))
    table.flags.writeable = False
    return table, _lane_max(table)


def _lane_max(table: np.ndarray) -> tuple[int, int, int]:
    """Return the largest value of each lane of a packed table."""
    if not table.size:
        return (0, 0, 0)
    red = int((table & LANE_MASK).max())
    green = int(((table >> LANE) & LANE_MASK).max())
    return (red, green, int((table >> (2 * LANE)).max()))


def _native(plane: np.ndarray) -> np.ndarray:
    return plane if plane.dtype.isnative else plane.astype(plane.dtype.newbyteorder("="))


def _lookup(
    plane: np.ndarray, ch: ChannelSettings, paint: tuple[str, int, str | None, bool, bool]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Return (table, index, lane maxima): ``table[index]`` is the packed colour of each pixel."""
    plane = _native(plane)
    if plane.dtype in _TABLE_TYPES:
        table, top = _channel_table(plane.dtype, _settings_key(ch), paint)
        return table, plane.view(_TABLE_TYPES[plane.dtype]), top
    if plane.dtype.kind not in "uif":
        raise TypeError(f"cannot render pixels of type {plane.dtype}")
    # 32-bit and float pixels: OMERO snaps each value to one of 256 bins of the window.
    table = _paint(*paint)
    levels = _bin_levels(ch.start, ch.end, ch.family, ch.coefficient, ch.inverted)
    q = bin_index(plane, ch.start, ch.end)
    return table.take(levels), q, _lane_max(table)


def _saturate(acc: np.ndarray) -> np.ndarray:
    """Clip each lane of ``acc`` to 255 and repack."""
    out = np.minimum(acc & LANE_MASK, 255)
    for shift in (LANE, 2 * LANE):
        lane = (acc >> shift) & LANE_MASK
        np.minimum(lane, 255, out=lane)
        out |= lane << shift
    return out


_SCRATCH = threading.local()
_SCRATCH_PIXELS = 1024 * 1024


def _scratch(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return two uint32 (height, width) work arrays, reused by this thread for small sizes.

    PERF: a fresh megabyte-sized array costs page faults on every call (3 × 512² takes went
    from 0.7 to 2.6 ms); reusing per-thread buffers avoids them.
    """
    count = height * width
    if count > _SCRATCH_PIXELS:
        return np.empty((height, width), np.uint32), np.empty((height, width), np.uint32)
    pair = getattr(_SCRATCH, "pair", None)
    if pair is None or pair[0].size < count:
        pair = (np.empty(count, np.uint32), np.empty(count, np.uint32))
        _SCRATCH.pair = pair
    return pair[0][:count].reshape(height, width), pair[1][:count].reshape(height, width)


PRIMARIES = {"FF0000": 0, "00FF00": 1, "0000FF": 2}


def _primary_lanes(
    rdef: RenderingDef, chosen: Sequence[int], grey: bool, dim: bool
) -> list[tuple[int, tuple[int, ...]]] | None:
    """Return (channel, lanes it fills) when every channel paints its level straight into lanes.

    That is the greyscale model (one channel into all three), or colour channels of pure red,
    green and blue without LUT or alpha, each colour at most once: then no two channels add up
    and the picture is each channel's 8-bit level in its lane.
    """
    if grey:
        return [(chosen[0], (0, 1, 2))]
    if dim:
        return None
    found: list[tuple[int, tuple[int, ...]]] = []
    for c in chosen:
        ch = rdef.channels[c]
        lane = PRIMARIES.get(ch.color.upper()) if ch.lut is None else None
        if lane is None or any(lane in lanes for _c, lanes in found):
            return None
        found.append((c, (lane,)))
    return found


def unchanged_rgb(rdef: RenderingDef, pixel_type: str) -> bool:
    """Return whether ``rdef`` renders 8-bit red, green and blue channels as they are stored.

    That is channels 1, 2 and 3 on, pure red, green and blue in that order, each with a window
    and curve that map every value to itself: the picture is the stored RGB pixels.
    """
    if pixel_type != "uint8" or rdef.model != "color" or rdef.projection != "normal":
        return False
    if len(rdef.channels) != 3:
        return False
    dtype = np.dtype(np.uint8)
    for lane, ch in enumerate(rdef.channels):
        if not ch.active or ch.lut is not None or ch.alpha != 255:
            return False
        if PRIMARIES.get(ch.color.upper()) != lane:
            return False
        if not _level_table(dtype, _settings_key(_rendered(ch, pixel_type)))[1]:
            return False
    return True


@lru_cache(maxsize=64)
def _level_table(
    dtype: np.dtype, settings: tuple[float, float, str, float, bool]
) -> tuple[np.ndarray, bool]:
    """Return the 8-bit level of every value of ``dtype``, and whether it is the value itself."""
    table = _quantize_table(dtype, *settings)
    return table, table.size == 256 and bool((table == np.arange(256)).all())


def _render_primaries(
    planes: Sequence[np.ndarray | None],
    rdef: RenderingDef,
    pixel_type: str,
    lanes_of: Sequence[tuple[int, tuple[int, ...]]],
    shape: tuple[int, int],
) -> np.ndarray:
    """Render channels that each fill their own lanes (see ``_primary_lanes``).

    # PERF: one 8-bit table lookup per channel, written into its lane; an 8-bit channel with
    # the full window (photos) is copied as it is. Three 256² channels: 0.2 ms against 0.8 ms
    # through packed colours.
    """
    out = np.zeros((*shape, 3), dtype=np.uint8)
    for c, lanes in lanes_of:
        plane = planes[c]
        assert plane is not None
        if plane.shape != shape:
            raise ValueError(f"plane {c + 1} is {plane.shape}, not {shape}")
        plane = _native(plane)
        ch = _rendered(rdef.channels[c], pixel_type or plane.dtype.name)
        if plane.dtype in _TABLE_TYPES:
            table, identity = _level_table(plane.dtype, _settings_key(ch))
            index = plane.view(_TABLE_TYPES[plane.dtype])
            level = index if identity else table.take(index)
        elif plane.dtype.kind in "uif":
            levels = _bin_levels(ch.start, ch.end, ch.family, ch.coefficient, ch.inverted)
            level = levels.take(bin_index(plane, ch.start, ch.end))
        else:
            raise TypeError(f"cannot render pixels of type {plane.dtype}")
        for lane in lanes:
            out[..., lane] = level
    return out


def render(
    planes: Sequence[np.ndarray | None],
    rdef: RenderingDef,
    pixel_type: str,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Return the (H, W, 3) uint8 RGB picture of ``planes`` (one 2-D plane per channel).

    Only the planes of active channels are read (others may be None). ``pixel_type`` names the
    image's type; each plane is rendered by its own dtype. ``shape`` gives the size of the
    picture when no channel is active (it is black then).
    """
    grey = rdef.model == "greyscale"
    chosen = [c for c, ch in enumerate(rdef.channels) if ch.active]
    if grey:
        chosen = chosen[:1]
    for c in chosen:
        if c >= len(planes) or planes[c] is None:
            raise ValueError(f"the plane of active channel {c + 1} is missing")
    given = [p for p in planes if p is not None]
    size = given[0].shape if given else shape
    if size is None:
        raise BadParameter("c", "no channel is active")
    height, width = int(size[0]), int(size[1])
    if not chosen:
        return np.zeros((height, width, 3), dtype=np.uint8)
    # As OMERO's Renderer.checkOptimizations: alpha counts only when some active channel has one.
    dim = not grey and any(rdef.channels[c].alpha != 255 for c in chosen)
    lanes_of = _primary_lanes(rdef, chosen, grey, dim)
    if lanes_of is not None:
        return _render_primaries(planes, rdef, pixel_type, lanes_of, (height, width))
    acc, tmp = _scratch(height, width)
    top = [0, 0, 0]  # an upper bound of each lane of acc
    for number, c in enumerate(chosen):
        plane = planes[c]
        assert plane is not None
        if plane.shape != (height, width):
            raise ValueError(f"plane {c + 1} is {plane.shape}, not {(height, width)}")
        ch = _rendered(rdef.channels[c], pixel_type or plane.dtype.name)
        paint = (ch.color, ch.alpha if dim else 255, None if grey else ch.lut, grey, dim)
        table, index, lanes = _lookup(plane, ch, paint)
        if number == 0:
            table.take(index, out=acc, mode="clip")
            top = list(lanes)
            continue
        if any(t + m > LANE_MASK for t, m in zip(top, lanes, strict=True)):
            # Only with five or more bright channels: saturate before a lane overflows.
            acc[...] = _saturate(acc)
            top = [min(t, 255) for t in top]
        table.take(index, out=tmp, mode="clip")
        np.add(acc, tmp, out=acc)
        top = [t + m for t, m in zip(top, lanes, strict=True)]
    out = np.empty((height, width, 3), dtype=np.uint8)
    if max(top) <= 255:
        # NOTE: assigning keeps the low 8 bits, which are the lane itself when it is ≤ 255.
        out[..., 0] = acc
        np.right_shift(acc, LANE, out=tmp)
        out[..., 1] = tmp
        np.right_shift(acc, 2 * LANE, out=tmp)
        out[..., 2] = tmp
        return out
    for lane in range(3):
        if lane == 0:
            np.bitwise_and(acc, LANE_MASK, out=tmp)
        else:
            np.right_shift(acc, LANE * lane, out=tmp)
            if lane == 1:
                np.bitwise_and(tmp, LANE_MASK, out=tmp)
        np.minimum(tmp, 255, out=tmp)
        out[..., lane] = tmp
    return out
