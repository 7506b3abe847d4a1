"""Permission questions the routes ask about a request, answered by the auth policy.

``visible_image(req, image_id)`` is the one "visible or 404" of every route: it returns the
record or raises NotFound exactly as for a missing image (``Auth.visible_image``).
``visible(req, image)`` filters lists; ``can_annotate``, ``can_edit``, ``can_delete``,
``can_download`` and ``readable_group_ids`` ask ``coverslip.auth.policy`` about the Caller
that ``web.middleware.AuthMiddleware`` resolved.
"""

from __future__ import annotations

from typing import Any

import falcon
from falcon.routing import BaseConverter

from coverslip.auth import Auth, Caller, policy
from coverslip.catalog.records import MAX_ID, Dataset, Image, Project
from coverslip.services import Services

# SECURITY: Cache-Control of answers that depend on who asks; shared caches must not keep them.
PRIVATE = ["private", "no-cache"]
# The group chosen in the header's switcher: the pages list only that group's images.
GROUP_COOKIE = "coverslip_group"


def parse_id(text: str | None) -> int | None:
    """Return the id ``text`` spells in ASCII digits within range, else None.

    # SECURITY: ``int()`` also reads "+7", " 7", "7_0" and fullwidth digits as numbers, and a
    # number past 2**63 overflows the database driver; none of them names an image.
    """
    if not text or len(text) > 19 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


class IdConverter(BaseConverter):
    """The ``{name:id}`` route converter: an id as ``parse_id`` reads it, else no match (404)."""

    def convert(self, value: str) -> int | None:
        return parse_id(value)


def install_ids(app: falcon.App) -> None:
    """Register the ``id`` and ``nat`` converters on ``app`` (idempotent; call before adding routes).

    ``nat`` (plane numbers, channel indices) reads like an id: ASCII digits only, where
    Falcon's ``int`` also reads "+7" and "７".
    """
    app.router_options.converters["id"] = IdConverter
    app.router_options.converters["nat"] = IdConverter


def caller_of(auth: Auth, req: falcon.Request) -> Caller:
    """Return the request's Caller; one set by other middleware by user id is resolved."""
    found = getattr(req.context, "caller", None)
    if isinstance(found, Caller):
        return found
    user_id = getattr(found, "user_id", None)
    if user_id is not None:
        resolved = auth.caller_for_user(int(user_id), "session")
        if resolved is not None:
            req.context.caller = resolved
            return resolved
    return auth.anonymous


class Access:
    """Answer the routes' permission questions for (request, image) with the auth policy."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.auth = services.auth

    def caller(self, req: falcon.Request) -> Caller:
        """Return the request's Caller (``caller_of``)."""
        return caller_of(self.auth, req)

    def visible_image(self, req: falcon.Request, image: int | Image) -> Image:
        """Return the image (a record or an id) if the caller may see it; raise NotFound otherwise."""
        found: Image = self.auth.visible_image(self.caller(req), image)
        return found

    def visible(self, req: falcon.Request, image: Image) -> bool:
        """Return whether the caller may see ``image`` (for filtering lists)."""
        return self.auth.can(self.caller(req), "read", image)

    def is_public(self, image: Image) -> bool:
        return self.auth.is_public(image)

    def current_group(self, req: falcon.Request) -> int | None:
        """Return the group the caller chose in the group switcher, if one of theirs."""
        chosen = parse_id(req.cookies.get(GROUP_COOKIE, ""))
        if chosen is None or not any(group.id == chosen for group in self.caller(req).groups):
            return None
        return chosen

    def listing(self, req: falcon.Request) -> dict[str, Any]:
        """Return the catalog's list filters for what the caller may see, within the group
        they chose in the switcher (``group_ids``, ``or_owner_id``, ``group_id``)."""
        return {
            "group_ids": self.readable_group_ids(req),
            "or_owner_id": self.user_id(req),
            "group_id": self.current_group(req),
        }

    def readable_group_ids(self, req: falcon.Request) -> list[int] | None:
        return self.auth.readable_group_ids(self.caller(req))

    def can_see_dataset(self, req: falcon.Request, dataset: Dataset) -> bool:
        """Return whether the caller may see ``dataset`` (as for an image of its owner)."""
        return self.auth.can(self.caller(req), "read", dataset)

    def can_fill_dataset(self, req: falcon.Request, dataset: Dataset | Project) -> bool:
        """Return whether the caller may put images into ``dataset``, or datasets into a
        project (link, as OMERO)."""
        return self.auth.can(self.caller(req), "edit", dataset)

    def can_see_project(self, req: falcon.Request, project: Project) -> bool:
        """Return whether the caller may see ``project`` (as for a dataset)."""
        return self.auth.can(self.caller(req), "read", project)

    def user_id(self, req: falcon.Request) -> int | None:
        return self.caller(req).user_id

    def can_annotate(self, req: falcon.Request, image: Image) -> bool:
        return self.auth.can(self.caller(req), "annotate", image)

    def can_edit(self, req: falcon.Request, image: Image) -> bool:
        return self.auth.can(self.caller(req), "edit", image)

    def can_delete(self, req: falcon.Request, image: Image) -> bool:
        return self.auth.can(self.caller(req), "delete", image)

    def can_download(self, req: falcon.Request, image: Image) -> bool:
        return self.auth.can_download(self.caller(req), image)

    def permissions(self, req: falcon.Request, image: Image) -> dict[str, bool]:
        who = self.caller(req)
        group = self.auth.group(image.group_id)
        return {
            "canAnnotate": policy.can_annotate(who, image, group),
            "canEdit": policy.can_edit(who, image, group),
            "canDelete": policy.can_delete(who, image, group),
            "canLink": policy.can_edit(who, image, group),
        }
