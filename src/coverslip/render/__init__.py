"""Rendering: settings and their OMERO URL grammar, the kernel, Z projection and encoding.

Nothing here imports Falcon or touches the database: callers hand in planes and settings.
"""

from coverslip.render.encode import content_type, encode
from coverslip.render.kernel import render
from coverslip.render.luts import LUT_NAMES, get_lut
from coverslip.render.projection import project
from coverslip.render.settings import (
    ChannelSettings,
    RenderingDef,
    apply_query,
    default_def,
    parse_format,
    parse_quality,
)

__all__ = [
    "LUT_NAMES",
    "ChannelSettings",
    "RenderingDef",
    "apply_query",
    "content_type",
    "default_def",
    "encode",
    "get_lut",
    "parse_format",
    "parse_quality",
    "project",
    "render",
]
