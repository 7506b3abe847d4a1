"""The HTTP surfaces: a Falcon WSGI app assembled by `create_app`."""

from coverslip.web.app import create_app

__all__ = ["create_app"]
