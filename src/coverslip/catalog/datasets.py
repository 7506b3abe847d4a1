"""Dataset queries of the catalog: named sets of images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coverslip.catalog import tables as t
from coverslip.catalog.base import _as_utc, contains, create_named, owned_scope
from coverslip.catalog.records import MAX_ID, Dataset
from coverslip.errors import NotFound


class DatasetQueries:
    """Create, list and fill datasets (mixed into Catalog)."""

    engine: Engine

    def create_dataset(self, name: str, owner_id: int, group_id: int, description: str = "") -> int:
        """Create a dataset and return its id; a name is unique within a group."""
        return create_named(self.engine, t.datasets, name, owner_id, group_id, description)

    def dataset_by_name(self, name: str, group_id: int | None = None) -> Dataset | None:
        """Return the dataset called ``name`` (in ``group_id`` if given), or None."""
        query = self._dataset_query().where(t.datasets.c.name == name)
        if group_id is not None:
            query = query.where(t.datasets.c.group_id == group_id)
        found = self._datasets(query)
        return found[0] if found else None

    def get_dataset(self, dataset_id: int) -> Dataset:
        """Return the dataset, or raise NotFound."""
        if not 0 <= dataset_id <= MAX_ID:
            raise NotFound(f"dataset {dataset_id} does not exist")
        found = self._datasets(self._dataset_query().where(t.datasets.c.id == dataset_id))
        if not found:
            raise NotFound(f"dataset {dataset_id} does not exist")
        return found[0]

    def list_datasets(
        self,
        group_ids: Sequence[int] | None = None,
        or_owner_id: int | None = None,
        group_id: int | None = None,
        shown: bool = False,
        text_contains: str | None = None,
    ) -> list[Dataset]:
        """Return the datasets in ``group_ids`` (None: every group) or owned by ``or_owner_id``,
        only ``group_id``'s if given, only those whose name or description contains
        ``text_contains`` if given.

        ``image_count`` counts every image in the dataset; when ``shown``, only the active
        ones in the same scope (what the dataset's page shows the same caller).
        """
        shown_images = owned_scope(t.images, group_ids, or_owner_id) if shown else None
        query = self._dataset_query(shown_images, shown)
        scope = owned_scope(t.datasets, group_ids, or_owner_id)
        if scope is not None:
            query = query.where(scope)
        if group_id is not None:
            query = query.where(t.datasets.c.group_id == group_id)
        if text_contains:
            query = query.where(
                contains(t.datasets.c.name, text_contains)
                | contains(t.datasets.c.description, text_contains)
            )
        return self._datasets(query)

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset; its images stay."""
        with self.engine.begin() as conn:
            conn.execute(
                t.dataset_images.delete().where(t.dataset_images.c.dataset_id == dataset_id)
            )
            conn.execute(
                t.project_datasets.delete().where(t.project_datasets.c.dataset_id == dataset_id)
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
    def _dataset_query(
        scope: sa.ColumnElement[bool] | None = None, active: bool = False
    ) -> sa.Select[Any]:
        """Select datasets with the number of their images (``active`` ones, within ``scope``)."""
        count = (
            sa.select(sa.func.count())
            .select_from(
                t.dataset_images.join(t.images, t.images.c.id == t.dataset_images.c.image_id)
            )
            .where(t.dataset_images.c.dataset_id == t.datasets.c.id)
        )
        if active:
            count = count.where(t.images.c.status == "active")
        if scope is not None:
            count = count.where(scope)
        return sa.select(t.datasets, count.scalar_subquery().label("image_count")).order_by(
            t.datasets.c.id
        )

    def _datasets(self, query: sa.Select[Any]) -> list[Dataset]:
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [Dataset(**{**dict(row), "created": _as_utc(row["created"])}) for row in rows]
