"""Project queries of the catalog: named sets of datasets, the top of OMERO's hierarchy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coverslip.catalog import tables as t
from coverslip.catalog.base import _as_utc, contains, create_named, owned_scope
from coverslip.catalog.records import MAX_ID, Project
from coverslip.errors import NotFound


class ProjectQueries:
    """Create, list and fill projects (mixed into Catalog)."""

    engine: Engine

    def create_project(self, name: str, owner_id: int, group_id: int, description: str = "") -> int:
        """Create a project and return its id; a name is unique within a group."""
        return create_named(self.engine, t.projects, name, owner_id, group_id, description)

    def project_by_name(self, name: str, group_id: int) -> Project | None:
        """Return the project called ``name`` in ``group_id``, or None."""
        found = self._projects(
            sa.select(t.projects).where(
                t.projects.c.name == name, t.projects.c.group_id == group_id
            )
        )
        return found[0] if found else None

    def get_project(self, project_id: int) -> Project:
        """Return the project, or raise NotFound."""
        if 0 <= project_id <= MAX_ID:
            found = self._projects(sa.select(t.projects).where(t.projects.c.id == project_id))
            if found:
                return found[0]
        raise NotFound(f"project {project_id} does not exist")

    def list_projects(
        self,
        group_ids: Sequence[int] | None = None,
        or_owner_id: int | None = None,
        group_id: int | None = None,
        text_contains: str | None = None,
    ) -> list[Project]:
        """Return the projects in ``group_ids`` (None: every group) or owned by
        ``or_owner_id``, only ``group_id``'s if given, only those whose name or description
        contains ``text_contains`` if given (the filters of ``list_datasets``)."""
        query = sa.select(t.projects)
        scope = owned_scope(t.projects, group_ids, or_owner_id)
        if scope is not None:
            query = query.where(scope)
        if group_id is not None:
            query = query.where(t.projects.c.group_id == group_id)
        if text_contains:
            query = query.where(
                contains(t.projects.c.name, text_contains)
                | contains(t.projects.c.description, text_contains)
            )
        return self._projects(query)

    def project_ids_of(self, dataset_ids: Iterable[int]) -> dict[int, list[int]]:
        """Return, for each dataset, the projects it is in (datasets in none are left out)."""
        wanted = list(dataset_ids)
        found: dict[int, list[int]] = {}
        with self.engine.connect() as conn:
            for link in conn.execute(
                sa.select(t.project_datasets)
                .where(t.project_datasets.c.dataset_id.in_(wanted))
                .order_by(t.project_datasets.c.project_id)
            ).mappings():
                found.setdefault(link["dataset_id"], []).append(link["project_id"])
        return found

    def add_to_project(self, project_id: int, dataset_ids: Iterable[int]) -> None:
        """Put datasets in a project (already there is fine); a dataset may be in several."""
        self.get_project(project_id)
        with self.engine.begin() as conn:
            for dataset_id in dataset_ids:
                exists = sa.select(t.datasets.c.id).where(t.datasets.c.id == dataset_id)
                if conn.scalar(exists) is None:
                    raise NotFound(f"dataset {dataset_id} does not exist")
                present = conn.scalar(
                    sa.select(sa.func.count()).where(
                        t.project_datasets.c.project_id == project_id,
                        t.project_datasets.c.dataset_id == dataset_id,
                    )
                )
                if not present:
                    conn.execute(
                        t.project_datasets.insert().values(
                            project_id=project_id, dataset_id=dataset_id
                        )
                    )

    def remove_from_project(self, project_id: int, dataset_ids: Iterable[int]) -> None:
        """Take datasets out of a project (the datasets stay)."""
        self.get_project(project_id)
        with self.engine.begin() as conn:
            conn.execute(
                t.project_datasets.delete().where(
                    t.project_datasets.c.project_id == project_id,
                    t.project_datasets.c.dataset_id.in_(list(dataset_ids)),
                )
            )

    def delete_project(self, project_id: int) -> None:
        """Delete a project; its datasets stay."""
        with self.engine.begin() as conn:
            conn.execute(
                t.project_datasets.delete().where(t.project_datasets.c.project_id == project_id)
            )
            if conn.execute(t.projects.delete().where(t.projects.c.id == project_id)).rowcount == 0:
                raise NotFound(f"project {project_id} does not exist")

    def _projects(self, query: sa.Select[Any]) -> list[Project]:
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.projects.c.name, t.projects.c.id)).mappings().all()
            links: dict[int, list[int]] = {row["id"]: [] for row in rows}
            if links:
                for link in conn.execute(
                    sa.select(t.project_datasets)
                    .where(t.project_datasets.c.project_id.in_(list(links)))
                    .order_by(t.project_datasets.c.dataset_id)
                ).mappings():
                    links[link["project_id"]].append(link["dataset_id"])
        return [
            Project(
                **{**dict(row), "created": _as_utc(row["created"])},
                dataset_ids=tuple(links[row["id"]]),
            )
            for row in rows
        ]
