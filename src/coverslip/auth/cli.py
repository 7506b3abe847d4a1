"""`coverslip user|group|token …`: accounts, groups and API tokens from the command line.

The groups read the services from the `coverslip` command's context object (``.services``),
so they attach to it with ``main.add_command`` without importing it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

import click

from coverslip.auth import Auth
from coverslip.auth.passwords import generate
from coverslip.auth.policy import LEVELS
from coverslip.config import SettingError
from coverslip.errors import CoverslipError


class _State(Protocol):
    @property
    def services(self) -> Any: ...


def _auth() -> Auth:
    state: _State = click.get_current_context().find_root().obj
    auth: Auth = state.services.auth
    return auth


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn service errors into one line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (CoverslipError, SettingError) as exc:
            _fail(str(exc))

    return wrapper


def _show(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """Print rows as an aligned table, or as JSON for scripts."""
    if as_json:
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _when(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _password(given: str | None, random: bool) -> str | None:
    if given is not None and random:
        raise click.UsageError("give --password or --random-password, not both")
    if random:
        return generate()
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise click.UsageError("give --password or --random-password (stdin is not a terminal)")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


# -- users -------------------------------------------------------------------------------


@click.group("user")
def user() -> None:
    """Add, list, disable users and change their passwords."""


def _add_user(
    username: str,
    password: str | None,
    random_password: bool,
    full_name: str,
    email: str,
    admin: bool,
    groups: tuple[str, ...],
    no_password: bool,
) -> None:
    auth = _auth()
    secret = None if no_password else _password(password, random_password)
    user_id = auth.directory.add_user(username, secret, full_name, email, admin)
    for name in groups:
        auth.directory.add_member(auth.directory.find_group(name).id, user_id)
    click.echo(f"created user {username} (id {user_id})")
    if random_password and secret:
        click.echo(f"password: {secret}  (shown once)")


_user_options = [
    click.argument("username"),
    click.option("--password", help="The password (prompted for when not given)."),
    click.option("--random-password", is_flag=True, help="Generate a password and print it once."),
    click.option(
        "--no-password", is_flag=True, help="No password: the user signs in with tokens only."
    ),
    click.option("--full-name", default=""),
    click.option("--email", default=""),
    click.option("--admin", is_flag=True, help="Make the user an administrator."),
    click.option(
        "--group", "groups", multiple=True, help="Add the user to this group (repeatable)."
    ),
]


def _with_user_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_user_options):
        func = option(func)
    return func


@user.command("add")
@_with_user_options
@guarded
def user_add(
    username: str,
    password: str | None,
    random_password: bool,
    no_password: bool,
    full_name: str,
    email: str,
    admin: bool,
    groups: tuple[str, ...],
) -> None:
    """Create a user."""
    _add_user(username, password, random_password, full_name, email, admin, groups, no_password)


@user.command("create", hidden=True)
@_with_user_options
@guarded
def user_create(
    username: str,
    password: str | None,
    random_password: bool,
    no_password: bool,
    full_name: str,
    email: str,
    admin: bool,
    groups: tuple[str, ...],
) -> None:
    """Create a user (the same as `user add`)."""
    _add_user(username, password, random_password, full_name, email, admin, groups, no_password)


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
@guarded
def user_list(as_json: bool) -> None:
    """List users with their groups (groups they own are marked *)."""
    rows = [
        {**found.to_json(), "groups": groups if as_json else ", ".join(groups)}
        for found, groups in _auth().directory.users()
    ]
    _show(rows, ["id", "username", "full_name", "email", "is_admin", "disabled", "groups"], as_json)


@user.command("passwd")
@click.argument("username")
@click.option("--password", help="The new password (prompted for when not given).")
@click.option("--random-password", is_flag=True, help="Generate a password and print it once.")
@guarded
def user_passwd(username: str, password: str | None, random_password: bool) -> None:
    """Change a user's password; their sessions end at once."""
    auth = _auth()
    found = auth.directory.user(username)
    secret = _password(password, random_password)
    assert secret is not None
    ended = auth.change_password(found.id, secret)
    click.echo(f"password of {username} changed; {ended} session(s) ended")
    if random_password:
        click.echo(f"password: {secret}  (shown once)")


@user.command("disable")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
@guarded
def user_disable(username: str, enable: bool) -> None:
    """Disable a user: they cannot sign in, their sessions end and their tokens stop working."""
    auth = _auth()
    found = auth.directory.user(username)
    ended = auth.disable(found.id, not enable)
    if enable:
        click.echo(f"user {username} enabled")
    else:
        click.echo(f"user {username} disabled; {ended} session(s) ended")


@user.command("ensure-admin")
@guarded
def user_ensure_admin() -> None:
    """Create the admin and the "Public" group if missing; print a new admin password once."""
    auth = _auth()
    username, password = auth.ensure_admin()
    group_id = auth.ensure_public_group()
    if password:
        click.echo(f"created administrator {username!r} with password: {password}")
        click.echo("  (shown once; change it with `coverslip user passwd admin`)")
    else:
        click.echo(f"administrator {username!r} exists")
    click.echo(f"public group {auth.directory.group(group_id).name!r} (id {group_id})")  # type: ignore[union-attr]


# -- groups ------------------------------------------------------------------------------


@click.group("group")
def group() -> None:
    """Add and list groups, change their members and permissions."""


