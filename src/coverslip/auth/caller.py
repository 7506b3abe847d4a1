"""Who is asking: the identity the auth middleware resolves once per request.

Routes read it from ``req.context.caller`` (always set, ``ANONYMOUS`` when nobody signed in)
and pass it to the policy functions in ``coverslip.auth.policy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class User:
    """A user account as the auth layer knows it (never the password hash)."""

    id: int
    username: str
    full_name: str = ""
    email: str = ""
    is_admin: bool = False
    disabled: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "username": self.username,
            "full_name": self.full_name,
            "email": self.email,
            "is_admin": self.is_admin,
            "disabled": self.disabled,
        }


@dataclass(frozen=True, slots=True)
class Group:
    """A group: its permission level and its download override (None follows the setting)."""

    id: int
    name: str
    permissions: str
    downloads: bool | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "permissions": self.permissions,
            "downloads": self.downloads,
        }


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity behind one request.

    ``via`` is "anonymous", "session" (the ``sessionid`` cookie) or "token" (an API token).
    ``member_of`` holds every group the user belongs to, ``owner_of`` the groups they own
    (a subset). ``public`` says whether anonymous visitors may read public groups
    (web.public.enabled); it is part of the caller so that policy stays a pure function.
    """

    user: User | None = None
    member_of: frozenset[int] = frozenset()
    owner_of: frozenset[int] = frozenset()
    via: str = "anonymous"
    public: bool = True
    csrf_token: str | None = None
    session_key: str | None = field(default=None, repr=False)
    groups: tuple[Group, ...] = ()  # the groups of member_of, by name (for group switchers)

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user is not None else None

    @property
    def is_admin(self) -> bool:
        return self.user is not None and self.user.is_admin

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    @property
    def group_id(self) -> int | None:
        """Return the group new images of this caller go into (the first owned, else joined)."""
        for group in self.groups:
            if group.id in self.owner_of:
                return group.id
        return self.groups[0].id if self.groups else None


ANONYMOUS = Caller()
ANONYMOUS_PRIVATE = Caller(public=False)


def anonymous(public: bool) -> Caller:
    """Return the anonymous caller for an instance with or without public access."""
    return ANONYMOUS if public else ANONYMOUS_PRIVATE
