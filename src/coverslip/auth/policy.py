"""Who may do what to an image: pure functions of a Caller, the image and its group.

The levels follow OMERO's group permissions:

=============  ==========================================================================
private        members see only their own images; the group's owners and admins see all
read-only      members see each other's images
read-write     members may also save rendering settings on (and edit) each other's images
public         anyone signed in may read; anonymous visitors too when web.public.enabled
=============  ==========================================================================

An image's owner may always read, annotate, edit, delete and download it; administrators may
do everything; a group's owners may do everything in their group. Editing other members'
images needs read-write; deleting them needs group ownership (as OMERO's read-write).

Routes never call these with an image the caller may not read and then answer 403: an
unreadable image is answered with 404, exactly like a missing one (``Auth.visible_image``).

# PERF: each function is a few attribute reads and set lookups; no I/O.
"""

from __future__ import annotations

from typing import Protocol

from coverslip.auth.caller import Caller, Group

PRIVATE = "private"
READ_ONLY = "read-only"
READ_WRITE = "read-write"
PUBLIC = "public"
LEVELS = (PRIVATE, READ_ONLY, READ_WRITE, PUBLIC)


class Owned(Protocol):
    """Anything with an owner and a group (an Image record, a Dataset record)."""

    @property
    def owner_id(self) -> int: ...

    @property
    def group_id(self) -> int: ...


def _manages(caller: Caller, thing: Owned) -> bool:
    """Return whether the caller owns ``thing``, owns its group, or is an administrator."""
    user = caller.user
    if user is None:
        return False
    return user.is_admin or thing.owner_id == user.id or thing.group_id in caller.owner_of


def can_read(caller: Caller, thing: Owned, group: Group | None) -> bool:
    """Return whether the caller may see ``thing`` (in ``group``, None if the group is gone)."""
    if _manages(caller, thing):
        return True
    if group is None:
        return False
    level = group.permissions
    if level == PUBLIC:
        return caller.user is not None or caller.public
    if caller.user is None or group.id not in caller.member_of:
        return False
    return level in (READ_ONLY, READ_WRITE)


def can_annotate(caller: Caller, thing: Owned, group: Group | None) -> bool:
    """Return whether the caller may save rendering settings (annotations) on ``thing``."""
    if _manages(caller, thing):
        return True
    return (
        group is not None
        and caller.user is not None
        and group.permissions in (READ_WRITE, PUBLIC)
        and group.id in caller.member_of
    )


def can_edit(caller: Caller, thing: Owned, group: Group | None) -> bool:
    """Return whether the caller may change ``thing`` (name, properties, pixels)."""
    if _manages(caller, thing):
        return True
    return (
        group is not None
        and caller.user is not None
        and group.permissions == READ_WRITE
        and group.id in caller.member_of
    )


def can_delete(caller: Caller, thing: Owned, group: Group | None) -> bool:
    """Return whether the caller may delete ``thing`` or move it to another group."""
    return _manages(caller, thing)


def can_download(
    caller: Caller, thing: Owned, group: Group | None, enabled_by_default: bool
) -> bool:
    """Return whether the caller may download the original file of ``thing``.

    The group's override wins over ``enabled_by_default`` (downloads.enabled); the image's
    owner, the group's owners and administrators may always download.
    """
    if _manages(caller, thing):
        return True
    if not can_read(caller, thing, group):
        return False
    assert group is not None  # can_read is False without a group unless the caller manages
    return enabled_by_default if group.downloads is None else group.downloads


def can_create_in(caller: Caller, group: Group) -> bool:
    """Return whether the caller may put new images into ``group``."""
    return caller.user is not None and (caller.is_admin or group.id in caller.member_of)


def can_manage_group(caller: Caller, group: Group) -> bool:
    """Return whether the caller may change ``group``'s members and settings."""
    return caller.user is not None and (caller.is_admin or group.id in caller.owner_of)


def readable_group_ids(caller: Caller, groups: dict[int, Group]) -> list[int] | None:
    """Return the groups all of whose images the caller may read (None: every group).

    The caller's own images are readable wherever they are: listing queries combine this
    with ``owner_id == caller.user_id`` (the catalog's ``or_owner_id``).
    """
    if caller.is_admin:
        return None
    found = []
    for group in groups.values():
        level = group.permissions
        if (
            (level == PUBLIC and (caller.user is not None or caller.public))
            or group.id in caller.owner_of
            or (level in (READ_ONLY, READ_WRITE) and group.id in caller.member_of)
        ):
            found.append(group.id)
    return sorted(found)


def is_public(group: Group | None, public_enabled: bool) -> bool:
    """Return whether anonymous visitors may read the images of ``group`` (for HTTP caching)."""
    return public_enabled and group is not None and group.permissions == PUBLIC
