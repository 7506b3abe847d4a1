"""The auth layer's tables, on the catalog's metadata; migration 0002 creates them."""

from __future__ import annotations

import sqlalchemy as sa

from coverslip.catalog.tables import metadata

# One row per signed-in browser. Only a SHA-256 of the session key is stored, so a copy of
# the table does not let anyone sign in. Times are POSIX seconds (float), as the Redis store's.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("seen", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Index("ix_sessions_user_id", "user_id"),
    sa.Index("ix_sessions_expires", "expires"),
)

# API tokens, stored as SHA-256 hashes; the token itself is shown once, when it is made.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False, server_default=""),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=True),
    sa.Column("last_used", sa.Float, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_api_tokens_user_id", "user_id"),
)

# Failed sign-ins per username ("user:NAME") and per client address ("addr:IP").
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("scope", sa.String(300), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("first", sa.Float, nullable=False),
    sa.Column("last", sa.Float, nullable=False),
)

# Per-group overrides of instance settings; NULL follows the setting (downloads.enabled).
group_options = sa.Table(
    "group_options",
    metadata,
    sa.Column(
        "group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("downloads", sa.Boolean, nullable=True),
)
