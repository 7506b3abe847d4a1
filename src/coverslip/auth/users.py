"""Users, groups and memberships in the catalog: queries and changes, no HTTP.

Reads that every request needs (a user with their memberships, the groups) go through an
in-process ``FreshCache`` that drops everything when the change signal moves (a ``stat`` of
the stamp files), and keeps an entry ``ttl`` seconds at most, so a change made by the CLI or
another process is seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from coverslip.auth import tables as at
from coverslip.auth.caller import Group, User
from coverslip.auth.fresh import FreshCache, Signal
from coverslip.auth.passwords import Passwords, check_strength
from coverslip.auth.policy import LEVELS
from coverslip.catalog import tables as t
from coverslip.catalog.base import UNAVAILABLE
from coverslip.errors import BadParameter, Conflict, NotFound

USERNAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,150}$")


def _user(row: Any) -> User:
    return User(
        id=int(row["id"]),
        username=row["username"],
        full_name=row["full_name"] or "",
        email=row["email"] or "",
        is_admin=bool(row["is_admin"]),
        disabled=bool(row["disabled"]),
    )


class Account:
    """A user with their memberships, as the cache holds it."""

    __slots__ = ("user", "member_of", "owner_of", "groups")

    def __init__(
        self,
        user: User,
        member_of: frozenset[int],
        owner_of: frozenset[int],
        groups: tuple[Group, ...],
    ) -> None:
        self.user = user
        self.member_of = member_of
        self.owner_of = owner_of
        self.groups = groups


class Directory:
    """Users, groups and memberships of one catalog."""

    def __init__(
        self,
        engine: Engine,
        passwords: Passwords | None = None,
        signal: Signal | None = None,
        on_change: Callable[[], None] | None = None,
        ttl: float = 5.0,
    ) -> None:
        self.engine = engine
        self.passwords = passwords or Passwords()
        self.on_change = on_change
        # Accounts by user id, and the groups under the key None; a missing user is kept too.
        self._cache: FreshCache[int | None, Any] = FreshCache(ttl, signal, keep_none=True)
        self._last_groups: dict[int, Group] | None = None  # kept when the cache is dropped

    # -- cache --------------------------------------------------------------------------

    def changed(self) -> None:
        """Tell this process and the others that users or groups changed."""
        self._cache.clear()
        if self.on_change is not None:
            self.on_change()

    def groups(self) -> dict[int, Group]:
        """Return every group by id (cached; the last loaded ones while the catalog is down)."""
        found: dict[int, Group] = self._cache.get(None, self._groups_or_last)
        return found

    def _groups_or_last(self) -> dict[int, Group]:
        try:
            found = self._load_groups()
        except UNAVAILABLE:
            if self._last_groups is None:
                raise
            # NOTE: every permission check needs the groups; while the catalog is down,
            # what was cached (public thumbnails) is still served with the groups known last.
            return self._last_groups
        self._last_groups = found
        return found

    def group(self, group_id: int) -> Group | None:
        return self.groups().get(group_id)

    def account(self, user_id: int) -> Account | None:
        """Return the user with memberships (cached), or None when there is no such user."""
        found: Account | None = self._cache.get(user_id, lambda: self._load_account(user_id))
        return found

    def _load_groups(self) -> dict[int, Group]:
        query = (
            sa.select(
                t.groups.c.id, t.groups.c.name, t.groups.c.permissions, at.group_options.c.downloads
            )
            .outerjoin(at.group_options, at.group_options.c.group_id == t.groups.c.id)
            .order_by(t.groups.c.id)
        )
        with self.engine.connect() as conn:
            return {
                int(row.id): Group(int(row.id), row.name, row.permissions, row.downloads)
                for row in conn.execute(query)
            }

    def _load_account(self, user_id: int) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.id == user_id)).mappings().first()
            if row is None:
                return None
            links = conn.execute(
                sa.select(t.group_members.c.group_id, t.group_members.c.is_owner).where(
                    t.group_members.c.user_id == user_id
                )
            ).all()
        groups = self.groups()
        member = frozenset(int(g) for g, _ in links)
        owner = frozenset(int(g) for g, is_owner in links if is_owner)
        return Account(
            _user(row), member, owner, tuple(groups[g] for g in sorted(member) if g in groups)
        )

    # -- users --------------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password: str | None,
        full_name: str = "",
        email: str = "",
        is_admin: bool = False,
    ) -> int:
        """Create a user and return its id; without a password the user cannot sign in."""
        if not USERNAME.match(username):
            raise BadParameter("username", f"{username!r}: use 1-150 letters, digits and . @ + - _")
        if password is not None and (reason := check_strength(password)):
            raise BadParameter("password", reason)
        hashed = self.passwords.hash(password) if password else ""
        with self.engine.begin() as conn:
            if self._user_id(conn, username) is not None:
                raise Conflict(f"user {username!r} exists already")
            result = conn.execute(
                t.users.insert().values(
                    username=username,
                    full_name=full_name,
                    email=email,
                    password_hash=hashed,
                    is_admin=is_admin,
                    created=datetime.now(UTC),
                )
            )
            assert result.inserted_primary_key is not None
            user_id = int(result.inserted_primary_key[0])
        self.changed()
        return user_id

    @staticmethod
    def _user_id(conn: Connection, username: str) -> int | None:
        found = conn.scalar(sa.select(t.users.c.id).where(t.users.c.username == username))
        return None if found is None else int(found)

    def user(self, name_or_id: str | int) -> User:
        """Return a user by username or id, or raise NotFound."""
        column = t.users.c.id if isinstance(name_or_id, int) else t.users.c.username
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.users).where(column == name_or_id)).mappings().first()
        if row is None:
            raise NotFound(f"user {name_or_id!r} does not exist")
        return _user(row)

    def users(self) -> list[tuple[User, list[str]]]:
        """Return every user with the names of their groups (owned ones marked with *)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.users).order_by(t.users.c.id)).mappings().all()
            links = conn.execute(
                sa.select(t.group_members.c.user_id, t.groups.c.name, t.group_members.c.is_owner)
                .join(t.groups, t.groups.c.id == t.group_members.c.group_id)
                .order_by(t.groups.c.name)
            ).all()
        names: dict[int, list[str]] = {}
        for user_id, name, owner in links:
            names.setdefault(int(user_id), []).append(name + ("*" if owner else ""))
        return [(_user(row), names.get(int(row["id"]), [])) for row in rows]

    def authenticate(self, username: str, password: str) -> User | None:
        """Return the user whose password this is (disabled users never), else None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(t.users).where(t.users.c.username == username))
                .mappings()
                .first()
            )
        if row is None:
            self.passwords.decoy(password)
            return None
        stored = row["password_hash"] or ""
        if not self.passwords.verify(stored, password) or row["disabled"]:
            return None
        if self.passwords.needs_rehash(stored):
            self._store_hash(int(row["id"]), self.passwords.hash(password))
        return _user(row)

    def set_password(self, user_id: int, password: str) -> None:
        """Change a user's password (the caller revokes their sessions)."""
        if reason := check_strength(password):
            raise BadParameter("password", reason)
        self._store_hash(user_id, self.passwords.hash(password))

    def has_password(self, user_id: int) -> bool:
        with self.engine.connect() as conn:
            return bool(
                conn.scalar(sa.select(t.users.c.password_hash).where(t.users.c.id == user_id))
            )

    def _store_hash(self, user_id: int, hashed: str) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(password_hash=hashed)
            )
            if result.rowcount == 0:
                raise NotFound(f"user {user_id} does not exist")

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        """Disable or enable a user (the caller revokes their sessions)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(disabled=disabled)
            )
            if result.rowcount == 0:
                raise NotFound(f"user {user_id} does not exist")
        self.changed()

    def set_admin(self, user_id: int, is_admin: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.users.update().where(t.users.c.id == user_id).values(is_admin=is_admin))
        self.changed()

    # -- groups -------------------------------------------------------------------------

    @staticmethod
    def check_level(permissions: str) -> str:
        if permissions not in LEVELS:
            raise BadParameter("permissions", f"{permissions!r} is not one of {', '.join(LEVELS)}")
        return permissions

    def add_group(self, name: str, permissions: str = "private") -> int:
        """Create a group and return its id."""
        self.check_level(permissions)
        if not name.strip() or len(name) > 150:
            raise BadParameter("name", "a group needs a name of 1-150 characters")
        with self.engine.begin() as conn:
            if conn.scalar(sa.select(t.groups.c.id).where(t.groups.c.name == name)) is not None:
                raise Conflict(f"group {name!r} exists already")
            result = conn.execute(
                t.groups.insert().values(
                    name=name, permissions=permissions, created=datetime.now(UTC)
                )
            )
            assert result.inserted_primary_key is not None
            group_id = int(result.inserted_primary_key[0])
        self.changed()
        return group_id

    def find_group(self, name_or_id: str | int) -> Group:
        """Return a group by name or id (a string of digits is tried as a name first)."""
        groups = self._load_groups()
        for group in groups.values():
            if group.name == name_or_id:
                return group
        key = int(name_or_id) if str(name_or_id).isdigit() else None
        if key is not None and key in groups:
            return groups[key]
        raise NotFound(f"group {name_or_id!r} does not exist")

    def group_members(self, group_id: int) -> list[tuple[User, bool]]:
        """Return (user, is group owner) of each member of a group."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.users, t.group_members.c.is_owner)
                .join(t.group_members, t.group_members.c.user_id == t.users.c.id)
                .where(t.group_members.c.group_id == group_id)
                .order_by(t.users.c.username)
            ).mappings()
            return [(_user(row), bool(row["is_owner"])) for row in rows]

    def add_member(self, group_id: int, user_id: int, owner: bool = False) -> None:
        """Put a user in a group (again: only the owner flag changes)."""
        with self.engine.begin() as conn:
            where = (t.group_members.c.group_id == group_id) & (
                t.group_members.c.user_id == user_id
            )
            updated = conn.execute(t.group_members.update().where(where).values(is_owner=owner))
            if updated.rowcount == 0:
                conn.execute(
                    t.group_members.insert().values(
                        group_id=group_id, user_id=user_id, is_owner=owner
                    )
                )
        self.changed()

    def remove_member(self, group_id: int, user_id: int) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(
                t.group_members.delete().where(
                    t.group_members.c.group_id == group_id, t.group_members.c.user_id == user_id
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"user {user_id} is not a member of group {group_id}")
        self.changed()

    def set_permissions(self, group_id: int, permissions: str) -> None:
        self.check_level(permissions)
        with self.engine.begin() as conn:
            result = conn.execute(
                t.groups.update().where(t.groups.c.id == group_id).values(permissions=permissions)
            )
            if result.rowcount == 0:
                raise NotFound(f"group {group_id} does not exist")
        self.changed()

    def set_downloads(self, group_id: int, downloads: bool | None) -> None:
        """Override downloads.enabled for one group (None: follow the setting)."""
        with self.engine.begin() as conn:
            where = at.group_options.c.group_id == group_id
            if (
                conn.execute(
                    at.group_options.update().where(where).values(downloads=downloads)
                ).rowcount
                == 0
            ):
                conn.execute(
                    at.group_options.insert().values(group_id=group_id, downloads=downloads)
                )
        self.changed()
