"""Make chunked request bodies readable to EOF under every application server we launch.

PEP 3333 says not to read past CONTENT_LENGTH, and a chunked upload has none. Gunicorn
and mod_wsgi set ``wsgi.input_terminated`` to say that ``wsgi.input`` ends with the body;
Granian streams the body the same way (older releases do not say so); uWSGI hands a
chunked body out only through ``uwsgi.chunked_read()``. The wrapper below gives the
application one portable contract: a chunked body is read from ``wsgi.input`` to EOF.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def _is_chunked(environ: dict[str, Any]) -> bool:
    if environ.get("CONTENT_LENGTH"):
        return False
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


class ChunkedInput:
    """A file-like ``wsgi.input`` over a function returning the next chunk (b"" at the end)."""

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._buffer = b""
        self._done = False

    def _fill(self, size: int) -> None:
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = self._next_chunk()
            if not chunk:
                self._done = True
            else:
                self._buffer += chunk

    def read(self, size: int | None = -1) -> bytes:
        """Return up to ``size`` bytes (all that is left when ``size`` is None or negative)."""
        size = -1 if size is None else size
        self._fill(size)
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """Return the next line, newline included."""
        size = -1 if size is None else size
        while b"\n" not in self._buffer and not self._done:
            if 0 <= size <= len(self._buffer):
                break
            self._fill(len(self._buffer) + 1)
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size >= 0:
            end = min(end, size)
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _uwsgi_chunked_read() -> Callable[[], bytes] | None:
    try:
        import uwsgi
    except ImportError:
        return None
    return uwsgi.chunked_read


def mark_input_terminated(app: WSGIApp) -> WSGIApp:
    """Return ``app`` seeing every chunked body as a ``wsgi.input`` that ends at EOF."""
    uwsgi_read = _uwsgi_chunked_read()

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if _is_chunked(environ):
            if uwsgi_read is not None:
                # NOTE: uWSGI's own wsgi.input reads nothing of a chunked body.
                environ["wsgi.input"] = ChunkedInput(uwsgi_read)
            environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return wrapped
