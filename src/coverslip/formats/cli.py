"""`coverslip formats`: every format Coverslip reads, with its reader and version."""

from __future__ import annotations

from importlib import metadata

import click

from coverslip.cli_support import show
from coverslip.formats import FORMAT_LIST


def library_version(distribution: str) -> str:
    """Return the installed version of a reader library, or "not installed"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


@click.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def formats(as_json: bool) -> None:
    """List the formats `coverslip import` reads, with the library and version that read them."""
    rows = [
        {
            "format": fmt.name,
            "what": fmt.title,
            "suffixes": " ".join(fmt.suffixes),
            "reader": fmt.library,
            "version": library_version(fmt.library),
        }
        for fmt in FORMAT_LIST
    ]
    show(rows, ["format", "what", "suffixes", "reader", "version"], as_json, "Formats")
