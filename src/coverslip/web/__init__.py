"""The HTTP surfaces: a Falcon WSGI app assembled by `create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coverslip.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # PERF: `coverslip.web.files` and its kin import without the whole application.
    if name == "create_app":
        from coverslip.web.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
