"""Z projections of a (Z, Y, X) stack: maximum, mean and sum intensity.

Semantics of OMERO's ProjectionBean (projectStack), which renders the projected plane in the
image's own pixel type: the maximum keeps the type; the sum is clipped to the type's range;
the mean is the sum divided by the number of planes, cast back to the type (integer types
truncate, as Java's (int) cast).

NOTE: four OMERO quirks are not copied: its mean and sum skip the last plane of the range
(``z < end`` where the maximum uses ``z <= end``, so the mean of one plane is black), its
maximum starts from 0 so negative data projects to 0, a sum below the minimum of a signed
type wraps, and uint32 pixels are held in a Java int, so their maximum and sum stop at
2**31 − 1. Here every plane of the range counts, the maximum is the true maximum, and sums
are clipped at both ends of the type's own range.
"""

from __future__ import annotations

import numpy as np

from coverslip.errors import BadParameter

METHODS = ("intmax", "intmean", "intsum")


def project(stack: np.ndarray, method: str, pixel_type: str | None = None) -> np.ndarray:
    """Return the 2-D projection of ``stack`` over axis 0, in ``pixel_type`` (default: its dtype)."""
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"expected a non-empty (Z, Y, X) stack, got shape {stack.shape}")
    dtype = np.dtype(pixel_type) if pixel_type else stack.dtype
    if method == "normal":
        return stack[0].astype(dtype, copy=False)
    if method not in METHODS:
        raise BadParameter("p", f"{method!r} is not one of normal, {', '.join(METHODS)}")
    if method == "intmax":
        return stack.max(axis=0).astype(dtype, copy=False)
    count = stack.shape[0]
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        total = stack.sum(axis=0, dtype=np.int64 if dtype.kind == "i" or info.bits < 64 else None)
        if method == "intmean":
            # Integer division that truncates toward zero, as Java's (int) cast.
            total = np.sign(total) * (np.abs(total) // count)
        return np.clip(total, info.min, info.max).astype(dtype)
    total = stack.sum(axis=0, dtype=np.float64)
    if method == "intmean":
        total /= count
    if dtype.kind == "f":
        limit = float(np.finfo(dtype).max)
        np.clip(total, -limit, limit, out=total)
    return total.astype(dtype)
