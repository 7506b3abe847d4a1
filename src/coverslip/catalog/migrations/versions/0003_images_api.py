"""Images API: Glance-style attributes, tags and import tasks of images.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_api",
        sa.Column(
            "image_id",
            sa.Integer,
            sa.ForeignKey("images.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("disk_format", sa.String(20), nullable=True),
        sa.Column("container_format", sa.String(20), nullable=True),
        sa.Column("min_disk", sa.Integer, nullable=False, server_default="0"),
        sa.Column("min_ram", sa.Integer, nullable=False, server_default="0"),
        sa.Column("protected", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("os_hidden", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("home_group_id", sa.Integer, nullable=True),
    )
    op.create_table(
        "image_tags",
        sa.Column(
            "image_id",
            sa.Integer,
            sa.ForeignKey("images.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(255), primary_key=True),
    )
    op.create_table(
        "image_tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "image_id",
            sa.Integer,
            sa.ForeignKey("images.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("input", sa.JSON, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_image_tasks_image_id", "image_tasks", ["image_id"])
    op.create_index("ix_image_tags_tag", "image_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_image_tags_tag", "image_tags")
    op.drop_index("ix_image_tasks_image_id", "image_tasks")
    op.drop_table("image_tasks")
    op.drop_table("image_tags")
    op.drop_table("image_api")
