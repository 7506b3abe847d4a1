"""Never reuse ids; give every image a random render tag for its ETags.

SQLite hands out max(id) + 1, so deleting the newest image (or user, group, dataset, token)
gave its id to the next one: a browser's ETag of the deleted image then matched the new one,
and anything keyed by id could follow it. AUTOINCREMENT makes SQLite remember the highest id
ever used. PostgreSQL's SERIAL columns draw from sequences, which never go back.

Rebuilding a SQLite table drops the old one, and with foreign keys on, dropping a parent
cascades into its children; so the rebuild runs with foreign keys off (outside a transaction,
the only place SQLite lets that change), then checks them before committing.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("users", "groups", "datasets", "images", "api_tokens")


def _render_tag() -> sa.Column[Any]:
    return sa.Column("render_tag", sa.String(32), nullable=False, server_default="")


@contextmanager
def _sqlite_rebuild() -> Iterator[None]:
    """Run the block in one SQLite transaction with foreign keys off, checked at the end."""
    bind = op.get_bind()
    raw: Any = bind.connection.driver_connection
    # NOTE: earlier migrations of this run may have left SQLite's own transaction open, and
    # foreign keys can only be switched off outside one.
    if raw.in_transaction:
        raw.commit()
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        raw.execute("BEGIN")
        yield
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the rebuild broke foreign keys: {broken[:5]}")
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _fill_render_tags() -> None:
    bind = op.get_bind()
    images = sa.table("images", sa.column("id", sa.Integer), sa.column("render_tag", sa.String))
    for (image_id,) in bind.execute(sa.select(images.c.id)).all():
        bind.execute(
            images.update().where(images.c.id == image_id).values(render_tag=secrets.token_hex(8))
        )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.add_column("images", _render_tag())
        _fill_render_tags()
        return
    with _sqlite_rebuild():
        for name in TABLES:
            with op.batch_alter_table(
                name, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ) as batch:
                if name == "images":
                    batch.add_column(_render_tag())
        _fill_render_tags()


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_column("images", "render_tag")
        return
    with _sqlite_rebuild():
        for name in TABLES:
            with op.batch_alter_table(name, recreate="always") as batch:
                if name == "images":
                    batch.drop_column("render_tag")
