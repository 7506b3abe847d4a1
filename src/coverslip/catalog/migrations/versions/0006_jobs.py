"""Background jobs replace the images API's import tasks.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Glance's task statuses and the job states they become.
STATES = {"pending": "queued", "processing": "running", "success": "succeeded"}


def upgrade() -> None:
    jobs = op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("image_id", sa.Integer, nullable=True),
        sa.Column("images", sa.JSON, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=True),
        sa.Column("input", sa.JSON, nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("claim", sa.String(36), nullable=True),
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
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_image_id", "jobs", ["image_id"])
    tasks = sa.table(
        "image_tasks",
        *(sa.column(name) for name in ("id", "image_id", "type", "status", "message")),
        sa.column("input", sa.JSON),
        sa.column("user_id"),
        sa.column("created", sa.DateTime(timezone=True)),
        sa.column("updated", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    rows = [
        {
            "id": row.id,
            "kind": "import_web" if "uri" in json.dumps(row.input) else "import_staged",
            # An import that was running when the old server stopped did not finish.
            "state": "failed" if row.status in ("processing", "failure") else STATES[row.status],
            "image_id": row.image_id,
            "images": [row.image_id],
            "user_id": row.user_id,
            "input": row.input,
            "message": row.message or ("interrupted" if row.status == "processing" else ""),
            "created": row.created,
            "updated": row.updated,
        }
        for row in connection.execute(sa.select(tasks))
    ]
    if rows:
        op.bulk_insert(jobs, rows)
    op.drop_index("ix_image_tasks_image_id", "image_tasks")
    op.drop_table("image_tasks")


def downgrade() -> None:
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
    op.drop_index("ix_jobs_image_id", "jobs")
    op.drop_index("ix_jobs_state", "jobs")
    op.drop_table("jobs")
