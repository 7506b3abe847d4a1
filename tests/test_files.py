"""Range handling of original-file downloads."""

from __future__ import annotations

import falcon
import pytest

from coverslip.web.files import parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=95-200", (95, 99)),
        ("bytes=0-9,20-29", None),
        ("items=0-9", None),
        ("bytes=-", None),
    ],
)
def test_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-200", "bytes=9-3", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(falcon.HTTPRangeNotSatisfiable):
        parse_range(header, 100)
