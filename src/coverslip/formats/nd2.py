"""Nikon ND2 through the nd2 package: every multi-point position an image, read frame by frame.

An ND2 stores one frame per point of its loops (time, position, Z), holding every channel.
A frame is read when a band of it is first asked for and kept until another is: for an
uncompressed file it is a view of the memory-mapped file, so only the rows a band needs are
touched. nd2 fills a frame it cannot find with zeros; frames are checked against the file's
end here, so that damage fails instead of importing black planes.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nd2
import numpy as np

from coverslip.errors import ImportFailed
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, Reader, check_pixel_type
from coverslip.formats.meta import RGB_CHANNELS, capped, positive, reason

FRAME_AXES = frozenset("CSYX")
JULIAN_UNIX_EPOCH = 2440587.5


def _unreadable(exc: BaseException, path: Path) -> ImportFailed:
    """Return the ImportFailed for what nd2 raised while opening ``path``."""
    if "chunkmap" in str(exc).lower():
        # NOTE: nd2 reads the chunk map, which locates every frame, from the end of the file
        # (lazily, on first use): a file cut short has none.
        return ImportFailed("the ND2 is truncated or damaged (the chunk map at its end is missing)")
    return ImportFailed(f"not a readable ND2 ({reason(exc, path)[:300]})")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the frames of an ND2 make up its images: one per position, each 5-D."""

    loops: tuple[tuple[str, int], ...]  # the file's loop axes (T, P, Z, U) and sizes, slowest first
    folded: dict[str, tuple[str, ...]]  # "T"/"Z" -> the loop axes that make it up
    positions: int

    @property
    def size_t(self) -> int:
        return math.prod(self.size(axis) for axis in self.folded["T"])

    @property
    def size_z(self) -> int:
        return math.prod(self.size(axis) for axis in self.folded["Z"])

    def size(self, axis: str) -> int:
        return dict(self.loops).get(axis, 1)

    def frame(self, position: int, t: int, z: int) -> int:
        """Return the index of the frame of (position, t, z)."""
        coords = {"P": position}
        for axis, value in (("T", t), ("Z", z)):
            axes = self.folded[axis]
            found = np.unravel_index(value, [self.size(a) for a in axes])
            coords.update(zip(axes, (int(i) for i in found), strict=True))
        if not self.loops:
            return 0
        return int(
            np.ravel_multi_index(
                [coords.get(axis, 0) for axis, _ in self.loops], [n for _, n in self.loops]
            )
        )


