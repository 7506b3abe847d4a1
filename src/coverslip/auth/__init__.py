"""Users, groups, sessions, API tokens and the permission policy.

How routes use it (the web layer sets everything up; nothing here imports Falcon):

- ``req.context.caller`` is a ``Caller`` (``coverslip.auth.caller``), resolved once per
  request by ``coverslip.web.middleware.AuthMiddleware`` from the ``sessionid`` cookie,
  ``X-Auth-Token`` or ``Authorization: Bearer``; ``ANONYMOUS`` when nobody signed in.
- ``services.auth.visible_image(caller, image_id)`` returns the image record or raises
  NotFound, exactly as for a missing image; ``services.auth.group(image.group_id)`` gives
  the group to pass to ``policy.can_annotate / can_edit / can_delete``;
  ``services.auth.can(caller, "edit", image)`` does both in one call, and
  ``services.auth.can_download(caller, image)`` applies downloads.enabled and the group's
  override.
- Listing queries: ``services.auth.readable_group_ids(caller)`` (None means every group) and
  the caller's own images (``owner_id == caller.user_id``), e.g. ``catalog.search_images(...,
  group_ids=ids, or_owner_id=caller.user_id)``; or filter records with ``can_read``.
- ``web.access.Access`` answers the same questions per request for the rendering,
  gateway, images API and UI routes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coverslip.auth import policy
from coverslip.auth.caller import ANONYMOUS, Caller, Group, User, anonymous
from coverslip.auth.fresh import Stamp, make_stamp, signals
from coverslip.auth.passwords import Passwords, generate
from coverslip.auth.sessions import (
    Clock,
    RedisSessionStore,
    Session,
    SessionStore,
    SqlSessionStore,
)
from coverslip.auth.throttle import Throttle, Throttled, scopes_of
from coverslip.auth.tokens import Tokens
from coverslip.auth.users import Directory
from coverslip.errors import NotFound, Unauthorized

__all__ = [
    "ANONYMOUS",
    "Auth",
    "Caller",
    "Group",
    "Session",
    "SessionStore",
    "Throttled",
    "User",
    "make_session_store",
]

PUBLIC_GROUP = "Public"
ACTIONS: dict[str, Callable[[Caller, Any, Group | None], bool]] = {
    "read": policy.can_read,
    "annotate": policy.can_annotate,
    "edit": policy.can_edit,
    "delete": policy.can_delete,
}


def make_session_store(
    settings: Any,
    engine: Any,
    clock: Clock | None = None,
    stamp: Stamp | None = None,
) -> SessionStore:
    """Return the session store that sessions.backend names (SQL caches with ``stamp``)."""
    idle = settings["sessions.idle_timeout"]
    age = settings["sessions.cookie_age"]
    if settings["sessions.backend"] == "redis":
        return RedisSessionStore.from_url(settings["sessions.redis_url"], idle, age, clock)
    return SqlSessionStore(engine, idle, age, clock, stamp)


def one_host(engine: Any) -> bool:
    """Return whether every process sharing this database runs on this host (SQLite)."""
    return bool(engine.dialect.name == "sqlite")


class Auth:
    """The auth services of one instance: directory, sessions, tokens, throttle, policy."""

    def __init__(
        self,
        settings: Any,
        catalog: Any,
        metadata: Any = None,
        sessions: SessionStore | None = None,
        passwords: Passwords | None = None,
        clock: Clock | None = None,
        stamp: Any = None,
        signal_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.metadata = metadata  # CachedCatalog: image records for visible_image
        self.clock: Clock = clock or time.time
        self.public_enabled = bool(settings["web.public.enabled"])
        self.downloads_default = bool(settings["downloads.enabled"])
        self.anonymous = anonymous(self.public_enabled)
        # The auth stamp moves on every sign-out, revocation and user or group change. SECURITY:
        # sessions and tokens are cached only where it reaches every process that shares them;
        # a catalog on a database server may serve several hosts, so those are read each time.
        # With ``signal_url`` the stamps live in Redis and reach every host.
        self.stamp = (
            make_stamp(Path(stamp).with_name("auth.stamp"), signal_url)
            if stamp is not None
            else None
        )
        cache_stamp = self.stamp if signal_url or one_host(catalog.engine) else None
        catalog_stamp = make_stamp(Path(stamp), signal_url) if stamp is not None else None
        self.directory = Directory(
            catalog.engine,
            passwords or Passwords(),
            signal=signals(catalog_stamp, self.stamp) if catalog_stamp and self.stamp else None,
            on_change=self._changed,
        )
        self.sessions = sessions or make_session_store(
            settings, catalog.engine, self.clock, cache_stamp
        )
        self.tokens = Tokens(
            catalog.engine, self.clock, cache_stamp, ttl=getattr(self.sessions, "touch_every", 60)
        )
        self._callers: dict[tuple[int, str, str | None, str | None], Caller] = {}
        self.throttle = Throttle(
            catalog.engine,
            {
                "user": int(settings["login.max_failures_user"]),
                "addr": int(settings["login.max_failures_address"]),
            },
            window=float(settings["login.window"]),
            max_delay=float(settings["login.max_delay"]),
            clock=self.clock,
        )

    def _changed(self) -> None:
        if self.catalog.on_change:
            self.catalog.on_change()
        if self.stamp is not None:
            self.stamp.touch()

    def set_clock(self, clock: Clock) -> None:
        """Use ``clock`` for sessions, tokens and throttling (tests move time with it)."""
        self.clock = clock
        self.tokens.clock = clock
        self.throttle.clock = clock
        if hasattr(self.sessions, "clock"):
            self.sessions.clock = clock

    @property
    def passwords(self) -> Passwords:
        return self.directory.passwords

    @passwords.setter
    def passwords(self, value: Passwords) -> None:
        self.directory.passwords = value

    # -- resolving callers --------------------------------------------------------------

    def caller_for_user(
        self, user_id: int, via: str, session: Session | None = None, key: str | None = None
    ) -> Caller | None:
        """Return the Caller of an enabled user (None if the user is gone or disabled)."""
        account = self.directory.account(user_id)
        if account is None or account.user.disabled:
            return None
        csrf_token = session.csrf_token if session else None
        memo = (user_id, via, csrf_token, key)
        found = self._callers.get(memo)
        # PERF: a Caller costs more to build than to look up; one built from the account the
        # directory still holds (the same User object) is still right.
        if found is not None and found.user is account.user:
            return found
        found = Caller(
            user=account.user,
            member_of=account.member_of,
            owner_of=account.owner_of,
            via=via,
            public=self.public_enabled,
            csrf_token=csrf_token,
            session_key=key,
            groups=account.groups,
        )
        if len(self._callers) >= 10_000:
            self._callers = {}
        self._callers[memo] = found
        return found

    def caller_for_session(self, key: str) -> Caller | None:
        """Return the caller of a session key, or None when it is unknown or expired."""
        session = self.sessions.get(key)
        if session is None:
            return None
        return self.caller_for_user(session.user_id, "session", session, key)

    def caller_for_token(self, token: str) -> Caller | None:
        """Return the caller of an API token, or None when it is unknown, revoked or expired."""
        user_id = self.tokens.user_of(token)
        return None if user_id is None else self.caller_for_user(user_id, "token")

    # -- signing in and out -------------------------------------------------------------

    def login(self, username: str, password: str, address: str = "") -> tuple[str, Caller]:
        """Check the password and return (new session key, caller); raise Unauthorized or Throttled.

        # SECURITY: every login makes a new key (no session fixation), and an attempt that
        # must still wait (at most login.max_delay) is refused before the password is checked.
        """
        scopes = scopes_of(username, address)
        self.throttle.check(scopes)
        user = self.directory.authenticate(username, password)
        if user is None:
            self.throttle.failed(scopes)
            raise Unauthorized("wrong username or password")
        self.throttle.succeeded(scopes)
        key, session = self.sessions.create(user.id)
        caller = self.caller_for_user(user.id, "session", session, key)
        if caller is None:  # disabled between the check and now
            self.sessions.delete(key)
            raise Unauthorized("wrong username or password")
        return key, caller

    def logout(self, key: str) -> None:
        self.sessions.delete(key)

    def change_password(self, user_id: int, password: str) -> int:
        """Set a new password and end every session of the user; return how many ended."""
        self.directory.set_password(user_id, password)
        return self.sessions.delete_user(user_id)

    def disable(self, user_id: int, disabled: bool = True) -> int:
        """Disable (or enable) a user; disabling ends their sessions at once."""
        self.directory.set_disabled(user_id, disabled)
        return self.sessions.delete_user(user_id) if disabled else 0

    # -- policy helpers for routes ------------------------------------------------------

    def group(self, group_id: int) -> Group | None:
        return self.directory.group(group_id)

    def can(self, caller: Caller, action: str, thing: Any) -> bool:
        """Return whether ``caller`` may ``action`` (read, annotate, edit, delete) ``thing``."""
        return ACTIONS[action](caller, thing, self.directory.group(thing.group_id))

    def can_download(self, caller: Caller, thing: Any) -> bool:
        return policy.can_download(
            caller, thing, self.directory.group(thing.group_id), self.downloads_default
        )

    def is_public(self, thing: Any) -> bool:
        """Return whether anonymous visitors may read ``thing`` (responses may be cached publicly)."""
        return policy.is_public(self.directory.group(thing.group_id), self.public_enabled)

    def visible_image(self, caller: Caller, image: Any) -> Any:
        """Return the image record if ``caller`` may read it; raise NotFound otherwise.

        ``image`` is an image id, or a record the caller already holds (then nothing is read).
        The one "visible or 404" of every route: a hidden image is refused exactly like a
        missing one, with the same error (never leak existence).
        """
        if isinstance(image, int):
            image_id = image
            image = (
                self.metadata.image(image_id) if self.metadata else self.catalog.get_image(image_id)
            )
        if not policy.can_read(caller, image, self.directory.group(image.group_id)):
            raise NotFound(f"image {image.id} does not exist")
        return image

    def readable_group_ids(self, caller: Caller) -> list[int] | None:
        """Return the groups whose images ``caller`` may all read (None: every group)."""
        return policy.readable_group_ids(caller, self.directory.groups())

    # -- first run ----------------------------------------------------------------------

    def ensure_admin(self) -> tuple[str, str | None]:
        """Make sure the local admin exists and can sign in; return (username, new password).

        The password is generated only when the admin has none yet (the first run), and is
        returned to be printed once; later calls return None for it.
        """
        user_id, _group_id = self.catalog.ensure_local_admin()
        user = self.directory.user(user_id)
        if self.directory.has_password(user_id):
            return user.username, None
        password = generate()
        self.directory.set_password(user_id, password)
        self.directory.changed()
        return user.username, password

    def ensure_public_group(self, name: str = PUBLIC_GROUP) -> int:
        """Return the id of the public group ``name``, creating it (owned by the admin)."""
        admin_id, _ = self.catalog.ensure_local_admin()
        try:
            return self.directory.find_group(name).id
        except NotFound:
            group_id = self.directory.add_group(name, policy.PUBLIC)
            self.directory.add_member(group_id, admin_id, owner=True)
            return group_id
