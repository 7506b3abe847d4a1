"""What the `coverslip` command and the command groups attached to it share.

Kept apart from `coverslip.cli` so those groups import it without importing the command
(which imports them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from coverslip import config
from coverslip.errors import CoverslipError
from coverslip.home import Home

if TYPE_CHECKING:
    from coverslip.services import Services

console = Console()
errors = Console(stderr=True)


class State:
    """What every command needs: the home, the settings, and services built on first use."""

    def __init__(self, home: Home, flags: dict[str, Any] | None = None) -> None:
        self.home = home
        self.flags = flags or {}
        self._services: Services | None = None

    @property
    def settings(self) -> config.Settings:
        return self.home.settings(flags=self.flags)

    @property
    def services(self) -> Services:
        if self._services is None:
            # PERF: imported when a command needs it (the catalog, pixels, auth: a second).
            from coverslip.services import Services

            self._services = Services.build(self.settings, self.home)
        return self._services


pass_state = click.make_pass_decorator(State)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    sys.exit(code)


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn service and settings errors into one clear line and exit 1."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (CoverslipError, config.SettingError) as exc:
            fail(str(exc))

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def show(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool, title: str = ""
) -> None:
    """Print ``rows`` as a table, or as JSON for scripts."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=title or None)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    console.print(table)
