"""The catalog: metadata of users, groups, datasets and images in SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from coverslip.catalog import api_tables as api
from coverslip.catalog import tables as t
from coverslip.catalog.records import STATUSES, ApiFields, Channel, Dataset, Image, Task
from coverslip.errors import BadParameter, Conflict, NotFound

__all__ = ["Catalog", "Channel", "Dataset", "Image", "STATUSES"]

LOCAL_ADMIN = "admin"
DEFAULT_GROUP = "default"


def now() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # NOTE: WAL lets the web workers read while an import writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Return an engine for ``url``, with SQLite set up for many processes."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True)


def _new_id(result: sa.CursorResult[Any]) -> int:
    """Return the primary key of the row an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _as_utc(value: datetime) -> datetime:
    # NOTE: SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Catalog:
    """Queries and updates of the metadata; no HTTP, no pixels."""

    def __init__(
        self, url: str, migrate: bool = True, on_change: Callable[[], None] | None = None
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
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
        cfg = AlembicConfig()
        cfg.set_main_option(
            "script_location", str(resources.files("coverslip.catalog") / "migrations")
        )
        cfg.attributes["connection"] = connection
        return cfg

    def migrate(self) -> None:
        """Bring the schema up to the newest migration (cheap when it already is)."""
        with self.engine.begin() as connection:
            cfg = self._alembic(connection)
            head = ScriptDirectory.from_config(cfg).get_current_head()
            current = MigrationContext.configure(connection).get_current_revision()
            if current != head:
                command.upgrade(cfg, "head")

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
        sort: str = "id",
        descending: bool = False,
    ) -> list[Image]:
        """Return images filtered as asked, ordered by ``sort`` (id, name or created)."""
        query = self._image_filter(
            sa.select(t.images), dataset_id, status, owner_id, group_ids, name_contains
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

    def count_images(
        self,
        dataset_id: int | None = None,
        status: str | None = None,
        owner_id: int | None = None,
        group_ids: Sequence[int] | None = None,
        name_contains: str | None = None,
    ) -> int:
        """Return how many images ``list_images`` would give without a limit."""
        query = self._image_filter(
            sa.select(sa.func.count()).select_from(t.images),
            dataset_id,
            status,
            owner_id,
            group_ids,
            name_contains,
        )
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    @staticmethod
    def _image_filter(
        query: sa.Select[Any],
        dataset_id: int | None,
        status: str | None,
        owner_id: int | None,
        group_ids: Sequence[int] | None,
        name_contains: str | None,
    ) -> sa.Select[Any]:
        if dataset_id is not None:
            query = query.join(
                t.dataset_images, t.dataset_images.c.image_id == t.images.c.id
            ).where(t.dataset_images.c.dataset_id == dataset_id)
        if status is not None:
            query = query.where(t.images.c.status == status)
        if owner_id is not None:
            query = query.where(t.images.c.owner_id == owner_id)
        if group_ids is not None:
            query = query.where(t.images.c.group_id.in_(list(group_ids)))
        if name_contains:
            escaped = name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(t.images.c.name.ilike(f"%{escaped}%", escape="\\"))
        return query

    def find_by_sha512(self, sha512: str) -> int | None:
        """Return the id of an image (not killed) whose original has this sha512."""
        with self.engine.connect() as conn:
            return conn.scalar(
                sa.select(t.images.c.id)
                .where(t.images.c.sha512 == sha512, t.images.c.status != "killed")
                .order_by(t.images.c.id)
                .limit(1)
            )

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
    def _bump_rdef_version(conn: Connection, image_id: int) -> int:
        # NOTE: versions count per image, not per user: any saved or reset setting makes a
        # new version, so no cached render made before it can answer again.
        latest = conn.scalar(sa.select(t.images.c.rdef_version).where(t.images.c.id == image_id))
        if latest is None:
            raise NotFound(f"image {image_id} does not exist")
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

    def delete_rdef(self, image_id: int, user_id: int) -> int:
        """Forget a user's settings for an image and return the image's new settings version."""
        with self.engine.begin() as conn:
            version = self._bump_rdef_version(conn, image_id)
            conn.execute(
                t.rendering_defs.delete().where(
                    t.rendering_defs.c.image_id == image_id, t.rendering_defs.c.user_id == user_id
                )
            )
        self._changed()
        return version

    # -- datasets -----------------------------------------------------------------------

    def create_dataset(self, name: str, owner_id: int, group_id: int, description: str = "") -> int:
        """Create a dataset and return its id; a name is unique within a group."""
        if not name.strip():
            raise BadParameter("name", "a dataset needs a name")
        with self.engine.begin() as conn:
            existing = conn.scalar(
                sa.select(t.datasets.c.id).where(
                    t.datasets.c.name == name, t.datasets.c.group_id == group_id
                )
            )
            if existing is not None:
                raise Conflict(f"dataset {name!r} exists already (id {existing})")
            result = conn.execute(
                t.datasets.insert().values(
                    name=name,
                    description=description,
                    owner_id=owner_id,
                    group_id=group_id,
                    created=now(),
                )
            )
            return _new_id(result)

    def dataset_by_name(self, name: str, group_id: int | None = None) -> Dataset | None:
        """Return the dataset called ``name`` (in ``group_id`` if given), or None."""
        query = self._dataset_query().where(t.datasets.c.name == name)
        if group_id is not None:
            query = query.where(t.datasets.c.group_id == group_id)
        found = self._datasets(query)
        return found[0] if found else None

    def get_dataset(self, dataset_id: int) -> Dataset:
        found = self._datasets(self._dataset_query().where(t.datasets.c.id == dataset_id))
        if not found:
            raise NotFound(f"dataset {dataset_id} does not exist")
        return found[0]

    def list_datasets(self, group_ids: Sequence[int] | None = None) -> list[Dataset]:
        query = self._dataset_query()
        if group_ids is not None:
            query = query.where(t.datasets.c.group_id.in_(list(group_ids)))
        return self._datasets(query)

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset; its images stay."""
        with self.engine.begin() as conn:
            conn.execute(
                t.dataset_images.delete().where(t.dataset_images.c.dataset_id == dataset_id)
            )
            if conn.execute(t.datasets.delete().where(t.datasets.c.id == dataset_id)).rowcount == 0:
                raise NotFound(f"dataset {dataset_id} does not exist")

    def add_to_dataset(self, dataset_id: int, image_ids: Iterable[int]) -> None:
        """Put images in a dataset (already there is fine)."""
        self.get_dataset(dataset_id)
        with self.engine.begin() as conn:
            for image_id in image_ids:
                if conn.scalar(sa.select(t.images.c.id).where(t.images.c.id == image_id)) is None:
                    raise NotFound(f"image {image_id} does not exist")
                present = conn.scalar(
                    sa.select(sa.func.count()).where(
                        t.dataset_images.c.dataset_id == dataset_id,
                        t.dataset_images.c.image_id == image_id,
                    )
                )
                if not present:
                    conn.execute(
                        t.dataset_images.insert().values(dataset_id=dataset_id, image_id=image_id)
                    )

    def remove_from_dataset(self, dataset_id: int, image_ids: Iterable[int]) -> None:
        self.get_dataset(dataset_id)
        with self.engine.begin() as conn:
            conn.execute(
                t.dataset_images.delete().where(
                    t.dataset_images.c.dataset_id == dataset_id,
                    t.dataset_images.c.image_id.in_(list(image_ids)),
                )
            )

    @staticmethod
    def _dataset_query() -> sa.Select[Any]:
        count = (
            sa.select(sa.func.count())
            .where(t.dataset_images.c.dataset_id == t.datasets.c.id)
            .scalar_subquery()
            .label("image_count")
        )
        return sa.select(t.datasets, count).order_by(t.datasets.c.id)

    def _datasets(self, query: sa.Select[Any]) -> list[Dataset]:
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [Dataset(**{**dict(row), "created": _as_utc(row["created"])}) for row in rows]

    # -- images API: Glance-style attributes, tags, tasks ------------------------------

    def api_fields(self, image_ids: Sequence[int]) -> dict[int, ApiFields]:
        """Return the images API attributes of each image (defaults where none are stored)."""
        found = {image_id: ApiFields() for image_id in image_ids}
        if not found:
            return found
        ids = list(found)
        with self.engine.connect() as conn:
            tags: dict[int, list[str]] = {i: [] for i in ids}
            for row in conn.execute(
                sa.select(api.image_tags)
                .where(api.image_tags.c.image_id.in_(ids))
                .order_by(api.image_tags.c.tag)
            ).mappings():
                tags[row["image_id"]].append(row["tag"])
            for row in conn.execute(
                sa.select(api.image_api).where(api.image_api.c.image_id.in_(ids))
            ).mappings():
                values = dict(row)
                image_id = values.pop("image_id")
                found[image_id] = ApiFields(**values)
        return {i: replace(fields, tags=tuple(tags[i])) for i, fields in found.items()}

    def set_api_fields(self, image_id: int, **fields: Any) -> None:
        """Store images API attributes (and ``tags``, a list) of an image."""
        tags = fields.pop("tags", None)
        with self.engine.begin() as conn:
            if conn.scalar(sa.select(t.images.c.id).where(t.images.c.id == image_id)) is None:
                raise NotFound(f"image {image_id} does not exist")
            if fields:
                where = api.image_api.c.image_id == image_id
                if conn.execute(api.image_api.update().where(where).values(**fields)).rowcount == 0:
                    conn.execute(api.image_api.insert().values(image_id=image_id, **fields))
            if tags is not None:
                conn.execute(api.image_tags.delete().where(api.image_tags.c.image_id == image_id))
                if tags:
                    conn.execute(
                        api.image_tags.insert(),
                        [{"image_id": image_id, "tag": tag} for tag in tags],
                    )
            conn.execute(t.images.update().where(t.images.c.id == image_id).values(updated=now()))
        self._changed()

    def search_images(
        self,
        filters: dict[str, Any],
        sort: Sequence[tuple[str, bool]],
        limit: int,
        marker: int | None = None,
        group_ids: Sequence[int] | None = None,
        or_owner_id: int | None = None,
    ) -> list[Image]:
        """Return a page of images for the images API, keyset-paginated after ``marker``.

        ``filters`` may hold name, status, md5, sha512, owner_id, dataset_id, tags (all must match),
        size_min, size_max, in_group_ids, not_group_ids, os_hidden. ``sort`` is a list of
        (key, descending) with keys from SEARCH_SORT_KEYS; the id breaks ties. Only images in
        ``group_ids`` (None: any group) or owned by ``or_owner_id`` are considered.
        """
        query = sa.select(t.images).outerjoin(
            api.image_api, api.image_api.c.image_id == t.images.c.id
        )
        if group_ids is not None:
            scope: sa.ColumnElement[bool] = t.images.c.group_id.in_(list(group_ids))
            if or_owner_id is not None:
                scope = scope | (t.images.c.owner_id == or_owner_id)
            query = query.where(scope)
        query = self._search_filters(query, filters)
        keys = [(SEARCH_SORT_KEYS[key], desc) for key, desc in sort]
        if not any(key is SEARCH_SORT_KEYS["id"] for key, _ in keys):
            keys.append((SEARCH_SORT_KEYS["id"], keys[-1][1] if keys else True))
        if marker is not None:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(*(key for key, _ in keys))
                    .select_from(t.images)
                    .outerjoin(api.image_api, api.image_api.c.image_id == t.images.c.id)
                    .where(t.images.c.id == marker)
                ).first()
            if row is None:
                raise BadParameter("marker", f"image {marker} does not exist")
            query = query.where(_after(keys, list(row)))
        query = query.order_by(*(key.desc() if desc else key.asc() for key, desc in keys))
        return self._images(query.limit(limit))

    @staticmethod
    def _search_filters(query: sa.Select[Any], filters: dict[str, Any]) -> sa.Select[Any]:
        images = t.images.c
        if "name" in filters:
            query = query.where(images.name == filters["name"])
        if "status" in filters:
            query = query.where(images.status == filters["status"])
        if "md5" in filters:
            query = query.where(images.md5 == filters["md5"])
        if "sha512" in filters:
            query = query.where(images.sha512 == filters["sha512"])
        if "owner_id" in filters:
            query = query.where(images.owner_id == filters["owner_id"])
        if "size_min" in filters:
            query = query.where(images.original_size >= filters["size_min"])
        if "size_max" in filters:
            query = query.where(images.original_size <= filters["size_max"])
        if "in_group_ids" in filters:
            query = query.where(images.group_id.in_(list(filters["in_group_ids"])))
        if "not_group_ids" in filters:
            query = query.where(images.group_id.not_in(list(filters["not_group_ids"])))
        if "os_hidden" in filters:
            hidden = sa.func.coalesce(api.image_api.c.os_hidden, sa.false())
            query = query.where(hidden == bool(filters["os_hidden"]))
        if "dataset_id" in filters:
            member = sa.select(t.dataset_images.c.image_id).where(
                t.dataset_images.c.dataset_id == filters["dataset_id"]
            )
            query = query.where(images.id.in_(member))
        for tag in filters.get("tags", ()):
            tagged = sa.select(api.image_tags.c.image_id).where(api.image_tags.c.tag == tag)
            query = query.where(images.id.in_(tagged))
        return query

    def used_bytes(self, owner_id: int, exclude: int | None = None) -> int:
        """Return the bytes of originals ``owner_id`` keeps (images not killed), bar ``exclude``."""
        query = sa.select(sa.func.coalesce(sa.func.sum(t.images.c.original_size), 0)).where(
            t.images.c.owner_id == owner_id, t.images.c.status != "killed"
        )
        if exclude is not None:
            query = query.where(t.images.c.id != exclude)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def create_task(
        self,
        task_id: str,
        image_id: int,
        kind: str,
        task_input: dict[str, Any],
        user_id: int | None,
    ) -> None:
        """Record a new pending import task of an image."""
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(
                api.image_tasks.insert().values(
                    id=task_id,
                    image_id=image_id,
                    type=kind,
                    status="pending",
                    message="",
                    input=task_input,
                    user_id=user_id,
                    created=stamp,
                    updated=stamp,
                )
            )

    def update_task(self, task_id: str, status: str, message: str = "") -> None:
        """Move a task to ``status`` with a message (a gone task is ignored)."""
        with self.engine.begin() as conn:
            conn.execute(
                api.image_tasks.update()
                .where(api.image_tasks.c.id == task_id)
                .values(status=status, message=message, updated=now())
            )

    def list_tasks(self, image_id: int) -> list[Task]:
        """Return the import tasks of an image, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(api.image_tasks)
                .where(api.image_tasks.c.image_id == image_id)
                .order_by(api.image_tasks.c.created.desc(), api.image_tasks.c.id)
            ).mappings()
            return [
                Task(
                    **{
                        **dict(row),
                        "created": _as_utc(row["created"]),
                        "updated": _as_utc(row["updated"]),
                    }
                )
                for row in rows
            ]


# Sort keys of `search_images`; NULLs read as "" or -1 so that keyset pagination compares.
SEARCH_SORT_KEYS: dict[str, sa.ColumnElement[Any]] = {
    "id": t.images.c.id,
    "name": t.images.c.name,
    "status": t.images.c.status,
    "created_at": t.images.c.created,
    "updated_at": t.images.c.updated,
    "size": sa.func.coalesce(t.images.c.original_size, -1),
    "disk_format": sa.func.coalesce(api.image_api.c.disk_format, ""),
    "container_format": sa.func.coalesce(api.image_api.c.container_format, ""),
}


def _after(keys: Sequence[tuple[sa.ColumnElement[Any], bool]], values: Sequence[Any]) -> Any:
    """Return the condition "sorts after the row whose sort values are ``values``"."""
    clauses = []
    for i, (key, desc) in enumerate(keys):
        equal = [keys[j][0] == values[j] for j in range(i)]
        beyond = key < values[i] if desc else key > values[i]
        clauses.append(sa.and_(*equal, beyond))
    return sa.or_(*clauses)
