"""Images API queries of the catalog: Glance-style attributes, searches and quotas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coverslip.catalog import api_tables as api
from coverslip.catalog import tables as t
from coverslip.catalog.base import now
from coverslip.catalog.records import ApiFields, Image
from coverslip.errors import BadParameter, NotFound


class ImagesApiQueries:
    """What the images API needs beyond the core image queries (mixed into Catalog)."""

    engine: Engine

    def _changed(self) -> None:
        raise NotImplementedError

    def _images(self, query: sa.Select[Any]) -> list[Image]:
        raise NotImplementedError

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
        scope: sa.ColumnElement[bool] = sa.true()
        if group_ids is not None:
            scope = t.images.c.group_id.in_(list(group_ids))
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
                    # SECURITY: a marker the caller may not see is missing, or its sort
                    # position would leak its name and existence.
                    .where(t.images.c.id == marker, scope)
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
