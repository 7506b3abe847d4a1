"""DICOM whole-slide images (VL Whole Slide Microscopy), read with wsidicom.

A series comes as a folder of instances or as one of its files; then every DICOM file in
the same folder with the same SeriesInstanceUID belongs to it. Each pyramid of the series
is an image with its stored levels; the slide's label and overview become further images.
Bands are read with wsidicom's ``read_region`` at each stored level, so the pixels are the
decoded frames as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, Reader, check_pixel_type
from coverslip.formats.meta import RGB_CHANNELS

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
# Attributes of the first instance copied into the original metadata, by keyword.
# SECURITY: patient attributes (name, id, birth date, sex) are left out: metadata is shown
# to everyone who may see the image.
ATTRIBUTES = (
    "Manufacturer",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "SoftwareVersions",
    "InstitutionName",
    "Modality",
    "ImageType",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "ContentDate",
    "ContentTime",
    "AcquisitionDateTime",
    "AcquisitionDuration",
    "FrameOfReferenceUID",
    "ContainerIdentifier",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "BitsStored",
    "Rows",
    "Columns",
    "TotalPixelMatrixColumns",
    "TotalPixelMatrixRows",
    "TotalPixelMatrixFocalPlanes",
    "NumberOfOpticalPaths",
    "ImagedVolumeWidth",
    "ImagedVolumeHeight",
    "ImagedVolumeDepth",
    "FocusMethod",
    "ExtendedDepthOfField",
    "DimensionOrganizationType",
    "BurnedInAnnotation",
    "SpecimenLabelInImage",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "ImageOrientationSlide",
    "PositionReferenceIndicator",
)


def _text(exc: BaseException) -> str:
    """Return an exception as one line, without the folder it happened in."""
    message = re.sub(r"\s+", " ", f"{type(exc).__name__}: {exc}").strip()
    return re.sub(r"(?:[A-Za-z]:)?[/\\][^\s'\"]*[/\\]", "", message)


def _value(value: Any) -> str:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _first(dataset: Any, *keywords: str) -> Any:
    """Return the first item reached through nested sequences, or None."""
    found = dataset
    for keyword in keywords:
        found = getattr(found, keyword, None)
        if found is None:
            return None
        if keyword.endswith("Sequence"):
            if len(found) == 0:
                return None
            found = found[0]
    return found


def original_metadata(dataset: Any, level: Any = None) -> dict[str, str]:
    """Return a few dozen useful attributes of a WSI instance as text keys and values."""
    found: dict[str, str] = {}
    for keyword in ATTRIBUTES:
        value = getattr(dataset, keyword, None)
        if value not in (None, ""):
            found[keyword] = _value(value)
    try:
        transfer = level.default_instance.image_data.transfer_syntax if level else None
    except Exception:  # noqa: BLE001 - metadata only
        transfer = None
    if transfer is not None:
        found["TransferSyntaxUID"] = str(transfer)
        found["TransferSyntax"] = getattr(transfer, "name", str(transfer))
    nested = {
        "PixelSpacing": ("SharedFunctionalGroupsSequence", "PixelMeasuresSequence", "PixelSpacing"),
        "SliceThickness": (
            "SharedFunctionalGroupsSequence",
            "PixelMeasuresSequence",
            "SliceThickness",
        ),
        "ObjectiveLensPower": ("OpticalPathSequence", "ObjectiveLensPower"),
        "ObjectiveLensNumericalAperture": ("OpticalPathSequence", "ObjectiveLensNumericalAperture"),
        "OpticalPathIdentifier": ("OpticalPathSequence", "OpticalPathIdentifier"),
        "IlluminationType": (
            "OpticalPathSequence",
            "IlluminationTypeCodeSequence",
            "CodeMeaning",
        ),
        "IlluminationColor": (
            "OpticalPathSequence",
            "IlluminationColorCodeSequence",
            "CodeMeaning",
        ),
        "SpecimenIdentifier": ("SpecimenDescriptionSequence", "SpecimenIdentifier"),
        "PrimaryAnatomicStructure": (
            "SpecimenDescriptionSequence",
            "PrimaryAnatomicStructureSequence",
            "CodeMeaning",
        ),
        "ContainerType": ("ContainerTypeCodeSequence", "CodeMeaning"),
    }
    for key, keywords in nested.items():
        value = _first(dataset, *keywords)
        if value not in (None, ""):
            found[key] = _value(value)
    return found


def _acquired(dataset: Any) -> str | None:
    """Return the acquisition date and time in ISO 8601, from DICOM's DT or DA and TM."""
    text = str(getattr(dataset, "AcquisitionDateTime", "") or "")
    if not text:
        date = str(getattr(dataset, "ContentDate", "") or "")
        text = date + str(getattr(dataset, "ContentTime", "") or "") if date else ""
    match = re.match(r"(\d{8})(\d{2})?(\d{2})?(\d{2})?", text)
    if not match:
        return None
    digits = "".join(part or "00" for part in match.groups()[1:])
    try:
        return datetime.strptime(match.group(1) + digits, "%Y%m%d%H%M%S").isoformat()
    except ValueError:
        return None


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _header(path: Path) -> Any:
    """Return the attributes of a DICOM file before its pixels, or raise ImportFailed."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - a damaged header fails in many ways
        raise ImportFailed(f"{path.name}: not a readable DICOM file ({_text(exc)})") from None


def series_files(path: Path) -> list[Path]:
    """Return the instances of the series ``path`` names: a folder, or one of its files first."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _is_dicom(p))
        for file in files:
            _header(file)  # NOTE: a damaged instance fails the set rather than vanish from it
        if not files:
            raise UnsupportedFormat(f"{path.name}: a folder without DICOM files")
        return files
    uid = getattr(_header(path), "SeriesInstanceUID", None)
    if uid is None:
        raise ImportFailed(f"{path.name}: a DICOM file without a SeriesInstanceUID")
    files = [path]
    for other in sorted(path.parent.iterdir()):
        if other == path or not other.is_file() or not _is_dicom(other):
            continue
        try:
            header = _header(other)
        except ImportFailed:
            continue  # NOTE: a damaged file beside it may belong to another series
        if getattr(header, "SeriesInstanceUID", None) == uid:
            files.append(other)
    return files