def plan_frames(sizes: Mapping[str, int], frames: int) -> Plan:
    """Return the plan of an ND2 whose axes are ``sizes`` (nd2's order) and that holds ``frames``.

    Loops nd2 cannot name (U) become Z when there is no Z loop, else they are folded into T.
    An acquisition stopped early holds fewer frames than its loops: when time is the outermost
    loop, the complete time points are kept; otherwise the file is refused.
    """
    loops = [(axis, int(n)) for axis, n in sizes.items() if axis not in FRAME_AXES]
    if any(n < 1 for _, n in loops):
        raise ImportFailed(f"the ND2's loops have no frames ({dict(loops)})")
    expected = math.prod(n for _, n in loops)
    if frames < expected:
        inner = expected // loops[0][1] if loops else 1
        if not loops or loops[0][0] != "T" or frames < inner:
            raise ImportFailed(
                f"the ND2 holds {frames} of the {expected} frames its loops describe "
                "(a truncated file or an interrupted acquisition)"
            )
        loops[0] = ("T", frames // inner)
    names = [axis for axis, _ in loops]
    unknown = tuple(axis for axis in names if axis not in "TPZ")
    target = "T" if "Z" in names else "Z"
    folded: dict[str, tuple[str, ...]] = {"T": ("T",), "Z": ("Z",)}
    folded[target] = (target, *unknown)
    return Plan(tuple(loops), folded, dict(loops).get("P", 1))


def rgb_hex(color: Any) -> str | None:
    """Return "RRGGBB" from nd2's Color (r, g, b in 0..255) or a packed 0xBBGGRR integer."""
    try:
        if isinstance(color, int):
            r, g, b = color & 0xFF, (color >> 8) & 0xFF, (color >> 16) & 0xFF
        else:
            r, g, b = (int(getattr(color, name)) for name in ("r", "g", "b"))
    except (AttributeError, TypeError, ValueError):
        return None
    if not all(0 <= v <= 255 for v in (r, g, b)):
        return None
    return f"{r:02X}{g:02X}{b:02X}"


def _plain(value: Any) -> Any:
    """Return dataclasses and named tuples as dicts, so that they can be flattened."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return value._asdict()
    return value


def flatten(sections: Mapping[str, Any]) -> dict[str, str]:
    """Return nested metadata as "attributes|widthPx" keys, capped in count and length."""

    def walk(key: str, value: Any) -> Iterator[tuple[str, str]]:
        value = _plain(value)
        if isinstance(value, Mapping):
            for name, item in value.items():
                yield from walk(f"{key}|{name}", item)
        elif isinstance(value, list | tuple) and any(
            isinstance(_plain(item), Mapping | list | tuple) for item in value
        ):
            for i, item in enumerate(value):
                yield from walk(f"{key} #{i + 1}", item)
        elif value is not None:
            text = " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            if text.strip():
                yield key, text.strip()

    return capped(pair for name, section in sections.items() for pair in walk(name, section))


def _julian(day: Any) -> str | None:
    """Return an ISO 8601 UTC time from a Julian day number (nd2's absolute frame time)."""
    number = positive(day)
    if number is None or number < JULIAN_UNIX_EPOCH:  # NOTE: files without a clock store -1
        return None
    try:
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=number - JULIAN_UNIX_EPOCH)
    except OverflowError:
        return None
    return when.isoformat(timespec="seconds")


def _text_date(text: str | None) -> str | None:
    """Return ISO 8601 from the date NIS-Elements writes in its text info (local time)."""
    if not text:
        return None
    formats = (
        "%d/%m/%Y %H:%M:%S",
        "%m/%d/%Y %I:%M:%S %p",
        "%Y-%m-%d %H:%M:%S",
        "%d.%m.%Y %H:%M:%S",
    )
    for fmt in formats:
        try:
            return datetime.strptime(" ".join(text.split()), fmt).isoformat()
        except ValueError:
            continue
    return None


class _File:
    """The open ND2 that the positions share, with the last frame read."""

    def __init__(self, path: Path, handle: nd2.ND2File) -> None:
        self.path = path
        self.handle = handle
        self.lock = threading.Lock()
        self.raw_shape = (1, 1, 1, 1)
        self._frame: tuple[int, np.ndarray] | None = None

    def frame(self, index: int) -> np.ndarray:
        """Return frame ``index`` as (channels, Y, X, components)."""
        with self.lock:
            if self._frame is None or self._frame[0] != index:
                self._frame = None  # NOTE: drop the old view before reading the next
                data = self.handle.read_frame(index)
                self._frame = (index, np.reshape(data, self.raw_shape))
            return self._frame[1]

    def close(self) -> None:
        with self.lock:
            self._frame = None
            self.handle.close()


class Nd2Position:
    """One position of an open ND2 (or the whole file when it has one)."""

    def __init__(self, file: _File, plan: Plan, position: int, meta: ImageMeta) -> None:
        self.file = file
        self.plan = plan
        self.position = position
        self.meta = meta
        self.components = file.raw_shape[3]

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        index = self.plan.frame(self.position, t, z)
        channel, component = divmod(c, self.components)
        try:
            frame = self.file.frame(index)
            band = np.array(frame[channel, y0:y1, :, component])
        except ImportFailed:
            raise
        except MemoryError:
            raise ImportFailed("a frame of the ND2 is too large to read") from None
        except Exception as exc:  # noqa: BLE001 - decoders and short reads fail in many ways
            where = f" of {self.meta.series}" if self.meta.series else ""
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z}{where} cannot be read "
                f"({reason(exc, self.file.path)})"
            ) from None
        return band.astype(band.dtype.newbyteorder("="), copy=False)

    def close(self) -> None:
        pass


def _check_frames(handle: nd2.ND2File, path: Path, plan: Plan, frame_bytes: int) -> None:
    """Raise ImportFailed when a frame the loops need is missing or lies past the file's end."""
    # NOTE: nd2 returns zeros for such frames; its reader's frame offsets are not public API,
    # so the check is skipped when a reader (the legacy one) has none.
    offsets = getattr(getattr(handle, "_rdr", None), "_frame_offsets", None)
    if not isinstance(offsets, Mapping):
        return
    size = path.stat().st_size
    needed = math.prod(n for _, n in plan.loops)
    compressed = handle.attributes.compressionType is not None
    for index in range(needed):
        offset = offsets.get(index)
        if offset is None:
            raise ImportFailed(f"frame {index} of the ND2 is missing (a damaged file)")
        if not compressed and offset + frame_bytes > size:
            raise ImportFailed(
                f"the ND2 is truncated ({size} bytes, frame {index} needs {offset + frame_bytes})"
            )


