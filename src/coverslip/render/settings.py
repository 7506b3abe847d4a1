"""Rendering settings (one RenderingDef per user and image) and OMERO's URL grammar for them.

The grammar is OMERO.web's webgateway: ``c=``, ``m=``, ``maps=``, ``p=``, ``q=``, ``format=``.
Semantics follow omero-web ``webgateway/views.py`` (``_split_channel_info``,
``_get_inverted_enabled``, ``_get_prepared_image``) and omero-py ``gateway/__init__.py``
(``set_active_channels``, ``setQuantizationMaps``, ``setProjectionRange``); where OMERO
silently ignores a malformed value we answer BadParameter naming the parameter instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coverslip.errors import BadParameter
from coverslip.render.luts import exact_lut, lut_key

FAMILIES = ("linear", "polynomial", "exponential", "logarithmic")
MODELS = ("color", "greyscale")
PROJECTIONS = ("normal", "intmax", "intmean", "intsum")
FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "tif": "tif", "tiff": "tif"}
# NOTE: OMERO understands only m=g and m=c; the long names are what it stores and shows.
MODEL_ALIASES = {
    "g": "greyscale",
    "greyscale": "greyscale",
    "c": "color",
    "color": "color",
    "rgb": "color",
}
DEFAULT_QUALITY = 0.9

# Pixel value range of each type, as OMERO's StatsFactory.initPixelsRange: the integer types by
# their bit size; the float types by Bio-Formats' default range, which OMERO holds in Java longs
# (so -Float.MAX_VALUE and Float.MAX_VALUE become Long.MIN_VALUE and Long.MAX_VALUE).
TYPE_RANGES = {
    "uint8": (0.0, 255.0),
    "int8": (-128.0, 127.0),
    "uint16": (0.0, 65535.0),
    "int16": (-32768.0, 32767.0),
    "uint32": (0.0, 4294967295.0),
    "int32": (-2147483648.0, 2147483647.0),
    "float32": (-9223372036854775808.0, 9223372036854775807.0),
    "float64": (-9223372036854775808.0, 9223372036854775807.0),
}
# The widest window OMERO's QuantumStrategy.verifyInterval accepts per type (end - start must
# be below it); the float types accept any.
_WINDOW_SPANS = {
    "uint8": 256.0,
    "int8": 256.0,
    "uint16": 65536.0,
    "int16": 65536.0,
    "uint32": 4294967296.0,
    "int32": 4294967296.0,
}

_HEX = re.compile(r"[0-9A-Fa-f]+")
_MAX_C_LENGTH = 10_000
_MAX_MAPS_LENGTH = 100_000


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """How one channel is rendered: on/off, window, colour or LUT, mapping curve, inversion."""

    active: bool = True
    start: float = 0.0
    end: float = 255.0
    color: str = "FFFFFF"  # RRGGBB, upper case
    lut: str | None = None  # e.g. "fire.lut"; when set it replaces the colour
    family: str = "linear"
    coefficient: float = 1.0
    inverted: bool = False
    alpha: int = 255  # OMERO's fourth colour byte; below 255 it dims the channel


@dataclass(frozen=True, slots=True)
class RenderingDef:
    """Everything that decides the picture of one plane, except which plane."""

    channels: tuple[ChannelSettings, ...]
    model: str = "color"
    projection: str = "normal"
    projection_start: int | None = None  # 0-based Z, inclusive
    projection_end: int | None = None
    default_z: int = 0
    default_t: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict for the database; ``from_json`` reads it back."""
        return {
            "model": self.model,
            "projection": self.projection,
            "projection_start": self.projection_start,
            "projection_end": self.projection_end,
            "default_z": self.default_z,
            "default_t": self.default_t,
            "channels": [
                {
                    "active": ch.active,
                    "start": ch.start,
                    "end": ch.end,
                    "color": ch.color,
                    "lut": ch.lut,
                    "family": ch.family,
                    "coefficient": ch.coefficient,
                    "inverted": ch.inverted,
                    "alpha": ch.alpha,
                }
                for ch in self.channels
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RenderingDef:
        """Return the def stored by ``to_json``; raise BadParameter("rdef") when it is malformed."""
        try:
            return _from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadParameter("rdef", f"stored rendering settings are malformed ({exc})") from None

    def to_query(self) -> str:
        """Return ``c=…&m=…&maps=…&p=…`` (not percent-encoded) that ``apply_query`` reads back."""
        entries = []
        for index, ch in enumerate(self.channels, start=1):
            paint = ch.lut if ch.lut else ch.color + ("" if ch.alpha == 255 else f"{ch.alpha:02X}")
            flag = "" if ch.active else "-"
            entries.append(f"{flag}{index}|{_number(ch.start)}:{_number(ch.end)}${paint}")
        maps = [
            {
                "inverted": {"enabled": ch.inverted},
                "quantization": {"family": ch.family, "coefficient": ch.coefficient},
            }
            for ch in self.channels
        ]
        projection = self.projection
        if self.projection != "normal" and self.projection_start is not None:
            end = "" if self.projection_end is None else str(self.projection_end)
            projection = f"{self.projection}|{self.projection_start}:{end}"
        model = "g" if self.model == "greyscale" else "c"
        maps_text = json.dumps(maps, separators=(",", ":"))
        return f"c={','.join(entries)}&m={model}&maps={maps_text}&p={projection}"


def type_window(start: float, end: float, pixel_type: str) -> tuple[float, float]:
    """Return the window OMERO renders for ``start:end`` on pixels of ``pixel_type``.

    As OMERO's QuantumStrategy.setWindow: a window whose start is above its end, or which is
    wider than the type allows, becomes the type's whole range; then the start is raised to
    the type's minimum and the end lowered to its maximum. Unknown types keep the window.
    """
    limits = TYPE_RANGES.get(pixel_type)
    if limits is None:
        return start, end
    low, high = limits
    if not (start <= end and end - start < _WINDOW_SPANS.get(pixel_type, math.inf)):
        return low, high
    return max(start, low), min(end, high)


def _number(value: float) -> str:
    """Format a window bound so that float() reads back exactly the same value."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _from_json(data: Mapping[str, Any]) -> RenderingDef:
    channels = []
    for raw in data["channels"]:
        family = raw.get("family", "linear")
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}")
        lut = raw.get("lut")
        if lut is not None:
            key = lut_key(str(lut))
            if key is None:
                raise ValueError(f"unknown LUT {lut!r}")
            lut = f"{key}.lut"
        color = _parse_hex_color(str(raw.get("color", "FFFFFF")))
        if color is None:
            raise ValueError(f"bad colour {raw.get('color')!r}")
        channels.append(
            ChannelSettings(
                active=bool(raw.get("active", True)),
                start=float(raw["start"]),
                end=float(raw["end"]),
                color=color[0],
                lut=lut,
                family=family,
                coefficient=float(raw.get("coefficient", 1.0)),
                inverted=bool(raw.get("inverted", False)),
                alpha=int(raw.get("alpha", color[1])),
            )
        )
    model = data.get("model", "color")
    projection = data.get("projection", "normal")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}")
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}")
    start, end = data.get("projection_start"), data.get("projection_end")
    return RenderingDef(
        channels=tuple(channels),
        model=model,
        projection=projection,
        projection_start=None if start is None else int(start),
        projection_end=None if end is None else int(end),
        default_z=int(data.get("default_z", 0)),
        default_t=int(data.get("default_t", 0)),
    )


# ---------------------------------------------------------------------------------------------
# Query parameters


def apply_query(base: RenderingDef, params: Mapping[str, str], size_c: int) -> RenderingDef:
    """Return ``base`` changed by OMERO webgateway parameters ``c``, ``m``, ``maps`` and ``p``.

    Raise BadParameter naming the parameter for any malformed value.
    """
    channels = list(base.channels[:size_c])
    channels += [ChannelSettings(active=False)] * (size_c - len(channels))
    rdef = base if len(channels) == len(base.channels) else replace(base, channels=tuple(channels))
    targets: list[int] | None = None
    if "c" in params:
        rdef, targets = _apply_channels(rdef, params["c"], size_c)
    if "maps" in params:
        rdef = _apply_maps(rdef, params["maps"], targets, size_c)
    if "m" in params:
        model = MODEL_ALIASES.get(params["m"].strip())
        if model is None:
            raise BadParameter("m", f"{_show(params['m'])} is not g (greyscale) or c (color)")
        rdef = replace(rdef, model=model)
    if "p" in params:
        method, start, end = _parse_projection(params["p"])
        rdef = replace(rdef, projection=method, projection_start=start, projection_end=end)
    return rdef


def _show(text: str, limit: int = 60) -> str:
    """Quote a user value for an error message, shortened."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _apply_channels(rdef: RenderingDef, text: str, size_c: int) -> tuple[RenderingDef, list[int]]:
    """Apply ``c=``: return the new def and the 0-based channel of each entry, in order.

    NOTE: as omero-py's set_active_channels, a channel is active only when listed without
    "-"; every channel not listed becomes inactive. The window and colour of an entry apply
    whether or not it is active (OMERO applies them to inactive channels when it saves).
    OMERO pairs windows/colours with channels by ascending index, not by entry order (so
    ``c=2|…,1|…`` swaps them there); we pair them with their own entry.
    """
    if len(text) > _MAX_C_LENGTH:
        raise BadParameter("c", "is too long")
    if not text.strip():
        raise BadParameter("c", "is empty; list channels like 1|100:2000$FF0000,-2")
    channels = [replace(ch, active=False) for ch in rdef.channels]
    targets: list[int] = []
    for entry in text.split(","):
        index, active, window, paint = _parse_channel_entry(entry, size_c)
        targets.append(index)
        ch = channels[index]
        if active:
            ch = replace(ch, active=True)
        if window is not None:
            ch = replace(ch, start=window[0], end=window[1])
        if paint is not None:
            ch = replace(ch, **paint)
        channels[index] = ch
    return replace(rdef, channels=tuple(channels)), targets


def _parse_channel_entry(
    entry: str, size_c: int
) -> tuple[int, bool, tuple[float, float] | None, dict[str, Any] | None]:
    """Parse one ``[-]N[|start:end][$colour]`` entry of ``c=``."""
    text = entry.strip()
    head, bar, rest = text.partition("|")
    paint_text: str | None = None
    if "$" in head:  # "1$FF0000", or "1$FF0000|0:255" which OMERO also reads
        head, _, paint_text = head.partition("$")
    window: tuple[float, float] | None = None
    if bar:
        window_text, dollar, after = rest.partition("$")
        if dollar:
            paint_text = after
        window = _parse_window(window_text, entry)
    head = head.strip()
    active = not head.startswith("-")
    digits = head[1:] if head.startswith(("-", "+")) else head
    if not digits.isascii() or not digits.isdigit():
        raise BadParameter("c", f"{_show(entry)} does not start with a channel number")
    number = int(digits) if len(digits) <= 9 else size_c + 1
    if not 1 <= number <= size_c:
        raise BadParameter("c", f"channel {number} is outside 1..{size_c}")
    paint = None if paint_text is None else _parse_paint(paint_text.strip(), entry)
    return number - 1, active, window, paint


def _parse_window(text: str, entry: str) -> tuple[float, float]:
    parts = text.split(":")
    if len(parts) != 2:
        raise BadParameter("c", f"{_show(entry)}: the window must be start:end")
    try:
        start, end = float(parts[0]), float(parts[1])
    except ValueError:
        raise BadParameter("c", f"{_show(entry)}: the window must be two numbers") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise BadParameter("c", f"{_show(entry)}: the window must be finite")
    # NOTE: a start above the end is kept as asked; the kernel renders it with the type's
    # whole range, as OMERO's QuantumStrategy.setWindow does (see type_window).
    return start, end


def _parse_hex_color(text: str) -> tuple[str, int] | None:
    """Return ("RRGGBB", alpha) for RGB, RGBA, RRGGBB or RRGGBBAA hex (as omero-py), else None."""
    text = text.strip().lstrip("#")
    if len(text) not in (3, 4, 6, 8) or not _HEX.fullmatch(text):
        return None
    if len(text) in (3, 4):
        text = "".join(c * 2 for c in text)
    alpha = int(text[6:8], 16) if len(text) == 8 else 255
    return text[:6].upper(), alpha


def _parse_paint(text: str, entry: str) -> dict[str, Any]:
    """Return the ChannelSettings fields set by a ``$`` colour or LUT name.

    NOTE: as omero-py's set_active_channels: a hex colour sets the colour and switches the LUT
    off; a name ending in ".lut" sets the LUT, and OMERO's LutProvider finds it only under its
    exact lower-case file name, so an unknown ".lut" leaves the channel in its colour. OMERO
    ignores any other text: "fire" or "FIRE.LUT" change nothing here either; text that names
    no LUT at all is refused.
    """
    color = _parse_hex_color(text)
    if color is not None:
        return {"color": color[0], "alpha": color[1], "lut": None}
    if text.endswith(".lut"):
        return {"lut": text if exact_lut(text) else None}
    if text and lut_key(text) is not None:
        return {}
    raise BadParameter("c", f"{_show(entry)}: {_show(text)} is neither a hex colour nor a LUT")


def _apply_maps(
    rdef: RenderingDef, text: str, targets: list[int] | None, size_c: int
) -> RenderingDef:
    """Apply ``maps=``: one entry per ``c=`` entry (or per channel when there is no ``c=``).

    NOTE: as omero-web's _get_inverted_enabled, an entry without "inverted" (or its old
    name "reverse") switches inversion off, and so does a null entry: OMERO applies no
    inversion or other codomain map to that channel. As omero-py's setQuantizationMaps,
    "quantization" needs a family; the coefficient defaults to 1.0.
    """
    if len(text) > _MAX_MAPS_LENGTH:
        raise BadParameter("maps", "is too long")
    try:
        maps = json.loads(text)
    except (ValueError, RecursionError):
        raise BadParameter("maps", "is not valid JSON") from None
    if not isinstance(maps, list):
        raise BadParameter("maps", "must be a JSON list with one entry per channel")
    order = targets if targets is not None else list(range(size_c))
    if len(maps) > len(order):
        raise BadParameter("maps", f"has {len(maps)} entries for {len(order)} channels")
    channels = list(rdef.channels)
    for index, item in zip(order, maps, strict=False):
        if item is None:
            channels[index] = replace(channels[index], inverted=False)
            continue
        if not isinstance(item, dict):
            raise BadParameter("maps", "each entry must be a JSON object or null")
        channels[index] = replace(channels[index], **_parse_map(item))
    return replace(rdef, channels=tuple(channels))


_TRUE = (True, "true", 1)
_FALSE = (False, "false", 0, None)


def _parse_map(item: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    flag = item.get("inverted", item.get("reverse"))
    enabled: Any = False
    if flag is not None:
        if not isinstance(flag, dict):
            raise BadParameter("maps", '"inverted" must be an object like {"enabled": true}')
        enabled = flag.get("enabled")
    if enabled in _TRUE:
        fields["inverted"] = True
    elif enabled in _FALSE:
        fields["inverted"] = False
    else:
        raise BadParameter("maps", '"enabled" must be true or false')
    quantization = item.get("quantization")
    if quantization is not None:
        if not isinstance(quantization, dict):
            raise BadParameter("maps", '"quantization" must be an object')
        family = quantization.get("family")
        if family not in FAMILIES:
            raise BadParameter("maps", f"family must be one of {', '.join(FAMILIES)}")
        coefficient = quantization.get("coefficient", 1.0)
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float):
            raise BadParameter("maps", "coefficient must be a number")
        try:
            coefficient = float(coefficient)
        except OverflowError:
            raise BadParameter("maps", "coefficient is too large") from None
        # NOTE: OMERO accepts any double, but k <= 0 gives 0**k = inf or a flat map.
        if not (math.isfinite(coefficient) and 0 < coefficient <= 100):
            raise BadParameter("maps", "coefficient must be above 0 and at most 100")
        fields["family"] = family
        fields["coefficient"] = coefficient
    return fields


def _parse_projection(text: str) -> tuple[str, int | None, int | None]:
    """Parse ``p=method[|start:end]`` (0-based Z, inclusive)."""
    method, bar, rest = text.strip().partition("|")
    method = method.strip()
    if method not in PROJECTIONS:
        raise BadParameter("p", f"{_show(method)} is not one of {', '.join(PROJECTIONS)}")
    if not bar:
        return method, None, None
    parts = rest.split(":")
    if len(parts) != 2:
        raise BadParameter("p", f"{_show(text)}: the Z range must be start:end")
    try:
        start, end = int(parts[0]), int(parts[1])
    except ValueError:
        raise BadParameter("p", f"{_show(text)}: the Z range must be two integers") from None
    # NOTE: as omero-py's setProjectionRange, a negative start means 0; the end is
    # clipped to the last plane by whoever knows the image's size.
    start = max(0, start)
    if end < start:
        raise BadParameter("p", f"{_show(text)}: the Z range ends before it starts")
    if method == "normal":
        return method, None, None
    return method, start, end


def parse_quality(q: str | None) -> float:
    """Return the JPEG quality ``q`` (0..1, default 0.9); raise BadParameter("q") otherwise."""
    if q is None:
        return DEFAULT_QUALITY
    try:
        value = float(q)
    except (TypeError, ValueError):
        raise BadParameter("q", f"{_show(str(q))} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise BadParameter("q", f"{_show(str(q))} is not between 0 and 1")
    return value


def parse_format(fmt: str | None) -> str:
    """Return "jpeg", "png" or "tif" for ``fmt`` (jpg/jpeg/png/tif/tiff, any case)."""
    if fmt is None:
        return "jpeg"
    value = FORMATS.get(fmt.strip().lower())
    if value is None:
        raise BadParameter("format", f"{_show(fmt)} is not one of jpeg, png, tif")
    return value


# ---------------------------------------------------------------------------------------------
# Defaults


def _field(channel: Any, name: str) -> Any:
    if isinstance(channel, Mapping):
        return channel.get(name)
    return getattr(channel, name, None)


# NOTE: OMERO's Renderer.MAX_CHANNELS; images with this many channels or more (and images with
# one) open in the greyscale model.
MAX_COLOUR_CHANNELS = 8


def _wavelength(value: Any) -> int | None:
    """Return a wavelength in whole nanometres (OMERO compares integers), or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        nm = float(value)
    except (TypeError, ValueError):
        return None
    return int(nm) if math.isfinite(nm) and nm > 0 else None


def _wave_color(nm: int) -> str | None:
    """Return the colour OMERO's ColorsFactory.determineColor gives a wavelength (nm)."""
    if nm <= 500:
        return "0000FF"
    if 501 <= nm <= 559:
        return "00FF00"
    if nm >= 560:
        return "FF0000"
    return None


def _file_color(channel: Any) -> tuple[str, int] | None:
    """Return the colour the file gave the channel ("RRGGBB" or "RRGGBBAA"), or None."""
    color = _field(channel, "color")
    if isinstance(color, str) and len(color.strip().lstrip("#")) in (6, 8):
        return _parse_hex_color(color)
    return None


def default_colors(channels: Sequence[Any]) -> list[tuple[str, int]]:
    """Return each channel's default colour, as OMERO's RenderingSettingsImpl.resetChannelBindings.

    A colour from the file wins. Otherwise ColorsFactory.getColor: the emission wavelength's
    colour, else the excitation wavelength's, else red for the first channel, blue for the
    second and green for the rest. Then, when some but not all of the channels without a file
    colour have an emission wavelength, those without one become white.
    """
    colors: list[tuple[str, int]] = []
    without_emission: list[int] = []
    chosen = 0
    for index, channel in enumerate(channels):
        given = _file_color(channel)
        if given is not None:
            colors.append(given)
            continue
        chosen += 1
        emission = _wavelength(_field(channel, "emission_wave"))
        excitation = _wavelength(_field(channel, "excitation_wave"))
        if emission is None:
            without_emission.append(index)
        wave = emission if emission is not None else excitation
        color = _wave_color(wave) if wave is not None else None
        if color is None:
            color = ("FF0000", "0000FF")[index] if index < 2 else "00FF00"
        colors.append((color, 255))
    if without_emission and len(without_emission) != chosen:
        for index in without_emission:
            colors[index] = ("FFFFFF", 255)
    return colors


def default_def(channels: Sequence[Any], pixel_type: str, size_z: int, size_t: int) -> RenderingDef:
    """Return OMERO's default settings for an image whose channels are described by ``channels``.

    Each channel is an object or dict with ``color`` ("RRGGBB" or None when the file gave
    none), ``window_start``, ``window_end`` and optionally ``emission_wave`` and
    ``excitation_wave``. As OMERO's RenderingSettingsImpl.resetDefaults: the first three
    channels are active; the model is colour for 2 to 7 channels and greyscale otherwise;
    linear family with coefficient 1; default Z in the middle of the stack, default T 0; the
    window is the channel's minimum to maximum, or the type's range when they are equal.
    """
    low, high = TYPE_RANGES.get(pixel_type, (0.0, 1.0))
    settings = []
    for index, (channel, (color, alpha)) in enumerate(
        zip(channels, default_colors(channels), strict=True)
    ):
        start, end = _field(channel, "window_start"), _field(channel, "window_end")
        start = low if start is None or not math.isfinite(float(start)) else float(start)
        end = high if end is None or not math.isfinite(float(end)) else float(end)
        if start == end:
            start, end = low, high
        settings.append(
            ChannelSettings(
                active=index < 3,
                start=min(start, end),
                end=max(start, end),
                color=color,
                alpha=alpha,
            )
        )
    colour_model = 1 < len(settings) < MAX_COLOUR_CHANNELS
    return RenderingDef(
        channels=tuple(settings),
        model="color" if colour_model else "greyscale",
        default_z=max(0, size_z // 2),
        default_t=0,
    )