def _channels(samples: int, paths: list[str]) -> list[ChannelMeta]:
    if samples == 3:
        return [ChannelMeta(n, c) for n, c in RGB_CHANNELS]
    return [ChannelMeta(path) for path in paths]


class DicomReader:
    """One pyramid of a DICOM WSI series: level 0 and the series' own levels."""

    def __init__(
        self, wsi: Any, pyramid: int, levels: list[Any], samples: int, meta: ImageMeta
    ) -> None:
        self.wsi, self.pyramid, self.stored, self.samples = wsi, pyramid, levels, samples
        self.meta = meta
        self.planes = list(levels[0].focal_planes)
        self.paths = list(levels[0].optical_paths)
        self.cached: tuple[tuple[int, int, int, int, int], np.ndarray] | None = None

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.read_level_band(0, t, c, z, y0, y1)

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        if not 0 <= level < len(self.stored):
            raise ValueError(f"level {level} is not one of the series' {len(self.stored)} levels")
        path = c // self.samples
        key = (level, z, path, y0, y1)
        # PERF: the three channels of an RGB band come from one read, kept until the next band.
        if self.cached is None or self.cached[0] != key:
            stored = self.stored[level]
            try:
                region = self.wsi.read_region(
                    (0, y0),
                    stored.level,
                    (stored.size.width, y1 - y0),
                    z=self.planes[z],
                    path=self.paths[path],
                    pyramid=self.pyramid,
                    as_array=True,
                )
            except MemoryError:
                raise ImportFailed("a band of the DICOM series is too large to decode") from None
            except Exception as exc:  # noqa: BLE001 - codecs and wsidicom raise their own errors
                raise ImportFailed(
                    f"rows {y0}:{y1} of plane z={z} c={c} at level {level} cannot be read "
                    f"({_text(exc)})"
                ) from None
            array = np.asarray(region)
            self.cached = (key, array if array.ndim == 3 else array[:, :, np.newaxis])
        band = self.cached[1][:, :, c % self.samples]
        return np.ascontiguousarray(band, dtype=self.meta.pixel_type)

    def close(self) -> None:
        self.cached = None


class PictureReader:
    """A label or overview of the slide, small enough to decode whole once."""

    def __init__(self, read: Callable[[], np.ndarray], meta: ImageMeta) -> None:
        self.read, self.meta = read, meta
        self.array: np.ndarray | None = None

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        if self.array is None:
            try:
                array = np.asarray(self.read())
            except Exception as exc:  # noqa: BLE001 - codecs and wsidicom raise their own errors
                raise ImportFailed(f"the {self.meta.kind} cannot be read ({_text(exc)})") from None
            self.array = array if array.ndim == 3 else array[:, :, np.newaxis]
        return np.ascontiguousarray(self.array[y0:y1, :, c], dtype=self.meta.pixel_type)

    def close(self) -> None:
        self.array = None


