"""The instance home: where the catalog, pixels, originals, cache, logs and pid files live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from coverslip import config


def default_home() -> Path:
    """Return ``./var`` beside a source checkout, else ``~/.local/share/coverslip``."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists() and (checkout / "src" / "coverslip").is_dir():
        return checkout / "var"
    return Path.home() / ".local" / "share" / "coverslip"


@dataclass(frozen=True)
class Home:
    """The paths of one Coverslip instance."""

    root: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Home:
        """Return the home named by COVERSLIP_HOME, or the default one."""
        env = os.environ if environ is None else environ
        value = env.get("COVERSLIP_HOME")
        return cls(Path(value).resolve() if value else default_home())

    @property
    def config_file(self) -> Path:
        return self.root / "etc" / "coverslip.toml"

    @property
    def catalog_file(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def pixels(self) -> Path:
        return self.root / "pixels"

    @property
    def originals(self) -> Path:
        return self.root / "originals"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    def create(self) -> Home:
        """Make every folder of the home, and return it."""
        for path in (
            self.root / "etc",
            self.pixels,
            self.originals,
            self.cache,
            self.log,
            self.run,
            self.staging,
        ):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def pyramid(self, image_id: int) -> Path:
        return self.pixels / f"{image_id}.ome.zarr"

    def original_dir(self, image_id: int) -> Path:
        return self.originals / str(image_id)

    def fileset_dir(self, fileset_id: int) -> Path:
        """Return where a fileset's originals are kept; its images' folders link to it."""
        return self.originals / f"fileset-{fileset_id}"

    def settings(
        self, environ: dict[str, str] | None = None, flags: dict[str, object] | None = None
    ) -> config.Settings:
        """Return the settings of this home: defaults < file < environment < flags."""
        return config.load(self.config_file, environ, flags)

    def catalog_url(self, settings: config.Settings) -> str:
        """Return the catalog's SQLAlchemy URL: db.url, else the embedded SQLite file."""
        return settings["db.url"] or f"sqlite:///{self.catalog_file}"
