"""Filesets (the originals one import kept, and the images they hold), image metadata, plates.

As in OMERO, a fileset keeps a file or a set of files once; each series, scene or position
in it is an image that points back to it. An HCS plate is a grid of wells whose fields
are images of the same fileset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from coverslip.catalog import tables as t
from coverslip.catalog.base import _new_id, now
from coverslip.errors import NotFound

filesets = sa.Table(
    "filesets",
    t.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    # sha512 of the members' names and checksums: the same set imported twice is a duplicate.
    sa.Column("sha512", sa.String(128), nullable=True, index=True),
    sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
    # The members' paths relative to the fileset's folder, the file opened first.
    sa.Column("files", sa.JSON, nullable=False, default=list),
    sqlite_autoincrement=True,
)

fileset_images = sa.Table(
    "fileset_images",
    t.metadata,
    sa.Column(
        "image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "fileset_id",
        sa.Integer,
        sa.ForeignKey("filesets.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("series_index", sa.Integer, nullable=False, server_default="0"),
    sa.Column("series", sa.Text, nullable=True),
    sa.Column("kind", sa.String(20), nullable=False, server_default="image"),
)

image_metadata = sa.Table(
    "image_metadata",
    t.metadata,
    sa.Column(
        "image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("objective", sa.Text, nullable=True),
    sa.Column("acquired", sa.Text, nullable=True),
    sa.Column("time_increment", sa.Float, nullable=True),
    # [{"excitation_wave", "emission_wave"}] per channel, and the names of label images.
    sa.Column("channels", sa.JSON, nullable=False, default=list),
    sa.Column("labels", sa.JSON, nullable=False, default=list),
    # The vendor's own key-value pairs, as the reader flattened them.
    sa.Column("original", sa.JSON, nullable=False, default=dict),
)

plates = sa.Table(
    "plates",
    t.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column(
        "fileset_id", sa.Integer, sa.ForeignKey("filesets.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("rows", sa.JSON, nullable=False, default=list),
    sa.Column("columns", sa.JSON, nullable=False, default=list),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)

wells = sa.Table(
    "wells",
    t.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "plate_id",
        sa.Integer,
        sa.ForeignKey("plates.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("column", sa.Integer, nullable=False),
    sa.UniqueConstraint("plate_id", "row", "column", name="uq_wells_position"),
    sqlite_autoincrement=True,
)

well_samples = sa.Table(
    "well_samples",
    t.metadata,
    sa.Column(
        "well_id", sa.Integer, sa.ForeignKey("wells.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("field", sa.Integer, primary_key=True),
    sa.Column(
        "image_id",
        sa.Integer,
        sa.ForeignKey("images.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
)


@dataclass
class FilesetInfo:
    """A fileset and the images it holds."""

    id: int
    format: str
    owner_id: int
    group_id: int
    sha512: str | None
    size: int
    files: list[str]
    image_ids: list[int] = field(default_factory=list)


@dataclass
class ImageExtras:
    """What an image's file said beyond sizes and channels."""

    fileset_id: int | None = None
    series: str | None = None
    series_index: int = 0
    kind: str = "image"
    objective: str | None = None
    acquired: str | None = None
    time_increment: float | None = None
    channels: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    original: dict[str, str] = field(default_factory=dict)


@dataclass
class Well:
    """A well of a plate and its fields' image ids, field 0 first."""

    id: int
    row: int
    column: int
    images: list[int]


@dataclass
class Plate:
    """A plate: names of its rows and columns, and its wells."""

    id: int
    name: str
    fileset_id: int | None
    owner_id: int
    group_id: int
    rows: list[str]
    columns: list[str]
    wells: list[Well] = field(default_factory=list)


def _plate(row: Any, wells: list[Well] | None = None) -> Plate:
    """Return the Plate of a ``plates`` row, with ``wells`` when they were read."""
    return Plate(
        id=row.id,
        name=row.name,
        fileset_id=row.fileset_id,
        owner_id=row.owner_id,
        group_id=row.group_id,
        rows=list(row.rows or []),
        columns=list(row.columns or []),
        wells=wells or [],
    )


