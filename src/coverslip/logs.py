"""Application logs: one line per event, logfmt or JSON (web.log_format), with the request id.

Every line of a request carries its id, which the answer also gives back in ``X-Request-ID``
(the client's own id when it sent a plain one, else a new one), so a line in the log, an
answer a user reports and nginx's access log can be matched.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from typing import IO, Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Where the launcher tells each worker to write the access log ("-": standard output).
ACCESS_LOG_ENV = "COVERSLIP_ACCESS_LOG_FILE"
ACCESS = logging.getLogger("coverslip.access")
_PLAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HANDLER_NAME = "coverslip"


def request_id(offered: str | None) -> str:
    """Return ``offered`` if it is a plain id (letters, digits, . _ -, at most 64), else a new one."""
    # SECURITY: a client's id goes into log lines and a header: nothing but plain characters.
    if offered and _PLAIN_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class _Format(logging.Formatter):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.style_name = style

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": REQUEST_ID.get(),
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "fields", {}))
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        fields = {key: value for key, value in fields.items() if value is not None}
        if self.style_name == "json":
            return json.dumps(fields, default=str)
        return " ".join(f"{key}={_logfmt(value)}" for key, value in fields.items())


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\\'):
        return text
    return json.dumps(text)


def configure(style: str, level: str, stream: IO[str] | None = None) -> None:
    """Send the ``coverslip`` loggers' lines at ``level`` and above to ``stream`` (stderr)."""
    logger = logging.getLogger("coverslip")
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_Format(style))
    logger.addHandler(handler)


def configure_access(target: str | None, style: str, stream: IO[str] | None = None) -> None:
    """Write one line per answer to ``target`` (a file, or "-" for ``stream``, else stdout).

    The application writes the access log itself, in the same format under every
    application server (Granian, Gunicorn and uWSGI each log differently), with the client
    address after the trusted proxy's forwarding and the request id.
    """
    for old in list(ACCESS.handlers):
        ACCESS.removeHandler(old)
    ACCESS.propagate = False
    if not target:
        ACCESS.setLevel(logging.WARNING)  # nothing is logged at INFO: off
        return
    handler: logging.Handler = (
        logging.StreamHandler(stream or sys.stdout)
        if target == "-"
        else logging.FileHandler(target)
    )
    handler.setFormatter(_Format(style))
    ACCESS.addHandler(handler)
    ACCESS.setLevel(logging.INFO)
