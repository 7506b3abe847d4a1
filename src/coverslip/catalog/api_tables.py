"""Tables of the images API: Glance-style attributes and tags of an image."""

from __future__ import annotations

import sqlalchemy as sa

from coverslip.catalog.tables import metadata

# One row per image that the images API has touched; an image imported by the CLI has none
# and reads as the defaults.
image_api = sa.Table(
    "image_api",
    metadata,
    sa.Column(
        "image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("disk_format", sa.String(20), nullable=True),
    sa.Column("container_format", sa.String(20), nullable=True),
    sa.Column("min_disk", sa.Integer, nullable=False, server_default="0"),
    sa.Column("min_ram", sa.Integer, nullable=False, server_default="0"),
    sa.Column("protected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("os_hidden", sa.Boolean, nullable=False, server_default=sa.false()),
    # The group the image goes back to when it stops being public.
    sa.Column("home_group_id", sa.Integer, nullable=True),
)

image_tags = sa.Table(
    "image_tags",
    metadata,
    sa.Column(
        "image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tag", sa.String(255), primary_key=True),
    sa.Index("ix_image_tags_tag", "tag"),
)
