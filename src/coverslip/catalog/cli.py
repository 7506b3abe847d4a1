"""`coverslip plates`: the HCS plates the catalog holds, with their wells and fields."""

from __future__ import annotations

import json

import click

from coverslip.cli_support import State, guarded, pass_state, show


@click.group()
def plates() -> None:
    """List and show plates (HCS): wells in rows and columns, fields as images."""


@plates.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def plates_list(state: State, as_json: bool) -> None:
    """List plates."""
    rows = [
        {
            "id": plate.id,
            "name": plate.name,
            "rows": len(plate.rows),
            "columns": len(plate.columns),
            "fileset": plate.fileset_id,
        }
        for plate in state.services.catalog.list_plates()
    ]
    show(rows, ["id", "name", "rows", "columns", "fileset"], as_json, "Plates")


@plates.command("show")
@click.argument("plate_id", type=int)
@pass_state
@guarded
def plates_show(state: State, plate_id: int) -> None:
    """Show a plate as JSON: row and column names, and each well's field image ids."""
    plate = state.services.catalog.get_plate(plate_id)
    document = {
        "id": plate.id,
        "name": plate.name,
        "rows": plate.rows,
        "columns": plate.columns,
        "wells": [
            {
                "row": plate.rows[w.row] if w.row < len(plate.rows) else str(w.row),
                "column": plate.columns[w.column]
                if w.column < len(plate.columns)
                else str(w.column),
                "images": w.images,
            }
            for w in plate.wells
        ],
    }
    click.echo(json.dumps(document, indent=2))
