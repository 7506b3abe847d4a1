"""Lookup tables (LUTs): 256 RGB entries each, decoded once at import."""

from __future__ import annotations

import numpy as np

from coverslip.render.lut_data import HEX


def _decode(text: str) -> np.ndarray:
    table = np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(256, 3).copy()
    table.flags.writeable = False
    return table


LUTS: dict[str, np.ndarray] = {name: _decode(text) for name, text in HEX.items()}
LUT_NAMES: list[str] = sorted(LUTS)


def lut_key(name: str) -> str | None:
    """Return the table name ``name`` refers to (any case, with or without ".lut"), or None."""
    key = name.strip().lower()
    if key.endswith(".lut"):
        key = key[:-4]
    return key if key in LUTS else None


def exact_lut(name: str) -> bool:
    """Return whether ``name`` is a table's file name exactly ("fire.lut"), as OMERO looks it up."""
    return name.endswith(".lut") and name[:-4] in LUTS


def get_lut(name: str) -> np.ndarray:
    """Return the (256, 3) uint8 table called ``name``; raise KeyError when there is none."""
    key = lut_key(name)
    if key is None:
        raise KeyError(name)
    return LUTS[key]
