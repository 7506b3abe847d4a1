"""Projects group datasets, as in OMERO; images get a description.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("group_id", "name", name="uq_projects_group_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "project_datasets",
        sa.Column(
            "project_id",
            sa.Integer,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("description", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("description")
    op.drop_table("project_datasets")
    op.drop_table("projects")