@group.command("add")
@click.argument("name")
@click.option(
    "--permissions",
    type=click.Choice(LEVELS),
    default="private",
    show_default=True,
    help="Who sees the group's images.",
)
@guarded
def group_add(name: str, permissions: str) -> None:
    """Create a group."""
    group_id = _auth().directory.add_group(name, permissions)
    click.echo(f"created group {name} (id {group_id}, {permissions})")


@group.command("list")
@click.option("--json", "as_json", is_flag=True)
@guarded
def group_list(as_json: bool) -> None:
    """List groups with their permissions, download override and members (owners marked *)."""
    directory = _auth().directory
    rows = []
    for found in directory.groups().values():
        members = [
            u.username + ("*" if owner else "") for u, owner in directory.group_members(found.id)
        ]
        downloads = found.downloads
        rows.append(
            {
                **found.to_json(),
                "downloads": downloads
                if as_json
                else {None: "default", True: "on", False: "off"}[downloads],
                "members": members if as_json else ", ".join(members),
            }
        )
    _show(rows, ["id", "name", "permissions", "downloads", "members"], as_json)


@group.command("adduser")
@click.argument("group_name")
@click.argument("usernames", nargs=-1, required=True)
@click.option("--owner", is_flag=True, help="Make them owners of the group.")
@guarded
def group_adduser(group_name: str, usernames: tuple[str, ...], owner: bool) -> None:
    """Add users to a group (as owners with --owner)."""
    directory = _auth().directory
    found = directory.find_group(group_name)
    for username in usernames:
        directory.add_member(found.id, directory.user(username).id, owner)
        click.echo(f"{username} is {'an owner' if owner else 'a member'} of {found.name}")


@group.command("removeuser")
@click.argument("group_name")
@click.argument("usernames", nargs=-1, required=True)
@guarded
def group_removeuser(group_name: str, usernames: tuple[str, ...]) -> None:
    """Remove users from a group (their images stay in it)."""
    directory = _auth().directory
    found = directory.find_group(group_name)
    for username in usernames:
        directory.remove_member(found.id, directory.user(username).id)
        click.echo(f"{username} removed from {found.name}")


@group.command("set-permissions")
@click.argument("group_name")
@click.argument("permissions", type=click.Choice(LEVELS))
@guarded
def group_set_permissions(group_name: str, permissions: str) -> None:
    """Change who sees a group's images."""
    directory = _auth().directory
    found = directory.find_group(group_name)
    directory.set_permissions(found.id, permissions)
    click.echo(f"group {found.name} is {permissions}")


@group.command("set-downloads")
@click.argument("group_name")
@click.argument("downloads", type=click.Choice(["on", "off", "default"]))
@guarded
def group_set_downloads(group_name: str, downloads: str) -> None:
    """Allow or forbid downloading originals in a group (default: follow downloads.enabled)."""
    directory = _auth().directory
    found = directory.find_group(group_name)
    directory.set_downloads(found.id, {"on": True, "off": False, "default": None}[downloads])
    click.echo(f"downloads in group {found.name}: {downloads}")


# -- tokens ------------------------------------------------------------------------------


@click.group("token")
def token() -> None:
    """Create, list and revoke API tokens (sent as X-Auth-Token or Authorization: Bearer)."""


@token.command("create")
@click.argument("username", required=False)
@click.option("--user", "user_option", help="Whose token it is.")
@click.option("--expires", type=float, help="Days until the token stops working.")
@click.option("--name", default="", help="A label to recognise the token by.")
@click.option("--json", "as_json", is_flag=True)
@guarded
def token_create(
    username: str | None, user_option: str | None, expires: float | None, name: str, as_json: bool
) -> None:
    """Create a token and print it once (it is stored only as a hash)."""
    who = user_option or username
    if not who:
        raise click.UsageError("name the user: coverslip token create --user NAME")
    auth = _auth()
    found = auth.directory.user(who)
    token_id, secret = auth.tokens.create(found.id, name, expires)
    if as_json:
        click.echo(json.dumps({**auth.tokens.get(token_id).to_json(), "token": secret}))
        return
    click.echo(f"token {token_id} of {found.username} (shown once, keep it safe):", err=True)
    click.echo(secret)


@token.command("list")
@click.option("--user", "username", help="Only this user's tokens.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@click.option("--json", "as_json", is_flag=True)
@guarded
def token_list(username: str | None, include_revoked: bool, as_json: bool) -> None:
    """List tokens (never the tokens themselves: their first characters)."""
    auth = _auth()
    user_id = auth.directory.user(username).id if username else None
    rows = []
    for found in auth.tokens.list(user_id, include_revoked):
        row = found.to_json()
        if not as_json:
            row.update(
                created=_when(found.created),
                expires=_when(found.expires) or "never",
                last_used=_when(found.last_used),
                prefix=found.prefix + "…",
            )
        rows.append(row)
    columns = ["id", "username", "name", "prefix", "created", "expires", "last_used"]
    _show(rows, columns + (["revoked"] if include_revoked else []), as_json)


@token.command("revoke")
@click.argument("token_ids", type=int, nargs=-1, required=True)
@guarded
def token_revoke(token_ids: tuple[int, ...]) -> None:
    """Revoke tokens by id; they stop working at once."""
    auth = _auth()
    for token_id in token_ids:
        auth.tokens.revoke(token_id)
        click.echo(f"token {token_id} revoked")