def _describe(handle: nd2.ND2File, plan: Plan) -> dict[str, Any]:
    """Return the ImageMeta fields that the positions share (channels excluded)."""
    channels = handle.metadata.channels or []
    first = channels[0] if channels else None
    calibrated = tuple(first.volume.axesCalibrated) if first is not None else (True, True, True)
    voxel = handle.voxel_size()
    text_info = dict(handle.text_info or {})
    objective = first.microscope.objectiveName if first is not None else None
    acquired = None
    increment = None
    try:
        stamps = handle.frame_metadata(0)
        if not isinstance(stamps, dict) and stamps.channels:
            acquired = _julian(stamps.channels[0].time.absoluteJulianDayNumber)
            if plan.size_t > 1:
                last = handle.frame_metadata(plan.frame(0, plan.size_t - 1, 0))
                if not isinstance(last, dict) and last.channels:
                    span = last.channels[0].time.relativeTimeMs
                    span -= stamps.channels[0].time.relativeTimeMs
                    increment = positive(span / 1000 / (plan.size_t - 1))
    except Exception:  # noqa: BLE001, S110 - frame times are optional; pixels decide success
        pass
    return {
        "physical_size_x": positive(voxel.x) if calibrated[0] else None,
        "physical_size_y": positive(voxel.y) if calibrated[1] else None,
        "physical_size_z": positive(voxel.z) if plan.size("Z") > 1 and calibrated[2] else None,
        "objective": objective or text_info.get("optics") or None,
        "acquired": acquired or _text_date(str(text_info.get("date") or "")),
        "time_increment": increment,
        "original_metadata": flatten(
            {
                "text_info": text_info,
                "attributes": handle.attributes,
                "metadata": handle.metadata,
                "experiment": list(handle.experiment),
            }
        ),
    }


def _channels(described: list[Any], components: int, count: int) -> list[ChannelMeta]:
    """Return the image's channels from nd2's channel metadata (RGB samples as three)."""
    out: list[ChannelMeta] = []
    for index in range(count):
        given = described[index] if index < len(described) else None
        name = given.channel.name if given is not None else ""
        if components == 3:
            for label, color in RGB_CHANNELS:
                out.append(ChannelMeta(f"{name} {label}" if count > 1 and name else label, color))
            continue
        channel = ChannelMeta(
            name=name or "",
            color=rgb_hex(given.channel.color) if given is not None else None,
            emission_wave=positive(given.channel.emissionLambdaNm) if given else None,
            excitation_wave=positive(given.channel.excitationLambdaNm) if given else None,
        )
        out.extend(
            dataclasses.replace(channel, name=f"{channel.name} {k + 1}" if components > 1 else name)
            for k in range(components)
        )
    return out


def _series_names(handle: nd2.ND2File, positions: int) -> list[str]:
    """Return the position names when every position has its own, else "position N"."""
    names: list[str] = []
    for loop in handle.experiment:
        if loop.type == "XYPosLoop":
            names = [str(point.name or "").strip() for point in loop.parameters.points]
    if len(names) == positions and all(names) and len(set(names)) == positions:
        return names
    return [f"position {i + 1}" for i in range(positions)]


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open an ND2: one image per multi-point position."""
    try:
        handle = nd2.ND2File(path)
    except MemoryError:
        raise ImportFailed("the ND2's structure is too large to read") from None
    except Exception as exc:  # noqa: BLE001 - nd2 raises ValueError, OSError, struct.error…
        raise _unreadable(exc, path) from None
    shared = _File(path, handle)
    try:
        attributes = handle.attributes
        height, width = int(attributes.heightPx), int(attributes.widthPx or 0)
        channels = int(attributes.channelCount or 1)
        components = int(attributes.componentCount) // channels
        if height < 1 or width < 1 or components < 1:
            raise ImportFailed(f"the ND2's frames are empty ({width} × {height} pixels)")
        shared.raw_shape = (channels, height, width, components)
        pixel_type = check_pixel_type(handle.dtype)
        plan = plan_frames(handle.sizes, int(attributes.sequenceCount))
        frame_bytes = int(attributes.widthBytes or 0) * height or (
            height * width * channels * components * handle.dtype.itemsize
        )
        _check_frames(handle, path, plan, frame_bytes)
        try:
            common = _describe(handle, plan)
            described = list(handle.metadata.channels or [])
            series = _series_names(handle, plan.positions)
        except Exception:  # noqa: BLE001 - metadata is optional: the pixels decide success
            common, described = {}, []
            series = [f"position {i + 1}" for i in range(plan.positions)]
        channel_meta = _channels(described, components, channels)
    except ImportFailed:
        shared.close()
        raise
    except Exception as exc:  # noqa: BLE001 - damaged metadata fails in many ways
        shared.close()
        raise _unreadable(exc, path) from None

    def opener(position: int) -> Callable[[], Reader]:
        def open_position() -> Reader:
            meta = ImageMeta(
                name=path.stem,
                format=fmt,
                size_t=plan.size_t,
                size_c=len(channel_meta),
                size_z=plan.size_z,
                size_y=height,
                size_x=width,
                pixel_type=pixel_type,
                channels=[dataclasses.replace(ch) for ch in channel_meta],
                series=series[position] if plan.positions > 1 else None,
                **{**common, "original_metadata": dict(common.get("original_metadata", {}))},
            )
            return Nd2Position(shared, plan, position, meta)

        return open_position

    return Fileset(
        format=fmt,
        files=[path],
        images=[opener(p) for p in range(plan.positions)],
        closers=[shared.close],
    )
