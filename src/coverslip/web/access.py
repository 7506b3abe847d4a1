"""Permission questions the rendering routes ask about a request, answered by the auth policy."""

from __future__ import annotations

from typing import Any

import falcon

from coverslip.catalog.records import Image
from coverslip.services import Services


def caller_of(req: falcon.Request) -> Any:
    """Return the caller the auth middleware resolved, or None."""
    return getattr(req.context, "caller", None)


class Access:
    """Answer can-read/annotate/download for (request, image)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def visible(self, req: falcon.Request, image: Image) -> bool:
        return True

    def is_public(self, image: Image) -> bool:
        return False

    def readable_group_ids(self, req: falcon.Request) -> list[int] | None:
        """Return the groups whose images the caller may list (None: every group)."""
        return None

    def current_group(self, req: falcon.Request) -> int | None:
        """Return the group the caller chose in the group switcher, if any."""
        raw = req.cookies.get("coverslip_group", "")
        return int(raw) if raw.isdigit() else None

    def user_id(self, req: falcon.Request) -> int | None:
        caller = caller_of(req)
        return getattr(caller, "user_id", None)

    def can_annotate(self, req: falcon.Request, image: Image) -> bool:
        return self.user_id(req) is not None

    def can_download(self, req: falcon.Request, image: Image) -> bool:
        return bool(self.services.settings["downloads.enabled"])

    def permissions(self, req: falcon.Request, image: Image) -> dict[str, bool]:
        annotate = self.can_annotate(req, image)
        return {
            "canAnnotate": annotate,
            "canEdit": annotate,
            "canDelete": annotate,
            "canLink": annotate,
        }
