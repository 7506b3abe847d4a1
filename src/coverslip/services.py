"""The collaborators every surface (web, thumbnails, CLI) uses, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from coverslip.cache import RenderCache
from coverslip.catalog import Catalog
from coverslip.catalog.cached import CachedCatalog
from coverslip.config import Settings
from coverslip.home import Home
from coverslip.imports import Importer
from coverslip.pixels import PixelStore


@dataclass
class Services:
    """Settings, home, catalog, pixel store and render cache of one instance."""

    settings: Settings
    home: Home
    catalog: Catalog
    pixels: PixelStore
    cache: RenderCache
    metadata: CachedCatalog

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
        catalog = catalog or Catalog(home.catalog_url(settings))
        metadata = CachedCatalog(catalog, home.run / "catalog.stamp")
        catalog.on_change = metadata.touch
        return cls(
            settings=settings,
            home=home,
            catalog=catalog,
            pixels=pixels or PixelStore(home),
            cache=cache or RenderCache(home.cache, enabled=settings["cache.enabled"]),
            metadata=metadata,
        )

    def importer(self) -> Importer:
        """Return an importer writing pyramids with the configured tile size and codec."""
        return Importer(
            self.home,
            self.catalog,
            tile=int(self.settings["pixels.tile_size"]),
            codec=self.settings["pixels.codec"],
        )

    def delete_image(self, image_id: int) -> None:
        """Delete an image: catalog rows, pyramid, original and cached renders."""
        image = self.catalog.get_image(image_id)
        self.importer().discard(image.id)
        self.pixels.forget(image.id)
