"""The catalog's tables, as SQLAlchemy Core objects; the migrations create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("full_name", sa.String(255), nullable=False, server_default=""),
    sa.Column("email", sa.String(255), nullable=False, server_default=""),
    sa.Column("password_hash", sa.String(255), nullable=False, server_default=""),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,  # NOTE: ids are never reused (migration 0004), as in OMERO
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(150), nullable=False, unique=True),
    sa.Column("permissions", sa.String(20), nullable=False, server_default="private"),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)

group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column(
        "group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("is_owner", sa.Boolean, nullable=False, server_default=sa.false()),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("group_id", "name", name="uq_datasets_group_name"),
    sqlite_autoincrement=True,
)

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    sa.Column("format", sa.String(20), nullable=False, server_default=""),
    sa.Column("size_t", sa.Integer, nullable=False, server_default="0"),
    sa.Column("size_c", sa.Integer, nullable=False, server_default="0"),
    sa.Column("size_z", sa.Integer, nullable=False, server_default="0"),
    sa.Column("size_y", sa.Integer, nullable=False, server_default="0"),
    sa.Column("size_x", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pixel_type", sa.String(10), nullable=False, server_default=""),
    sa.Column("physical_size_x", sa.Float, nullable=True),
    sa.Column("physical_size_y", sa.Float, nullable=True),
    sa.Column("physical_size_z", sa.Float, nullable=True),
    sa.Column("levels", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tile_size", sa.Integer, nullable=False, server_default="256"),
    # Where the pyramid lives when registered in place; NULL means pixels/<id>.ome.zarr.
    sa.Column("pyramid_path", sa.Text, nullable=True),
    sa.Column("original_name", sa.Text, nullable=False, server_default=""),
    sa.Column("original_size", sa.BigInteger, nullable=True),
    sa.Column("sha512", sa.String(128), nullable=True, index=True),
    sa.Column("md5", sa.String(32), nullable=True),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    # Bumped by every saved rendering settings change; part of every render cache key.
    sa.Column("rdef_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("properties", sa.JSON, nullable=False, default=dict),
    # Random per image, part of every render ETag: an ETag can never match another image.
    sa.Column("render_tag", sa.String(32), nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

channels = sa.Table(
    "channels",
    metadata,
    sa.Column(
        "image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("index", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("color", sa.String(6), nullable=False),
    sa.Column("emission_wave", sa.Float, nullable=True),
    sa.Column("min", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
)

dataset_images = sa.Table(
    "dataset_images",
    metadata,
    sa.Column(
        "dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("group_id", "name", name="uq_projects_group_name"),
    sqlite_autoincrement=True,
)

project_datasets = sa.Table(
    "project_datasets",
    metadata,
    sa.Column(
        "project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    ),
)

rendering_defs = sa.Table(
    "rendering_defs",
    metadata,
    sa.Column(
        "image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)

# Background jobs: the queue library delivers them, this table is their truth. An image's
# jobs outlive the image (deleting its files is a job), so image_id is not a foreign key.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("image_id", sa.Integer, nullable=True, index=True),
    sa.Column("images", sa.JSON, nullable=False),  # every image the job creates or imports
    sa.Column("user_id", sa.Integer, nullable=True),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("claim", sa.String(36), nullable=True),  # the running attempt's token
    sa.Column("worker", sa.String(200), nullable=False, server_default=""),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("cancel", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("unit", sa.String(10), nullable=False, server_default="bytes"),
    sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
)
