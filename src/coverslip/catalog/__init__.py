"""The catalog: metadata of users, groups, datasets and images in SQLite or PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from coverslip.catalog import tables as t
from coverslip.catalog.base import (
    DEFAULT_GROUP,
    LOCAL_ADMIN,
    Timeouts,
    _as_utc,
    _new_id,
    contains,
    make_engine,
    now,
    owned_scope,
)
from coverslip.catalog.datasets import DatasetQueries
from coverslip.catalog.filesets import FilesetQueries, ImageExtras, Plate, well_samples
from coverslip.catalog.glance import ImagesApiQueries
from coverslip.catalog.jobs import JobQueries
from coverslip.catalog.projects import ProjectQueries
from coverslip.catalog.records import MAX_ID, STATUSES, Channel, Dataset, Image, Job, Project
from coverslip.errors import BadParameter, Conflict, NotFound

__all__ = [
    "DEFAULT_GROUP",
    "LOCAL_ADMIN",
    "STATUSES",
    "Catalog",
    "Channel",
    "Dataset",
    "Image",
    "ImageExtras",
    "Job",
    "Plate",
    "Project",
    "make_engine",
    "now",
]


class Catalog(DatasetQueries, ProjectQueries, ImagesApiQueries, FilesetQueries, JobQueries):
    """Queries and updates of the metadata; no HTTP, no pixels."""

    def __init__(
        self,
        url: str,
        migrate: bool = True,
        on_change: Callable[[], None] | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.url = url
        self.engine = make_engine(url, timeouts)
        # Called after every write that changes what an image looks like, so in-process
        # caches elsewhere (in this process or others) can drop what they hold.
        self.on_change = on_change
        if migrate:
            self.migrate()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- schema -------------------------------------------------------------------------

    def _alembic(self, connection: Connection) -> AlembicConfig:
        # PERF: alembic (a quarter of a second) is imported only to check or move the schema.
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option(
            "script_location", str(resources.files("coverslip.catalog") / "migrations")
        )
        cfg.attributes["connection"] = connection
        return cfg

    def migrate(self) -> None:
        """Bring the schema up to the newest migration (cheap when it already is)."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        with self.engine.begin() as connection:
            cfg = self._alembic(connection)
            head = ScriptDirectory.from_config(cfg).get_current_head()
            current = MigrationContext.configure(connection).get_current_revision()
            if current != head:
                command.upgrade(cfg, "head")
                migrated = True
            else:
                migrated = False
        if migrated:
            # NOTE: a migration may switch SQLite connection settings (foreign keys) while it
            # rebuilds tables; pooled connections start afresh with the engine's own.
            self.engine.dispose()

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Raise if the catalog cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    # -- users and groups (the auth layer builds on these) ------------------------------

    def ensure_local_admin(self) -> tuple[int, int]:
        """Return (user id, group id) of the local administrator, creating both if needed."""
        with self.engine.begin() as conn:
            user_id = conn.scalar(sa.select(t.users.c.id).where(t.users.c.username == LOCAL_ADMIN))
            if user_id is None:
                user_id = _new_id(
                    conn.execute(
                        t.users.insert().values(
                            username=LOCAL_ADMIN,
                            full_name="Administrator",
                            is_admin=True,
                            created=now(),
                        )
                    )
                )
            group_id = conn.scalar(sa.select(t.groups.c.id).where(t.groups.c.name == DEFAULT_GROUP))
            if group_id is None:
                group_id = _new_id(
                    conn.execute(
                        t.groups.insert().values(
                            name=DEFAULT_GROUP, permissions="read-only", created=now()
                        )
                    )
                )
                conn.execute(
                    t.group_members.insert().values(
                        group_id=group_id, user_id=user_id, is_owner=True
                    )
                )
        return int(user_id), int(group_id)

    # -- images -------------------------------------------------------------------------

    def create_image(
        self, name: str, owner_id: int, group_id: int, status: str = "queued", **fields: Any
    ) -> int:
        """Insert a new image row and return its id."""
        stamp = now()
        with self.engine.begin() as conn:
            result = conn.execute(
                t.images.insert().values(
                    name=name,
                    status=status,
                    owner_id=owner_id,
                    group_id=group_id,
                    created=stamp,
                    updated=stamp,
                    properties=fields.pop("properties", {}),
                    render_tag=secrets.token_hex(8),
                    **fields,
                )
            )
            return _new_id(result)

    def update_image(self, image_id: int, **fields: Any) -> None:
        """Change fields of an image; raise NotFound if it is gone."""
        if "status" in fields and fields["status"] not in STATUSES:
            raise BadParameter(
                "status", f"{fields['status']!r} is not one of {', '.join(STATUSES)}"
            )
        with self.engine.begin() as conn:
            result = conn.execute(
                t.images.update().where(t.images.c.id == image_id).values(updated=now(), **fields)
            )
            if result.rowcount == 0:
                raise NotFound(f"image {image_id} does not exist")
        self._changed()

    def set_status(
        self, image_id: int, status: str, expect: Sequence[str] | None = None, message: str = ""
    ) -> None:
        """Move an image to ``status``; with ``expect``, only from one of those statuses."""
        if status not in STATUSES:
            raise BadParameter("status", f"{status!r} is not one of {', '.join(STATUSES)}")
        query = t.images.update().where(t.images.c.id == image_id)
        if expect is not None:
            query = query.where(t.images.c.status.in_(list(expect)))
        with self.engine.begin() as conn:
            result = conn.execute(query.values(status=status, message=message, updated=now()))
            if result.rowcount == 0:
                current = conn.scalar(sa.select(t.images.c.status).where(t.images.c.id == image_id))
                if current is None:
                    raise NotFound(f"image {image_id} does not exist")
                raise Conflict(f"image {image_id} is {current}, not {' or '.join(expect or [])}")
        self._changed()

    def set_channels(self, image_id: int, channels: Iterable[Channel]) -> None:
        """Replace the channels of an image."""
        with self.engine.begin() as conn:
            conn.execute(t.channels.delete().where(t.channels.c.image_id == image_id))
            rows = [
                {
                    "image_id": image_id,
                    "index": ch.index,
                    "name": ch.name,
                    "color": ch.color,
                    "emission_wave": ch.emission_wave,
                    "min": ch.min,
                    "max": ch.max,
                    "window_start": ch.window_start,
                    "window_end": ch.window_end,
                }
                for ch in channels
            ]
            if rows:
                conn.execute(t.channels.insert(), rows)
        self._changed()

    def get_image(self, image_id: int) -> Image:
        """Return the image with its channels and datasets, or raise NotFound."""
        if not 0 <= image_id <= MAX_ID:
            raise NotFound(f"image {image_id} does not exist")
        images = self._images(sa.select(t.images).where(t.images.c.id == image_id))
        if not images:
            raise NotFound(f"image {image_id} does not exist")
        return images[0]

    def list_images(
        self,
        dataset_id: int | None = None,
        status: str | None = None,
        owner_id: int | None = None,
        group_ids: Sequence[int] | None = None,
        limit: int | None = None,
        offset: int = 0,
        name_contains: str | None = None,
        text_contains: str | None = None,
        sort: str = "id",
        descending: bool = False,
        or_owner_id: int | None = None,
        group_id: int | None = None,
        in_no_dataset: bool = False,
    ) -> list[Image]:
        """Return images filtered as asked, ordered by ``sort`` (id, name or created).

        With ``group_ids``, only images in those groups, or owned by ``or_owner_id``; with
        ``group_id``, only that group's; with ``in_no_dataset``, only images in no dataset and no well;
        ``name_contains`` matches the name, ``text_contains`` the name or the description.
        """
        query = self._image_filter(
            sa.select(t.images),
            dataset_id=dataset_id,
            status=status,
            owner_id=owner_id,
            group_ids=group_ids,
            name_contains=name_contains,
            text_contains=text_contains,
            or_owner_id=or_owner_id,
            group_id=group_id,
            in_no_dataset=in_no_dataset,
        )
        column = {"id": t.images.c.id, "name": t.images.c.name, "created": t.images.c.created}.get(
            sort
        )
        if column is None:
            raise BadParameter("sort", f"{sort!r} is not one of id, name, created")
        query = query.order_by(column.desc() if descending else column, t.images.c.id)
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return self._images(query)

    def count_images(self, **filters: Any) -> int:
        """Return how many images ``list_images`` would give without a limit, for the same
        filters (``dataset_id``, ``status``, ``owner_id``, ``group_ids``, ``name_contains``,
        ``text_contains``, ``or_owner_id``, ``group_id``, ``in_no_dataset``)."""
        query = self._image_filter(sa.select(sa.func.count()).select_from(t.images), **filters)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    @staticmethod
    def _image_filter(
        query: sa.Select[Any],
        *,
        dataset_id: int | None = None,
        status: str | None = None,
        owner_id: int | None = None,
        group_ids: Sequence[int] | None = None,
        name_contains: str | None = None,
        text_contains: str | None = None,
        or_owner_id: int | None = None,
        group_id: int | None = None,
        in_no_dataset: bool = False,
    ) -> sa.Select[Any]:
        if dataset_id is not None:
            query = query.join(
                t.dataset_images, t.dataset_images.c.image_id == t.images.c.id
            ).where(t.dataset_images.c.dataset_id == dataset_id)
        if in_no_dataset:
            # As OMERO's orphans: in no dataset and not a field of a plate's well.
            linked = sa.select(t.dataset_images.c.image_id).where(
                t.dataset_images.c.image_id == t.images.c.id
            )
            sampled = sa.select(well_samples.c.image_id).where(
                well_samples.c.image_id == t.images.c.id
            )
            query = query.where(~linked.exists(), ~sampled.exists())
        if status is not None:
            query = query.where(t.images.c.status == status)
        if owner_id is not None:
            query = query.where(t.images.c.owner_id == owner_id)
        if group_id is not None:
            query = query.where(t.images.c.group_id == group_id)
        scope = owned_scope(t.images, group_ids, or_owner_id)
        if scope is not None:
            query = query.where(scope)
        if name_contains:
            query = query.where(contains(t.images.c.name, name_contains))
        if text_contains:
            query = query.where(
                contains(t.images.c.name, text_contains)
                | contains(t.images.c.description, text_contains)
            )
        return query

    def find_by_sha512(self, sha512: str) -> int | None:
        """Return the id of the first image (not killed) whose original has this sha512."""
        found = self.ids_by_sha512(sha512)
        return found[0] if found else None

    def ids_by_sha512(self, sha512: str) -> list[int]:
        """Return the ids of the images (not killed) whose original has this sha512."""
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    sa.select(t.images.c.id)
                    .where(t.images.c.sha512 == sha512, t.images.c.status != "killed")
                    .order_by(t.images.c.id)
                )
            )

    def find_by_pyramid_path(self, location: str) -> int | None:
        """Return the id of the first image (not killed) served from ``location``."""
        with self.engine.connect() as conn:
            found = conn.scalar(
                sa.select(t.images.c.id)
                .where(t.images.c.pyramid_path == location, t.images.c.status != "killed")
                .order_by(t.images.c.id)
            )
            return None if found is None else int(found)

    def original_size_exists(self, size: int) -> bool:
        """Return whether an image (not killed) has an original of exactly ``size`` bytes."""
        with self.engine.connect() as conn:
            found = conn.scalar(
                sa.select(t.images.c.id)
                .where(t.images.c.original_size == size, t.images.c.status != "killed")
                .limit(1)
            )
        return found is not None

    def delete_image(self, image_id: int) -> None:
        """Remove an image's rows (channels, memberships and settings go with it)."""
        with self.engine.begin() as conn:
            conn.execute(t.channels.delete().where(t.channels.c.image_id == image_id))
            conn.execute(t.dataset_images.delete().where(t.dataset_images.c.image_id == image_id))
            conn.execute(t.rendering_defs.delete().where(t.rendering_defs.c.image_id == image_id))
            result = conn.execute(t.images.delete().where(t.images.c.id == image_id))
            if result.rowcount == 0:
                raise NotFound(f"image {image_id} does not exist")
        self._changed()

    def _images(self, query: sa.Select[Any]) -> list[Image]:
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            if not rows:
                return []
            ids = [row["id"] for row in rows]
            channels: dict[int, list[Channel]] = {i: [] for i in ids}
            for ch in conn.execute(
                sa.select(t.channels)
                .where(t.channels.c.image_id.in_(ids))
                .order_by(t.channels.c.image_id, t.channels.c.index)
            ).mappings():
                channels[ch["image_id"]].append(
                    Channel(
                        index=ch["index"],
                        name=ch["name"],
                        color=ch["color"],
                        min=ch["min"],
                        max=ch["max"],
                        window_start=ch["window_start"],
                        window_end=ch["window_end"],
                        emission_wave=ch["emission_wave"],
                    )
                )
            datasets: dict[int, list[int]] = {i: [] for i in ids}
            for link in conn.execute(
                sa.select(t.dataset_images)
                .where(t.dataset_images.c.image_id.in_(ids))
                .order_by(t.dataset_images.c.dataset_id)
            ).mappings():
                datasets[link["image_id"]].append(link["dataset_id"])
        result = []
        for row in rows:
            values = dict(row)
            values["created"] = _as_utc(values["created"])
            values["updated"] = _as_utc(values["updated"])
            values["properties"] = values["properties"] or {}
            result.append(
                Image(
                    **values,
                    channels=tuple(channels[row["id"]]),
                    dataset_ids=tuple(datasets[row["id"]]),
                )
            )
        return result

    # -- rendering settings -------------------------------------------------------------

    def get_rdef(self, image_id: int, user_id: int) -> tuple[int, dict[str, Any]] | None:
        """Return (version, settings) that ``user_id`` saved for an image, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.rendering_defs.c.version, t.rendering_defs.c.settings).where(
                    t.rendering_defs.c.image_id == image_id, t.rendering_defs.c.user_id == user_id
                )
            ).first()
        return (int(row.version), dict(row.settings)) if row else None

    @staticmethod
    def _bump_rdef_version(conn: Connection, image_id: int, bump: bool = True) -> int:
        """Return the image's settings version, made new first when ``bump``."""
        # NOTE: versions count per image, not per user: any saved setting makes a new
        # version, so no cached render made before it can answer again.
        latest = conn.scalar(sa.select(t.images.c.rdef_version).where(t.images.c.id == image_id))
        if latest is None:
            raise NotFound(f"image {image_id} does not exist")
        if not bump:
            return int(latest)
        version = int(latest) + 1
        conn.execute(
            t.images.update().where(t.images.c.id == image_id).values(rdef_version=version)
        )
        return version

    def save_rdef(self, image_id: int, user_id: int, settings: dict[str, Any]) -> int:
        """Store a user's settings for an image and return the image's new settings version."""
        with self.engine.begin() as conn:
            version = self._bump_rdef_version(conn, image_id)
            where = (t.rendering_defs.c.image_id == image_id) & (
                t.rendering_defs.c.user_id == user_id
            )
            values = {"version": version, "settings": settings, "updated": now()}
            if conn.execute(t.rendering_defs.update().where(where).values(**values)).rowcount == 0:
                conn.execute(
                    t.rendering_defs.insert().values(image_id=image_id, user_id=user_id, **values)
                )
        self._changed()
        return version

    def delete_rdef(self, image_id: int, user_id: int, bump: bool = True) -> int:
        """Forget a user's settings for an image and return the image's settings version.

        ``bump`` makes a new version, as a save does. Without it the version stays: the
        user's renders were keyed by their own settings, which no longer apply, and everyone
        else's renders are still right (a reader who may not annotate must not be able to
        drop every cached render and ETag of an image).
        """
        with self.engine.begin() as conn:
            version = self._bump_rdef_version(conn, image_id, bump)
            conn.execute(
                t.rendering_defs.delete().where(
                    t.rendering_defs.c.image_id == image_id, t.rendering_defs.c.user_id == user_id
                )
            )
        self._changed()
        return version
