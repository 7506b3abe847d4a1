"""Catalog queries of background jobs: create, claim, renew, finish, list.

Every change a running attempt makes names its claim token, so an attempt whose lease ran
out (its worker was killed, or stalled) cannot overwrite the attempt that replaced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coverslip.catalog import tables as t
from coverslip.catalog.base import _as_utc, now
from coverslip.catalog.records import LIVE_JOB_STATES, Job
from coverslip.errors import NotFound

_TIMES = ("created", "updated", "started", "finished", "lease_until")


def _job(row: Any) -> Job:
    values = dict(row)
    for name in _TIMES:
        if values[name] is not None:
            values[name] = _as_utc(values[name])
    values["images"] = tuple(values["images"] or ())
    return Job(**values)


class JobQueries:
    """The catalog's jobs table."""

    engine: Engine

    def create_job(
        self,
        job_id: str,
        kind: str,
        image_id: int | None,
        job_input: dict[str, Any],
        user_id: int | None,
        max_attempts: int,
        state: str = "queued",
        request_id: str = "",
    ) -> None:
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(
                t.jobs.insert().values(
                    id=job_id,
                    kind=kind,
                    state=state,
                    image_id=image_id,
                    images=[] if image_id is None else [image_id],
                    user_id=user_id,
                    input=job_input,
                    max_attempts=max_attempts,
                    request_id=request_id[:64],
                    created=stamp,
                    updated=stamp,
                )
            )

    def get_job(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return _job(row)

    def list_jobs(
        self,
        states: Sequence[str] | None = None,
        user_id: int | None = None,
        image_id: int | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Return jobs, newest first, filtered by state, user and image."""
        query = sa.select(t.jobs).order_by(t.jobs.c.created.desc(), t.jobs.c.id).limit(limit)
        if states is not None:
            query = query.where(t.jobs.c.state.in_(list(states)))
        if user_id is not None:
            query = query.where(t.jobs.c.user_id == user_id)
        if image_id is not None:
            query = query.where(t.jobs.c.image_id == image_id)
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def count_jobs(self) -> dict[str, int]:
        """Return the number of jobs in each state."""
        query = sa.select(t.jobs.c.state, sa.func.count()).group_by(t.jobs.c.state)
        with self.engine.connect() as conn:
            return {state: int(n) for state, n in conn.execute(query)}

    def set_job(self, job_id: str, holder: str | None = None, **values: Any) -> bool:
        """Change a job (only while the claim ``holder`` holds it, when given); tell whether it changed."""
        query = t.jobs.update().where(t.jobs.c.id == job_id)
        if holder is not None:
            query = query.where(t.jobs.c.claim == holder)
        with self.engine.begin() as conn:
            return bool(conn.execute(query.values(updated=now(), **values)).rowcount)

    def move_job(self, job_id: str, expect: Sequence[str], **values: Any) -> bool:
        """Change a job only from one of the states ``expect``; tell whether it changed."""
        query = t.jobs.update().where(t.jobs.c.id == job_id, t.jobs.c.state.in_(list(expect)))
        with self.engine.begin() as conn:
            return bool(conn.execute(query.values(updated=now(), **values)).rowcount)

    def claim_job(self, job_id: str, claim: str, worker: str, lease: float) -> Job | None:
        """Take a queued job for one attempt; return it, or None if it is not queued."""
        stamp = now()
        query = (
            t.jobs.update()
            .where(t.jobs.c.id == job_id, t.jobs.c.state == "queued", t.jobs.c.cancel.is_(False))
            .values(
                state="running",
                claim=claim,
                worker=worker[:200],
                attempts=t.jobs.c.attempts + 1,
                lease_until=stamp + timedelta(seconds=lease),
                started=sa.func.coalesce(t.jobs.c.started, stamp),
                updated=stamp,
            )
        )
        with self.engine.begin() as conn:
            if not conn.execute(query).rowcount:
                return None
        return self.get_job(job_id)

    def renew_job(self, job_id: str, claim: str | None, lease: float, **values: Any) -> Job | None:
        """Extend a running attempt's lease (with progress); None if the attempt lost its job."""
        until = now() + timedelta(seconds=lease)
        if not self.set_job(job_id, claim, lease_until=until, **values):
            return None
        return self.get_job(job_id)

    def add_job_image(self, job_id: str, image_id: int) -> None:
        """Record that the job created or imports ``image_id`` as well."""
        with self.engine.begin() as conn:
            images = conn.scalar(sa.select(t.jobs.c.images).where(t.jobs.c.id == job_id))
            if images is not None and image_id not in images:
                conn.execute(
                    t.jobs.update()
                    .where(t.jobs.c.id == job_id)
                    .values(images=[*images, image_id], updated=now())
                )

    def add_job_fileset(self, job_id: str, fileset_id: int) -> None:
        """Record in the job's input that it made fileset ``fileset_id`` (to undo it if need be)."""
        with self.engine.begin() as conn:
            values = conn.scalar(sa.select(t.jobs.c.input).where(t.jobs.c.id == job_id))
            if values is not None:
                made = [*values.get("filesets", []), fileset_id]
                conn.execute(
                    t.jobs.update()
                    .where(t.jobs.c.id == job_id)
                    .values(input={**values, "filesets": made}, updated=now())
                )

    def expired_jobs(self, at: datetime | None = None) -> list[Job]:
        """Return live jobs whose lease ran out (their worker or request is gone)."""
        query = sa.select(t.jobs).where(
            t.jobs.c.state.in_(["receiving", "running"]),
            t.jobs.c.lease_until < (at or now()),
        )
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def images_in_flight(self, quiet_for: float) -> list[tuple[int, str]]:
        """Return (id, status) of images saving or importing that no live job holds.

        Images changed in the last ``quiet_for`` seconds are left out: their job may be a
        moment away from being recorded.
        """
        with self.engine.connect() as conn:
            held: set[int] = set()
            for images in conn.scalars(
                sa.select(t.jobs.c.images).where(t.jobs.c.state.in_(list(LIVE_JOB_STATES)))
            ):
                held.update(images or ())
            rows = conn.execute(
                sa.select(t.images.c.id, t.images.c.status).where(
                    t.images.c.status.in_(["saving", "importing"]),
                    t.images.c.updated < now() - timedelta(seconds=quiet_for),
                )
            ).all()
        return [(image_id, status) for image_id, status in rows if image_id not in held]
