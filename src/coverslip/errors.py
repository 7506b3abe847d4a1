"""Typed errors raised by the services; `web/errors.py` maps them to HTTP in one place."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

# The errors a write gets when the disk is full or the user's disk quota is used up.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
SQLITE_FULL = 13


class CoverslipError(Exception):
    """Base of every error a service raises on purpose."""


class NotFound(CoverslipError):
    """The thing does not exist, or the caller may not know it does."""


class BadParameter(CoverslipError):
    """A parameter has a value that is not allowed; the message names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class Unauthorized(CoverslipError):
    """The caller must sign in."""


class Forbidden(CoverslipError):
    """The caller is known but may not do this."""


class Conflict(CoverslipError):
    """The thing is in a state that does not allow this (e.g. an image not yet active)."""


class Duplicate(Conflict):
    """The same bytes were imported before."""

    def __init__(
        self, existing_id: int, again: str = "use --allow-duplicate to import again"
    ) -> None:
        super().__init__(f"already imported as image {existing_id} ({again})")
        self.existing_id = existing_id


class TooLarge(CoverslipError):
    """A size cap or quota would be exceeded."""


class Gone(CoverslipError):
    """The thing was deleted while the request ran."""


class ImportFailed(CoverslipError):
    """A file could not be imported; the message says why."""


class UnsupportedFormat(ImportFailed):
    """No reader knows this file."""


class Damaged(CoverslipError):
    """Stored pixels or originals are damaged (HTTP 503); the message names the image."""


class StoreUnavailable(CoverslipError):
    """The object store does not answer (HTTP 503); the message names the store, never a secret."""


class NoSpace(CoverslipError):
    """The disk holding the instance home is full (HTTP 507 Insufficient Storage)."""

    def __init__(self, message: str = "no space left on the instance's disk") -> None:
        super().__init__(message)


def is_no_space(exc: BaseException) -> bool:
    """Return whether ``exc`` says a write failed because the disk (or the quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    if isinstance(exc, ValueError):
        # NOTE: tensorstore reports a failed write as a ValueError naming the OS error code.
        return any(f"[os_error_code='{code}']" in str(exc) for code in NO_SPACE_ERRNOS)
    # NOTE: SQLite says SQLITE_FULL (through SQLAlchemy, on ``orig``) when its file cannot grow.
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL


@contextlib.contextmanager
def full_disk_is_no_space() -> Iterator[None]:
    """Turn a full disk met by the writes inside the block into NoSpace."""
    try:
        yield
    except CoverslipError:
        raise
    except Exception as exc:
        if is_no_space(exc):
            raise NoSpace() from exc
        raise
