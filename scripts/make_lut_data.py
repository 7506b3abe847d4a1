"""Generate ``src/coverslip/render/lut_data.py``: every LUT as one hex string of 256 RGB triples.

Run with matplotlib installed (it is needed here only, never at run time)::

    python scripts/make_lut_data.py

The perceptual maps viridis, magma, inferno, plasma and turbo are the published 256-entry
tables as matplotlib ships them. Cividis is the table OMERO ships, the original published
cividis of Nuñez, Anderton and Renslow (PNNL, 2018): its 256 RGB triples in [0, 1], four
decimals, are in ``scripts/lut_cividis.txt``, scaled to 0..255 rounding half up. (Matplotlib's
cividis is a later revision that differs by up to 23 levels.) Fire and Ice are ImageJ's 32 published control
points, expanded to 256 entries by linear interpolation the way ImageJ expands short LUTs.
The rest are simple ramps defined here.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "src" / "coverslip" / "render" / "lut_data.py"

MATPLOTLIB = ("viridis", "magma", "inferno", "plasma", "turbo")
CIVIDIS = Path(__file__).resolve().parent / "lut_cividis.txt"

# ImageJ's control points (32 entries each) for Fire and Ice.
FIRE = (
    [0, 0, 1, 25, 49, 73, 98, 122, 146, 162, 173, 184, 195, 207, 217, 229, 240, 252] + [255] * 14,
    [0] * 13
    + [14, 35, 57, 79, 101, 117, 133, 147, 161, 175, 190, 205, 219, 234, 248, 255, 255, 255, 255],
    [0, 61, 96, 130, 165, 192, 220, 227, 210, 181, 151, 122, 93, 64, 35, 5]
    + [0] * 11
    + [35, 98, 160, 223, 255],
)
ICE = (
    [0, 0, 0, 0, 0, 0, 19, 29, 50, 48, 79, 112, 134, 158, 186, 201]
    + [217, 229, 242, 250, 250, 250, 250, 251, 250, 250, 250, 250, 251, 251, 243, 230],
    [156, 165, 176, 184, 190, 196, 193, 184, 171, 162, 146, 125, 107, 93, 81, 87]
    + [92, 97, 95, 93, 93, 90, 85, 69, 64, 54, 47, 35, 19, 0, 4, 0],
    [140, 147, 158, 166, 170, 176, 209, 220, 234, 225, 236, 246, 250, 251, 250, 250]
    + [245, 230, 230, 222, 202, 180, 163, 142, 123, 114, 106, 94, 84, 64, 26, 27],
)


def expand(points: tuple[list[int], list[int], list[int]]) -> np.ndarray:
    """Stretch a short LUT to 256 entries: linear between neighbours, truncated (as ImageJ)."""
    table = np.array(points, dtype=np.float64).T  # (n, 3)
    n = len(table)
    assert all(len(channel) == n for channel in points)
    position = np.arange(256) * (n / 256.0)
    low = position.astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    fraction = (position - low)[:, None]
    return ((1.0 - fraction) * table[low] + fraction * table[high]).astype(np.uint8)


def ramp(red: bool, green: bool, blue: bool) -> np.ndarray:
    """Return the black-to-colour ramp over the chosen components."""
    values = np.arange(256, dtype=np.uint8)
    zero = np.zeros(256, dtype=np.uint8)
    return np.stack(
        [values if red else zero, values if green else zero, values if blue else zero], 1
    )


def hilo() -> np.ndarray:
    """Return grays with 0 shown blue and 255 shown red, to spot clipped pixels."""
    table = ramp(True, True, True)
    table[0] = (0, 0, 255)
    table[255] = (255, 0, 0)
    return table


def spectrum() -> np.ndarray:
    """Return the full hue circle at full saturation and brightness."""
    rows = [colorsys.hsv_to_rgb(i / 255.0, 1.0, 1.0) for i in range(256)]
    return np.round(np.array(rows) * 255.0).astype(np.uint8)


def red_green() -> np.ndarray:
    """Return the lower half as a red ramp and the upper half as a green ramp."""
    table = np.zeros((256, 3), dtype=np.uint8)
    half = np.arange(128) * 2
    table[:128, 0] = half
    table[128:, 1] = half
    return table


def cividis() -> np.ndarray:
    """Return OMERO's cividis: the published PNNL table scaled to 0..255, rounding half up."""
    table = np.loadtxt(CIVIDIS, dtype=np.float64)
    assert table.shape == (256, 3)
    return np.floor(table * 255.0 + 0.5).astype(np.uint8)


def tables() -> dict[str, np.ndarray]:
    """Return every LUT by name."""
    out: dict[str, np.ndarray] = {
        "grays": ramp(True, True, True),
        "red": ramp(True, False, False),
        "green": ramp(False, True, False),
        "blue": ramp(False, False, True),
        "cyan": ramp(False, True, True),
        "magenta": ramp(True, False, True),
        "yellow": ramp(True, True, False),
        "fire": expand(FIRE),
        "ice": expand(ICE),
        "hilo": hilo(),
        "spectrum": spectrum(),
        "red_green": red_green(),
        "cividis": cividis(),
    }
    from matplotlib import colormaps  # needed only for these tables

    for name in MATPLOTLIB:
        colors = np.asarray(colormaps[name].resampled(256)(np.arange(256)))[:, :3]
        out[name] = np.round(colors * 255.0).astype(np.uint8)
    for name, table in out.items():
        assert table.shape == (256, 3) and table.dtype == np.uint8, name
    return dict(sorted(out.items()))


def render_module(luts: dict[str, np.ndarray]) -> str:
    """Return the text of the generated module."""
    lines = [
        '"""LUT tables: 256 RGB triples per name, as hex. Generated by scripts/make_lut_data.py."""',
        "",
        "# Do not edit by hand: run `python scripts/make_lut_data.py`.",
        "",
        "HEX: dict[str, str] = {",
    ]
    per_line = 32 * 6  # 32 entries of RRGGBB per source line
    for name, table in luts.items():
        text = table.tobytes().hex()
        lines.append(f'    "{name}": (')
        for start in range(0, len(text), per_line):
            lines.append(f'        "{text[start : start + per_line]}"')
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT.write_text(render_module(tables()))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
