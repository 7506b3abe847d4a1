"""What every reader does to a file's descriptions: units, capped key-values, error text.

Kept apart from the readers so that each one converts lengths and times, caps the vendor's
metadata and words its errors the same way, without importing another reader's library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_KEYS = 2000  # vendor keys kept per image
MAX_VALUE = 1000  # characters kept per key and per value
RGB_CHANNELS = (("Red", "FF0000"), ("Green", "00FF00"), ("Blue", "0000FF"))

# OME's UnitsLength symbols (and ImageJ's and vendors' spellings) in micrometres.
LENGTH_UNITS = {
    "pm": 1e-6,
    "Å": 1e-4,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometers": 1e-3,
    "µm": 1.0,  # MICRO SIGN
    "μm": 1.0,  # GREEK SMALL LETTER MU
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometers": 1.0,
    "mm": 1e3,
    "millimeters": 1e3,
    "cm": 1e4,
    "centimeters": 1e4,
    "m": 1e6,
    "meters": 1e6,
}
TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3}
TIME_UNITS |= {"µs": 1e-6, "us": 1e-6, "min": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0}


def finite(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None when it is not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def positive(value: Any) -> float | None:
    """Return ``value`` as a positive finite float, or None."""
    number = finite(value)
    return number if number is not None and number > 0 else None


def micrometres(value: Any, unit: str | None) -> float | None:
    """Return a positive length in µm from a value and a unit symbol (µm when absent)."""
    number = positive(value)
    symbol = (unit or "µm").strip().replace("\\u00B5", "µ")
    factor = LENGTH_UNITS.get(symbol) or LENGTH_UNITS.get(symbol.lower())
    return None if number is None or factor is None else number * factor


def nanometres(value: Any, unit: str | None = None) -> float | None:
    """Return a positive wavelength in nm (nm when ``unit`` is absent)."""
    found = micrometres(value, unit or "nm")
    return None if found is None else found * 1e3


def seconds(value: Any, unit: str | None = None) -> float | None:
    """Return a positive duration in seconds (seconds when ``unit`` is absent)."""
    number = positive(value)
    factor = TIME_UNITS.get((unit or "s").strip().lower())
    return None if number is None or factor is None else number * factor


def capped(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return key-value pairs as a dict of at most MAX_KEYS keys, values cut to MAX_VALUE.

    ``items`` is consumed lazily, so a walk over a large document stops once the dict is
    full; a repeated key keeps its last value.
    """
    out: dict[str, str] = {}
    for key, value in items:
        if len(out) >= MAX_KEYS:
            break
        out[key] = value[:MAX_VALUE]
    return out


def reason(exc: BaseException, path: Path) -> str:
    """Return ``exc`` as one line without the folder of ``path`` (messages name files only)."""
    text = " ".join(str(exc).split())
    for full in {str(path), str(path.resolve())}:
        text = text.replace(full, path.name)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
