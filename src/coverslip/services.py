"""The collaborators every surface (web, thumbnails, CLI) uses, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from coverslip.auth import Auth
from coverslip.cache import RenderCache, settings_tag, thumbnail_key
from coverslip.catalog import Catalog, Image
from coverslip.catalog.base import Timeouts
from coverslip.catalog.cached import CachedCatalog
from coverslip.config import Settings
from coverslip.home import Home
from coverslip.imports import Importer
from coverslip.pixels import PixelStore, Pyramid
from coverslip.render.service import Renderer, thumbnail_size
from coverslip.render.settings import default_def


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
        metadata = CachedCatalog(catalog, home.run / "catalog.stamp")
        catalog.on_change = metadata.touch
        return cls(
            settings=settings,
            home=home,
            catalog=catalog,
            pixels=pixels or PixelStore(home),
            cache=cache or RenderCache(home.cache, enabled=settings["cache.enabled"]),
            metadata=metadata,
            auth=Auth(settings, catalog, metadata, stamp=metadata.stamp),
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
        )

    def default_thumbnail(self, pyramid: Pyramid, image: Image) -> None:
        """Render the thumbnail everyone gets before anyone saves settings, into the cache.

        The key is the one the gateway computes for a plain render_thumbnail request, so the
        first page of a dataset is served without pixel work.
        """
        rdef = default_def(image.channels, image.pixel_type, image.size_z, image.size_t)
        longest = self.settings["thumbs.default_size"]
        size = thumbnail_size(image, longest, None, longest)
        key = thumbnail_key(
            settings_tag(None, image.rdef_version), rdef.default_z, rdef.default_t, *size
        )
        renderer = Renderer(max_pixels=self.settings["render.max_pixels"])
        self.cache.put(
            image.id,
            key,
            renderer.thumbnail(image, pyramid, rdef, rdef.default_z, rdef.default_t, size),
        )

    def delete_image(self, image_id: int) -> None:
        """Delete an image: catalog rows, pyramid, original and cached renders."""
        image = self.catalog.get_image(image_id)
        self.importer().discard(image.id)
        self.pixels.forget(image.id)
