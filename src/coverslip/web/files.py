"""Send a stored file: Range requests, checksums, and hand-off to nginx with X-Accel-Redirect."""

from __future__ import annotations

import base64
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import falcon

from coverslip.config import Settings
from coverslip.errors import NotFound
from coverslip.model import Image

if TYPE_CHECKING:
    from coverslip.pixels.objects import ObjectStore
    from coverslip.services import Services

CHUNK = 1024 * 1024
INTERNAL_PREFIX = "/_coverslip_files"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
PRESIGNED_SECONDS = 300


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


def _download_headers(resp: falcon.Response, name: str, md5: str | None) -> None:
    # SECURITY: an original is only for those allowed to download it; no shared cache keeps it.
    resp.cache_control = ["private"]
    resp.content_type = "application/octet-stream"
    resp.downloadable_as = name
    resp.accept_ranges = "bytes"
    if md5:
        resp.set_header("Content-MD5", base64.b64encode(bytes.fromhex(md5)).decode())


def _span(req: falcon.Request, resp: falcon.Response, size: int) -> tuple[int, int]:
    """Set the status and length for the request's Range; return (first, last) byte to send."""
    span = parse_range(req.get_header("Range"), size)
    first, last = span if span is not None else (0, size - 1)
    if span is not None:
        resp.status = falcon.HTTP_206
        resp.content_range = (first, last, size)
    resp.content_length = last - first + 1
    return first, last


def send_original(
    req: falcon.Request, resp: falcon.Response, services: Services, image: Image, where: Path | str
) -> None:
    """Answer with the original of ``image`` kept ``where`` (``services.original``): a file,
    or an object in the store, streamed or redirected to."""
    name, md5, settings = image.original_name, image.md5, services.settings
    if isinstance(where, Path):
        send_file(req, resp, where, name, md5, settings)
        return
    objects, size = _stored(services, where)
    _download_headers(resp, name, md5)
    if size == 0:
        resp.status = falcon.HTTP_204
        return
    if settings["downloads.from_store"] == "redirect":
        # NOTE: the URL is good for anyone holding it for a few minutes: only the caller
        # gets it, and a private response is never kept by a shared cache.
        resp.status = falcon.HTTP_307
        resp.location = objects.presign(where, name, PRESIGNED_SECONDS)
        return
    first, last = _span(req, resp, size)
    if req.method != "HEAD":
        resp.stream = objects.stream(where, first, last)


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
    _download_headers(resp, name, md5)
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
    first, last = _span(req, resp, size)
    if req.method == "HEAD":
        return
    wrapper = req.env.get("wsgi.file_wrapper")
    if wrapper is not None and req.get_header("Range") is None:
        resp.stream = wrapper(path.open("rb"), CHUNK)
    else:
        resp.stream = _stream(path, first, last - first + 1)


class _Sink:
    """A write-only file that keeps what was written until it is taken (zipfile's output)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def zip_stream(entries: list[tuple[str, Callable[[], Iterator[bytes]]]]) -> Iterator[bytes]:
    """Yield a zip of ``entries`` (name in the archive, the blocks of its bytes) as it is made.

    # PERF: stored, not deflated (originals are compressed images already), one block at a
    # time: memory stays at a block whatever the files' sizes; ZIP64 allows files over 4 GB.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, blocks in entries:
            with archive.open(name, "w", force_zip64=True) as member:
                for block in blocks():
                    member.write(block)
                    if sink.parts:
                        yield sink.take()
            yield sink.take()  # the entry's data descriptor
    yield sink.take()  # the central directory


def _stored(services: Services, url: str) -> tuple[ObjectStore, int]:
    """Return the object store and the size of the original at ``url`` (NotFound if gone)."""
    objects = services.pixels.objects
    assert objects is not None
    size = objects.size(url)
    if size is None:
        raise NotFound("the original file is not in the object store")
    return objects, size


def original_blocks(services: Services, where: Path | str) -> Callable[[], Iterator[bytes]]:
    """Return a function yielding the blocks of an original kept ``where`` (file or store)."""
    if isinstance(where, Path):
        return lambda: _stream(where, 0, where.stat().st_size)
    objects, size = _stored(services, where)
    return lambda: objects.stream(where, 0, size - 1) if size else iter(())