class DicomSeries:
    """A DICOM WSI series opened once and shared by the images of its fileset."""

    def __init__(self, path: Path) -> None:
        import wsidicom

        self.path = path
        self.files = series_files(path)
        try:
            self.wsi: Any = wsidicom.WsiDicom.open(self.files)
        except Exception as exc:  # noqa: BLE001 - wsidicom raises its own errors and OSError
            raise ImportFailed(
                f"{path.name}: not a readable DICOM whole-slide series ({_text(exc)})"
            ) from None
        try:
            self._check_instances()
            self.openers = self._plan()
        except ImportFailed:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged series fails in many ways
            self.close()
            raise ImportFailed(f"{path.name}: the DICOM series is damaged ({_text(exc)})") from None

    def _check_instances(self) -> None:
        """Raise ImportFailed when wsidicom skipped a WSI instance of the set."""
        opened = {Path(str(file)).resolve() for file in self.wsi.files or []}
        for file in self.files:
            if file.resolve() in opened:
                continue
            if str(getattr(_header(file), "SOPClassUID", "")) == WSI_SOP_CLASS:
                raise ImportFailed(f"{file.name}: a whole-slide instance that cannot be read")

    def _plan(self) -> list[Callable[[], Reader]]:
        stem = self.path.stem
        openers: list[Callable[[], Reader]] = []
        pyramids = list(self.wsi.pyramids)
        for index, pyramid in enumerate(pyramids):
            meta, levels, samples = self._pyramid_meta(index, list(pyramid), stem)
            if len(pyramids) > 1:
                meta.series = f"pyramid {index + 1}"
                meta.name = f"{stem} [{meta.series}]"
            openers.append(self._opener(index, levels, samples, meta))
        for kind, group, read in (
            ("label", self.wsi.labels, self.wsi.read_label),
            ("overview", self.wsi.overviews, self.wsi.read_overview),
        ):
            for number in range(len(group) if group is not None else 0):
                openers.append(self._picture(kind, number, group.get(number), read, stem))
        return openers

    def _pyramid_meta(
        self, index: int, levels: list[Any], stem: str
    ) -> tuple[ImageMeta, list[Any], int]:
        base = levels[0]
        dataset = base.datasets[0].as_dataset()
        samples = int(getattr(dataset, "SamplesPerPixel", 1))
        planes, paths = list(base.focal_planes), list(base.optical_paths)
        if samples not in (1, 3):
            raise UnsupportedFormat(f"{self.path.name}: {samples} samples per pixel")
        kept = [base]
        for level in levels[1:]:
            # NOTE: a level with other planes, or not smaller, is left to be computed.
            if (
                list(level.focal_planes) != planes
                or list(level.optical_paths) != paths
                or level.size.width >= kept[-1].size.width
            ):
                break
            kept.append(level)
        # Decode the last tile of every level now, so a truncated instance fails at open.
        dtype = None
        for number, level in enumerate(kept):
            tiles = level.tiled_size
            try:
                tile = self.wsi.read_tile(
                    level.level, (tiles.width - 1, tiles.height - 1), pyramid=index, as_array=True
                )
            except Exception as exc:  # noqa: BLE001 - codecs and wsidicom raise their own errors
                raise ImportFailed(
                    f"{self.path.name}: level {number} is truncated or damaged ({_text(exc)})"
                ) from None
            dtype = dtype or np.asarray(tile).dtype
        pixel_type = check_pixel_type(np.dtype(dtype))
        mpp = base.mpp
        spacing = _first(
            dataset,
            "SharedFunctionalGroupsSequence",
            "PixelMeasuresSequence",
            "SpacingBetweenSlices",
        )
        power = _first(dataset, "OpticalPathSequence", "ObjectiveLensPower")
        meta = ImageMeta(
            name=stem,
            format="dicom",
            size_t=1,
            # NOTE: an RGB series is read at its first optical path (brightfield has one).
            size_c=3 if samples == 3 else len(paths),
            size_z=len(planes),
            size_y=int(base.size.height),
            size_x=int(base.size.width),
            pixel_type=pixel_type,
            channels=_channels(samples, paths),
            physical_size_x=float(mpp.width) if mpp else None,
            physical_size_y=float(mpp.height) if mpp else None,
            physical_size_z=float(spacing) * 1000 if spacing and len(planes) > 1 else None,
            objective=f"{float(power):g}x" if power else None,
            acquired=_acquired(dataset),
            original_metadata=original_metadata(dataset, base),
            levels=[(int(level.size.height), int(level.size.width)) for level in kept[1:]],
        )
        return meta, kept, samples

    def _opener(
        self, index: int, levels: list[Any], samples: int, meta: ImageMeta
    ) -> Callable[[], Reader]:
        return lambda: DicomReader(self.wsi, index, levels, samples, meta)

    def _picture(
        self, kind: str, number: int, group: Any, read: Callable[..., Any], stem: str
    ) -> Callable[[], Reader]:
        dataset = group.datasets[0].as_dataset()
        samples = int(getattr(dataset, "SamplesPerPixel", 1))
        bits = int(getattr(dataset, "BitsAllocated", 8))
        meta = ImageMeta(
            name=f"{stem} {kind}" + (f" {number + 1}" if number else ""),
            format="dicom",
            size_t=1,
            size_c=3 if samples == 3 else 1,
            size_z=1,
            size_y=int(group.size.height),
            size_x=int(group.size.width),
            pixel_type="uint16" if bits == 16 else "uint8",
            channels=_channels(samples, [kind]),
            series=kind,
            kind=kind,
        )
        return lambda: PictureReader(lambda: read(number, as_array=True), meta)

    def close(self) -> None:
        wsi, self.wsi = getattr(self, "wsi", None), None
        if wsi is not None:
            wsi.close()


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a DICOM whole-slide series given as a folder or as one of its instance files."""
    series = DicomSeries(path)
    return Fileset(format=fmt, files=series.files, images=series.openers, closers=[series.close])