class FilesetQueries:
    """Filesets, image metadata and plates; mixed into the Catalog."""

    engine: sa.Engine

    # -- filesets -----------------------------------------------------------------------

    def create_fileset(self, fmt: str, owner_id: int, group_id: int) -> int:
        """Insert an empty fileset and return its id."""
        with self.engine.begin() as conn:
            return _new_id(
                conn.execute(
                    filesets.insert().values(
                        format=fmt, owner_id=owner_id, group_id=group_id, created=now(), files=[]
                    )
                )
            )

    def update_fileset(self, fileset_id: int, **fields: Any) -> None:
        """Change fields of a fileset (its checksum, size and members once they are kept)."""
        with self.engine.begin() as conn:
            conn.execute(filesets.update().where(filesets.c.id == fileset_id).values(**fields))

    def add_to_fileset(
        self, fileset_id: int, image_id: int, index: int, series: str | None, kind: str
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                fileset_images.insert().values(
                    fileset_id=fileset_id,
                    image_id=image_id,
                    series_index=index,
                    series=series,
                    kind=kind,
                )
            )

    def get_fileset(self, fileset_id: int) -> FilesetInfo:
        """Return a fileset with its image ids, or raise NotFound."""
        with self.engine.connect() as conn:
            row = conn.execute(filesets.select().where(filesets.c.id == fileset_id)).first()
            if row is None:
                raise NotFound(f"fileset {fileset_id} does not exist")
            ids = conn.scalars(
                sa.select(fileset_images.c.image_id)
                .where(fileset_images.c.fileset_id == fileset_id)
                .order_by(fileset_images.c.series_index)
            ).all()
        return FilesetInfo(
            id=row.id,
            format=row.format,
            owner_id=row.owner_id,
            group_id=row.group_id,
            sha512=row.sha512,
            size=int(row.size or 0),
            files=list(row.files or []),
            image_ids=[int(i) for i in ids],
        )

    def fileset_of(self, image_id: int) -> int | None:
        """Return the id of the fileset an image belongs to, if any."""
        with self.engine.connect() as conn:
            found = conn.scalar(
                sa.select(fileset_images.c.fileset_id).where(fileset_images.c.image_id == image_id)
            )
        return None if found is None else int(found)

    def delete_fileset(self, fileset_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(plates.delete().where(plates.c.fileset_id == fileset_id))
            conn.execute(fileset_images.delete().where(fileset_images.c.fileset_id == fileset_id))
            conn.execute(filesets.delete().where(filesets.c.id == fileset_id))

    # -- image metadata -----------------------------------------------------------------

    def set_extras(self, image_id: int, extras: ImageExtras) -> None:
        """Record what the file said beyond sizes and channels."""
        values = {
            "objective": extras.objective,
            "acquired": extras.acquired,
            "time_increment": extras.time_increment,
            "channels": extras.channels,
            "labels": extras.labels,
            "original": extras.original,
        }
        with self.engine.begin() as conn:
            conn.execute(image_metadata.delete().where(image_metadata.c.image_id == image_id))
            conn.execute(image_metadata.insert().values(image_id=image_id, **values))

    def get_extras(self, image_id: int) -> ImageExtras:
        """Return an image's metadata beyond sizes and channels (empty when none was kept)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                image_metadata.select().where(image_metadata.c.image_id == image_id)
            ).first()
            member = conn.execute(
                fileset_images.select().where(fileset_images.c.image_id == image_id)
            ).first()
        extras = ImageExtras()
        if member is not None:
            extras.fileset_id = member.fileset_id
            extras.series = member.series
            extras.series_index = member.series_index
            extras.kind = member.kind
        if row is not None:
            extras.objective = row.objective
            extras.acquired = row.acquired
            extras.time_increment = row.time_increment
            extras.channels = list(row.channels or [])
            extras.labels = list(row.labels or [])
            extras.original = dict(row.original or {})
        return extras

    # -- plates -------------------------------------------------------------------------

    def create_plate(
        self,
        name: str,
        fileset_id: int | None,
        owner_id: int,
        group_id: int,
        rows: list[str],
        columns: list[str],
        wells_fields: list[tuple[int, int, list[int]]],
    ) -> int:
        """Insert a plate with its wells; ``wells_fields`` are (row, column, image ids)."""
        with self.engine.begin() as conn:
            plate_id = _new_id(
                conn.execute(
                    plates.insert().values(
                        name=name,
                        fileset_id=fileset_id,
                        owner_id=owner_id,
                        group_id=group_id,
                        rows=rows,
                        columns=columns,
                        created=now(),
                    )
                )
            )
            for row, column, image_ids in wells_fields:
                well_id = _new_id(
                    conn.execute(wells.insert().values(plate_id=plate_id, row=row, column=column))
                )
                for index, image_id in enumerate(image_ids):
                    conn.execute(
                        well_samples.insert().values(
                            well_id=well_id, field=index, image_id=image_id
                        )
                    )
        return plate_id

    def get_plate(self, plate_id: int) -> Plate:
        """Return a plate with its wells, or raise NotFound."""
        with self.engine.connect() as conn:
            row = conn.execute(plates.select().where(plates.c.id == plate_id)).first()
            if row is None:
                raise NotFound(f"plate {plate_id} does not exist")
            samples = conn.execute(
                sa.select(wells.c.id, wells.c.row, wells.c.column, well_samples.c.image_id)
                .select_from(wells.outerjoin(well_samples, well_samples.c.well_id == wells.c.id))
                .where(wells.c.plate_id == plate_id)
                .order_by(wells.c.row, wells.c.column, well_samples.c.field)
            ).all()
        found: dict[int, Well] = {}
        for well_id, r, c, image_id in samples:
            well = found.setdefault(well_id, Well(well_id, r, c, []))
            if image_id is not None:
                well.images.append(int(image_id))
        return _plate(row, list(found.values()))

    def list_plates(self) -> list[Plate]:
        """Return every plate, without their wells, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(plates.select().order_by(plates.c.id)).all()
        return [_plate(row) for row in rows]

    def plate_of(self, image_id: int) -> tuple[int, int, int, int] | None:
        """Return (plate id, row, column, field) of an image that is a field of a plate."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(wells.c.plate_id, wells.c.row, wells.c.column, well_samples.c.field)
                .join(wells, wells.c.id == well_samples.c.well_id)
                .where(well_samples.c.image_id == image_id)
            ).first()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]), int(row[3]))
