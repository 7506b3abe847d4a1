"""The render service below web/: what it imports, and that every surface renders through it."""

from __future__ import annotations

import subprocess
import sys


def _loads(statement: str, module: str) -> bool:
    """Return whether running ``statement`` in a fresh interpreter loads ``module``."""
    code = f"import sys\n{statement}\nprint({module!r} in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return out.strip() == "True"


def test_pixels_and_render_do_not_load_the_database() -> None:
    assert not _loads("import coverslip.render.service, coverslip.pixels.pyramid", "sqlalchemy")
    assert not _loads("import coverslip.pixels", "sqlalchemy")


def test_the_image_record_is_one_type_wherever_it_is_imported() -> None:
    from coverslip.catalog import Image as from_catalog
    from coverslip.catalog.records import Image as from_records
    from coverslip.model import Image

    assert from_catalog is from_records is Image
