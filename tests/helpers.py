"""Independent reference computations the tests compare Coverslip's output against."""

from __future__ import annotations

import numpy as np


def mean2x2(a: np.ndarray) -> np.ndarray:
    """Return the 2×2 mean of a 2-D array the slow, obvious way: each output pixel averages
    the input pixels it covers (1, 2 or 4 of them), integers rounded half up."""
    h, w = a.shape
    values = a.astype(np.float64)
    out = np.empty(((h + 1) // 2, (w + 1) // 2))
    for y in range(out.shape[0]):
        rows = values[2 * y : 2 * y + 2]
        for x in range(out.shape[1]):
            out[y, x] = rows[:, 2 * x : 2 * x + 2].mean()
    if a.dtype.kind == "f":
        return out.astype(a.dtype)
    return np.floor(out + 0.5).astype(a.dtype)


def pyramid_levels(a: np.ndarray, count: int) -> list[np.ndarray]:
    """Return ``count`` levels of the 2×2-mean pyramid of a 2-D array, level 0 first."""
    levels = [a]
    for _ in range(count - 1):
        levels.append(mean2x2(levels[-1]))
    return levels
