"""Filesets, image metadata from the files, and HCS plates of wells and fields.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _image_fk(primary_key: bool = True, **kwargs: Any) -> sa.Column[int]:
    return sa.Column(
        "image_id",
        sa.Integer,
        sa.ForeignKey("images.id", ondelete="CASCADE"),
        primary_key=primary_key,
        **kwargs,
    )


def upgrade() -> None:
    op.create_table(
        "filesets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha512", sa.String(128), nullable=True, index=True),
        sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("files", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "fileset_images",
        _image_fk(),
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
    op.create_table(
        "image_metadata",
        _image_fk(),
        sa.Column("objective", sa.Text, nullable=True),
        sa.Column("acquired", sa.Text, nullable=True),
        sa.Column("time_increment", sa.Float, nullable=True),
        sa.Column("channels", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("original", sa.JSON, nullable=False),
    )
    op.create_table(
        "plates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column(
            "fileset_id",
            sa.Integer,
            sa.ForeignKey("filesets.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
        sa.Column("rows", sa.JSON, nullable=False),
        sa.Column("columns", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "wells",
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
    op.create_table(
        "well_samples",
        sa.Column(
            "well_id",
            sa.Integer,
            sa.ForeignKey("wells.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("field", sa.Integer, primary_key=True),
        _image_fk(primary_key=False, nullable=False, index=True),
    )


def downgrade() -> None:
    for table in ("well_samples", "wells", "plates", "image_metadata", "fileset_images"):
        op.drop_table(table)
    op.drop_table("filesets")
