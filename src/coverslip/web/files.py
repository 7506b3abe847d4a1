"""Send a stored file: Range requests, checksums, and hand-off to nginx with X-Accel-Redirect."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import quote

import falcon

from coverslip.config import Settings

CHUNK = 1024 * 1024
INTERNAL_PREFIX = "/_coverslip_files"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return (first, last) byte of a single ``Range`` header, None to send the whole body.

    Raises falcon.HTTPRangeNotSatisfiable for a range that asks for nothing inside the file.
    Several ranges at once get the whole body, as Glance does.
    """
    if not header or "," in header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        length = int(last_text)
        if length == 0:
            raise falcon.HTTPRangeNotSatisfiable(size)
        return max(0, size - length), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise falcon.HTTPRangeNotSatisfiable(size)
    return first, min(last, size - 1)


def _stream(path: Path, first: int, length: int):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        handle.seek(first)
        left = length
        while left > 0:
            block = handle.read(min(CHUNK, left))
            if not block:
                return
            left -= len(block)
            yield block


def send_file(
    req: falcon.Request,
    resp: falcon.Response,
    path: Path,
    name: str,
    md5: str | None,
    settings: Settings,
) -> None:
    """Answer with the file at ``path`` (206 for a satisfiable single Range, 416 otherwise)."""
    size = path.stat().st_size
    # SECURITY: an original is only for those allowed to download it; no shared cache keeps it.
    resp.cache_control = ["private"]
    resp.content_type = "application/octet-stream"
    resp.downloadable_as = name
    resp.accept_ranges = "bytes"
    if md5:
        resp.set_header("Content-MD5", base64.b64encode(bytes.fromhex(md5)).decode())
    if size == 0:
        resp.status = falcon.HTTP_204
        return
    if settings["web.sendfile"] == "nginx":
        # PERF: nginx sends the bytes (and handles Range) so no worker is held by a download.
        home_files = path.resolve().relative_to(path.resolve().parents[2])
        # NOTE: nginx reads the header as a URI: "%", "?" and "#" in a name must be escaped.
        location = quote(f"{INTERNAL_PREFIX}/{home_files.as_posix()}", safe="/")
        resp.set_header("X-Accel-Redirect", location)
        return
    span = parse_range(req.get_header("Range"), size)
    first, last = span if span is not None else (0, size - 1)
    if span is not None:
        resp.status = falcon.HTTP_206
        resp.content_range = (first, last, size)
    resp.content_length = last - first + 1
    if req.method == "HEAD":
        return
    wrapper = req.env.get("wsgi.file_wrapper")
    if wrapper is not None and span is None:
        resp.stream = wrapper(path.open("rb"), CHUNK)
    else:
        resp.stream = _stream(path, first, last - first + 1)
