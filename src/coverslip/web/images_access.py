"""Who may do what to an image through the images API, and what its visibility means.

Permissions are the auth policy's (``coverslip.auth.policy``): reading follows the image's
group, changing an image or its bytes needs ``can_edit``, deleting it or moving it to
another group needs ``can_delete``, downloading needs ``can_download``.

Glance's visibility maps onto the permission level of the image's group:

- ``public``: a group whose permissions are "public".
- ``private``: a "private" group: only the image's owner (and the group's owners and the
  administrators) see it.
- ``shared``: any other group ("read-only", "read-write"): every member of the group sees it.

Setting ``public`` moves the image into the first public group the caller belongs to;
setting ``private`` or ``shared`` moves it back to the group it was created in, which must
have that meaning. Either move needs ``can_delete`` and membership of the target group.
"""

from __future__ import annotations

import falcon

from coverslip.auth import Caller, policy
from coverslip.auth.caller import Group
from coverslip.errors import BadParameter, Forbidden, NotFound, Unauthorized
from coverslip.model import Image
from coverslip.services import Services
from coverslip.web.access import Access


def meaning(group: Group | None) -> str:
    """Return the Glance visibility of the images of ``group``."""
    level = group.permissions if group is not None else policy.PRIVATE
    if level == policy.PUBLIC:
        return "public"
    return "private" if level == policy.PRIVATE else "shared"


class ImageAccess:
    """Answer the images API's permission questions for (request, image)."""

    def __init__(self, services: Services, access: Access) -> None:
        self.services = services
        self.access = access
        self.auth = services.auth

    # -- the caller ---------------------------------------------------------------------

    def caller(self, req: falcon.Request) -> Caller:
        return self.access.caller(req)

    def user_id(self, req: falcon.Request) -> int:
        """Return the signed-in user's id, or raise Unauthorized."""
        user_id = self.caller(req).user_id
        if user_id is None:
            raise Unauthorized("sign in, or send an API token in X-Auth-Token")
        return int(user_id)

    def new_image_group(self, req: falcon.Request) -> int:
        """Return the group a new image of the caller goes into (the caller's first own group)."""
        self.user_id(req)
        who = self.caller(req)
        group_id = who.group_id
        if group_id is None and who.is_admin:
            _admin, group_id = self.services.catalog.ensure_local_admin()
        if group_id is None:
            raise Forbidden("you belong to no group, so you cannot create images")
        return int(group_id)

    # -- decisions ----------------------------------------------------------------------

    def visible(self, req: falcon.Request, image: Image) -> bool:
        return self.access.visible(req, image)

    def check_read(self, req: falcon.Request, image: Image) -> None:
        """Raise NotFound unless the caller may see ``image`` (never leak existence)."""
        self.access.visible_image(req, image)

    def check_edit(self, req: falcon.Request, image: Image) -> None:
        """Raise unless the caller may change ``image`` or its bytes."""
        self.check_read(req, image)
        self.user_id(req)
        if not self.access.can_edit(req, image):
            raise Forbidden(f"you may not change image {image.id}")

    def check_delete(self, req: falcon.Request, image: Image) -> None:
        self.check_read(req, image)
        self.user_id(req)
        if not self.access.can_delete(req, image):
            raise Forbidden(f"you may not delete image {image.id}")

    def check_download(self, req: falcon.Request, image: Image) -> None:
        self.check_read(req, image)
        if not self.access.can_download(req, image):
            raise Forbidden("downloading the original of this image is not allowed")

    def check_dataset(self, req: falcon.Request, dataset_id: int) -> None:
        """Raise unless the caller may put images into dataset ``dataset_id``.

        # SECURITY: a dataset the caller may not see is refused exactly like a missing one.
        """
        try:
            dataset = self.services.catalog.get_dataset(dataset_id)
        except NotFound:
            dataset = None
        if dataset is None or not self.access.can_see_dataset(req, dataset):
            raise BadParameter("dataset", f"dataset {dataset_id} does not exist")
        if not self.access.can_fill_dataset(req, dataset):
            raise Forbidden(f"you may not add images to dataset {dataset_id}")

    def list_scope(self, req: falcon.Request) -> tuple[list[int] | None, int | None]:
        """Return (groups whose images the caller may all list, None for any; the caller's id)."""
        return self.access.readable_group_ids(req), self.caller(req).user_id

    # -- visibility ---------------------------------------------------------------------

    def visibility(self, image: Image) -> str:
        """Return the Glance visibility of ``image``."""
        return meaning(self.auth.group(image.group_id))

    def visibility_groups(self, visibility: str) -> list[int]:
        """Return the ids of the groups whose images have ``visibility``."""
        groups = self.auth.directory.groups()
        return sorted(gid for gid, group in groups.items() if meaning(group) == visibility)

    def group_for(
        self, req: falcon.Request, image: Image, home_group: int | None, visibility: str
    ) -> int:
        """Return the group ``image`` must be in for ``visibility``, or raise Forbidden."""
        if self.visibility(image) == visibility:
            return image.group_id
        self.check_delete(req, image)
        who = self.caller(req)
        if visibility == "public":
            groups = self.auth.directory.groups()
            public = sorted(
                gid
                for gid, group in groups.items()
                if group.permissions == policy.PUBLIC and policy.can_create_in(who, group)
            )
            if not public:
                raise Forbidden("you are in no public group to publish into")
            return public[0]
        home = home_group if home_group is not None else image.group_id
        group = self.auth.group(home)
        if meaning(group) != visibility:
            raise Forbidden(f"visibility {visibility}: the image's own group is {meaning(group)}")
        if group is None or not policy.can_create_in(who, group):
            raise Forbidden("you are not a member of the image's own group")
        return home
