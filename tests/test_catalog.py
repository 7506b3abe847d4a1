"""The catalog against both engines: the embedded SQLite and a real PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from coverslip.catalog import Catalog, Channel
from coverslip.errors import BadParameter, Conflict, NotFound


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        cat = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
        cat = Catalog(url)
    yield cat
    cat.close()


def test_migrations_are_idempotent(catalog: Catalog) -> None:
    catalog.migrate()
    catalog.migrate()
    catalog.ping()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with cat.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"


def test_image_lifecycle(catalog: Catalog) -> None:
    owner, group = catalog.ensure_local_admin()
    assert catalog.ensure_local_admin() == (owner, group)
    image_id = catalog.create_image("cells", owner, group, format="tiff", properties={"lab": "x"})
    image = catalog.get_image(image_id)
    assert image.status == "queued"
    assert image.properties == {"lab": "x"}
    assert image.created.tzinfo is not None
    catalog.set_status(image_id, "importing", expect=["queued"])
    with pytest.raises(Conflict, match="importing"):
        catalog.set_status(image_id, "active", expect=["queued"])
    with pytest.raises(BadParameter, match="status"):
        catalog.set_status(image_id, "done")
    catalog.set_channels(image_id, [Channel(0, "DAPI", "0000FF", 1.0, 900.0, 1.0, 900.0, 461.0)])
    catalog.update_image(image_id, size_x=10, size_y=20, sha512="ab" * 64)
    image = catalog.get_image(image_id)
    assert image.channels[0].name == "DAPI"
    assert (image.size_x, image.size_y) == (10, 20)
    assert catalog.find_by_sha512("ab" * 64) == image_id
    catalog.delete_image(image_id)
    with pytest.raises(NotFound):
        catalog.get_image(image_id)
    with pytest.raises(NotFound):
        catalog.update_image(image_id, name="gone")


def test_datasets(catalog: Catalog) -> None:
    owner, group = catalog.ensure_local_admin()
    first = catalog.create_image("a", owner, group)
    second = catalog.create_image("b", owner, group)
    dataset_id = catalog.create_dataset("Demo", owner, group)
    with pytest.raises(Conflict, match="exists already"):
        catalog.create_dataset("Demo", owner, group)
    catalog.add_to_dataset(dataset_id, [first, second])
    catalog.add_to_dataset(dataset_id, [first])
    assert catalog.get_dataset(dataset_id).image_count == 2
    assert [i.id for i in catalog.list_images(dataset_id=dataset_id)] == [first, second]
    assert catalog.get_image(first).dataset_ids == (dataset_id,)
    catalog.remove_from_dataset(dataset_id, [first])
    assert catalog.dataset_by_name("Demo").image_count == 1  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        catalog.add_to_dataset(dataset_id, [9999])
    catalog.delete_dataset(dataset_id)
    assert catalog.list_datasets() == []
    assert len(catalog.list_images()) == 2


def test_rendering_settings_versions_only_grow(catalog: Catalog) -> None:
    owner, group = catalog.ensure_local_admin()
    image_id = catalog.create_image("a", owner, group)
    assert catalog.get_rdef(image_id, owner) is None
    first = catalog.save_rdef(image_id, owner, {"model": "greyscale"})
    second = catalog.save_rdef(image_id, owner, {"model": "color"})
    assert second > first > 0
    assert catalog.get_rdef(image_id, owner) == (second, {"model": "color"})
    assert catalog.get_image(image_id).rdef_version == second
    reset = catalog.delete_rdef(image_id, owner)
    assert reset > second
    assert catalog.get_rdef(image_id, owner) is None
    with pytest.raises(NotFound):
        catalog.save_rdef(9999, owner, {})


def test_two_changes_in_one_clock_tick_are_both_seen_by_other_processes(tmp_path: Path) -> None:
    from coverslip.catalog import Catalog
    from coverslip.catalog.cached import CachedCatalog

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    catalog.migrate()
    owner, group = catalog.ensure_local_admin()
    image_id = catalog.create_image("first", owner, group)
    stamp = tmp_path / "run" / "catalog.stamp"
    writer = CachedCatalog(catalog, stamp)  # the process that changes the catalog
    reader = CachedCatalog(catalog, stamp)  # another process, caching what it read
    for name in ("second", "third", "fourth"):
        assert reader.image(image_id).name != name
        catalog.update_image(image_id, name=name)
        writer.touch()
        # As when both changes fall within one tick of the file system's clock.
        os.utime(stamp, ns=(1_000_000_000, 1_000_000_000))
        assert reader.image(image_id).name == name
