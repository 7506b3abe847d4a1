"""The collaborators every surface (web, thumbnails, CLI) uses, built once from the settings."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from coverslip.auth import Auth
from coverslip.auth.fresh import make_stamp
from coverslip.cache import RenderCache, redis_url
from coverslip.catalog import Catalog, Image, Job
from coverslip.catalog.base import Timeouts
from coverslip.catalog.cached import CachedCatalog
from coverslip.config import Settings
from coverslip.home import Home
from coverslip.imports import Importer
from coverslip.jobs import Attempt, Jobs
from coverslip.pixels import PixelStore, Pyramid
from coverslip.pixels.objects import ObjectStore, join
from coverslip.render.app import RenderService
from coverslip.render.source import Sources


@dataclass
class Services:
    """Settings, home, catalog, pixel store and render cache of one instance."""

    settings: Settings
    home: Home
    catalog: Catalog
    pixels: PixelStore
    cache: RenderCache
    metadata: CachedCatalog
    auth: Auth

    @classmethod
    def build(
        cls,
        settings: Settings,
        home: Home,
        catalog: Catalog | None = None,
        pixels: PixelStore | None = None,
        cache: RenderCache | None = None,
    ) -> Services:
        """Return the services, creating whichever collaborator was not passed in."""
        home.create()
        catalog = catalog or Catalog(
            home.catalog_url(settings), timeouts=Timeouts.from_settings(settings)
        )
        stamp = home.run / "catalog.stamp"
        signal_url = redis_url(settings) if settings["cache.backend"] == "redis" else None
        metadata = CachedCatalog(catalog, make_stamp(stamp, signal_url))
        catalog.on_change = metadata.touch
        return cls(
            settings=settings,
            home=home,
            catalog=catalog,
            pixels=pixels or PixelStore(home, ObjectStore.from_settings(settings)),
            cache=cache or RenderCache.from_settings(home.cache, settings),
            metadata=metadata,
            auth=Auth(settings, catalog, metadata, stamp=stamp, signal_url=signal_url),
        )

    def importer(self) -> Importer:
        """Return an importer writing pyramids with the configured tile size and codec."""
        return Importer(
            self.home,
            self.catalog,
            tile=int(self.settings["pixels.tile_size"]),
            codec=self.settings["pixels.codec"],
            thumbnailer=self.default_thumbnail if self.settings["imports.thumbnail"] else None,
            cache=self.cache,
            objects=self.pixels.objects,
        )

    @cached_property
    def render(self) -> RenderService:
        """Return the render service every surface renders through (gateway, IIIF, imports)."""
        return RenderService(
            self.metadata,
            self.pixels,
            self.cache,
            visible=self.auth.visible_image,
            is_public=self.auth.is_public,
            max_pixels=self.settings["render.max_pixels"],
            thumbnail_default=self.settings["thumbs.default_size"],
            iiif_jpeg=(
                self.settings["iiif.jpeg_quality"] / 100,
                self.settings["iiif.jpeg_chroma"] == "4:4:4",
            ),
            sources=(
                Sources(self.original, self.pixels.objects)
                if self.settings["render.source_tiles"]
                else None
            ),
        )

    def original(self, image: Image) -> Path | str | None:
        """Return where the original file of ``image`` is kept: a file, a store URL, or None.

        A store URL is not checked here (that is a request to the store); the sender asks.
        """
        if not image.original_name:
            return None
        local = self.home.original_dir(image.id) / image.original_name
        if local.is_file():
            return local
        objects = self.pixels.objects
        fileset_id = self.catalog.fileset_of(image.id) if objects is not None else None
        if objects is None or fileset_id is None:
            return None
        return join(objects.fileset(fileset_id), image.original_name)

    def default_thumbnail(self, pyramid: Pyramid, image: Image) -> None:
        """Render the thumbnail everyone gets before anyone saves settings, into the cache.

        The key is the one the gateway computes for a plain render_thumbnail request, so the
        first page of a dataset is served without pixel work.
        """
        self.render.default_thumbnail(pyramid, image)

    @cached_property
    def jobs(self) -> Jobs:
        """Return the background jobs: imports of received bytes and deleting files."""
        from coverslip.uploads import IMPORT_KINDS, Uploads

        uploads = Uploads(self)
        handlers: dict[str, Any] = {kind: uploads for kind in IMPORT_KINDS}
        handlers["delete_files"] = DeleteFiles(self)
        return Jobs(self.settings, self.home, self.catalog, handlers)

    def delete_image(self, image_id: int, background: bool = False) -> None:
        """Delete an image: its catalog rows now, its files (pyramid, original, cached
        renders, staged bytes) in a job, run in this process unless ``background`` (the web)."""
        image = self.catalog.get_image(image_id)
        fileset_id = self.catalog.fileset_of(image.id)
        self.catalog.delete_image(image.id)
        self.pixels.forget(image.id)
        last = fileset_id is not None and not self.catalog.get_fileset(fileset_id).image_ids
        if last:
            assert fileset_id is not None
            self.catalog.delete_fileset(fileset_id)
        job_input = {"fileset_id": fileset_id if last else None}
        if background:
            self.jobs.submit("delete_files", image.id, job_input)
        else:
            self.jobs.run(self.jobs.record("delete_files", image.id, job_input))


@dataclass
class DeleteFiles:
    """The job that removes the files of a deleted image (and of its fileset, if the last)."""

    services: Services

    def run(self, job: Job, attempt: Attempt) -> None:
        assert job.image_id is not None
        home = self.services.home
        for suffix in ("upload", "staged"):
            (home.staging / f"{job.image_id}.{suffix}").unlink(missing_ok=True)
        shutil.rmtree(home.staging / f"{job.image_id}.zarr", ignore_errors=True)
        importer = self.services.importer()
        importer.remove_files(job.image_id)
        if job.input.get("fileset_id") is not None:
            importer.remove_fileset_files(int(job.input["fileset_id"]))

    def abandon(self, job: Job, reason: str) -> None:
        """Nothing to undo: the files stay for `coverslip check` to report."""

    def retryable(self, job: Job) -> str | None:
        return None
