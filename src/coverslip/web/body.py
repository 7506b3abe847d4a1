"""Read a request body portably, whether it came with a Content-Length or chunked.

PEP 3333 forbids reading past CONTENT_LENGTH, and a chunked request has none. So, in order:
CONTENT_LENGTH when the client sent one; else read to EOF when the server says it terminates
the input (``wsgi.input_terminated``: Gunicorn, mod_wsgi, and the launcher we wrap Granian
in); else ``uwsgi.chunked_read()`` under uWSGI; else 411 Length Required. A chunked body
the server reports as cut short (no last, zero-length chunk) is a 400 naming the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import falcon

from coverslip.errors import BadParameter, TooLarge

BLOCK = 1024 * 1024
JSON_LIMIT = 1024 * 1024


def is_chunked(env: Mapping[str, Any]) -> bool:
    """Return whether the request declares a chunked body."""
    return "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower()


def declared_length(env: Mapping[str, Any]) -> int | None:
    """Return the Content-Length of the request, or None when it has none."""
    raw = env.get("CONTENT_LENGTH", "")
    if raw in ("", None):
        return None
    try:
        length = int(raw)
    except ValueError:
        raise falcon.HTTPBadRequest(title="Bad Request", description="bad Content-Length") from None
    if length < 0:
        raise falcon.HTTPBadRequest(title="Bad Request", description="bad Content-Length")
    return length


def body_chunks(env: Mapping[str, Any], block: int = BLOCK) -> Iterator[bytes]:
    """Return an iterator over the request body in blocks of at most ``block`` bytes.

    Raises HTTP 411 at once (before any byte is read) when the body is chunked and the
    server gives no way to find its end.
    """
    length = declared_length(env)
    stream = env["wsgi.input"]
    if length is not None:
        return _counted(stream, length, block)
    if not is_chunked(env):
        # NOTE: neither Content-Length nor Transfer-Encoding: the request has no body.
        return iter(())
    if env.get("wsgi.input_terminated"):
        return _to_eof(stream, block)
    if "uwsgi.version" in env:
        return _uwsgi_chunks()
    raise falcon.HTTPLengthRequired(
        title="Length Required",
        description="this server cannot read chunked bodies; send a Content-Length",
    )


def _counted(stream: Any, length: int, block: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        data = stream.read(min(block, left))
        if not data:
            raise ConnectionError(f"the client sent {length - left} of {length} bytes")
        left -= len(data)
        yield data


def _to_eof(stream: Any, block: int) -> Iterator[bytes]:
    while data := _chunked_read(stream.read, block):
        yield data


def _uwsgi_chunks() -> Iterator[bytes]:
    import uwsgi  # only importable inside uWSGI

    while data := _chunked_read(uwsgi.chunked_read, 60):
        yield data


def _chunked_read(read: Any, argument: int) -> bytes:
    """Return the next bytes of a chunked body; a body the server finds cut short is a 400.

    # NOTE: Gunicorn raises NoMoreData (an OSError) and uWSGI an OSError when the client stops
    # before the last, zero-length chunk. Granian's WSGI input ends as if the body were
    # complete: there, only a declared size (x-openstack-image-size) tells a cut body.
    """
    try:
        data: bytes = read(argument)
    except Exception as exc:  # noqa: BLE001 - servers signal a cut body in many ways
        raise BadParameter(
            "body",
            f"the chunked body was cut short before its last, zero-length chunk ({type(exc).__name__})",
        ) from None
    return data


def read_json(req: falcon.Request) -> Any:
    """Return the JSON body of ``req`` (at most 1 MiB, Content-Length or chunked)."""
    data = bytearray()
    for block in body_chunks(req.env):
        data += block
        if len(data) > JSON_LIMIT:
            raise TooLarge("a JSON body may have at most 1 MiB")
    try:
        return json.loads(data or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadParameter("body", f"not valid JSON ({exc})") from None


def require_media_type(req: falcon.Request, *allowed: str) -> None:
    """Raise 415 unless the request's Content-Type is one of ``allowed``."""
    given = (req.content_type or "").split(";")[0].strip().lower()
    if given not in allowed:
        raise falcon.HTTPUnsupportedMediaType(
            description=f"send Content-Type {' or '.join(allowed)}, not {given or 'nothing'}"
        )
