"""The object-store helpers that need no server: URLs, keys, ETags, where a pyramid is read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coverslip import config
from coverslip.pixels import objects
from coverslip.pixels.objects import ObjectStore, WebStore, check_key, etag_of, source_for


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://Bad_Bucket/x", "not an S3 bucket name"),
        ("s3://bucket/a/../b", "leaves its prefix"),
        ("https://host/a/../../etc", "leaves its prefix"),
        ("https://host/a?x=1", "not a plain http"),
        ("https:///nohost", "not a plain http"),
        ("ftp://host/a", "not a plain http"),
    ],
)
def test_keys_that_leave_their_prefix_are_refused(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_key(url)


def test_plain_keys_pass() -> None:
    check_key("s3://bucket-one/prefix/0/zarr.json")
    check_key("https://example.org/idr/zarr/v0.4/6001240.zarr/0/.zarray")


def test_the_etag_is_the_md5_below_the_part_size_and_the_md5_of_parts_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"pixels" * 100)
    assert etag_of(small) == hashlib.md5(b"pixels" * 100).hexdigest()
    monkeypatch.setattr(objects, "PART_SIZE", 256)
    data = bytes(range(256)) * 2 + b"tail"
    large = tmp_path / "large"
    large.write_bytes(data)
    parts = [hashlib.md5(data[i : i + 256]).digest() for i in range(0, len(data), 256)]
    assert etag_of(large) == f"{hashlib.md5(b''.join(parts)).hexdigest()}-3"


def test_web_urls_are_read_over_http_and_store_urls_through_the_store() -> None:
    store = ObjectStore("s3://bucket-one/prefix", endpoint="http://127.0.0.1:9", timeout=3)
    assert source_for("s3://bucket-one/other/x.zarr", store) is store
    assert source_for("s3://bucket-one/x.zarr", None) is None
    web = source_for("https://example.org/x.zarr", store)
    assert isinstance(web, WebStore) and web.timeout == 3
    assert web.kvstore("https://example.org/x.zarr/0") == {
        "driver": "http",
        "base_url": "https://example.org/x.zarr/0/",
    }


def test_the_store_setting_takes_file_or_an_s3_url() -> None:
    setting = config.lookup("pixels.store")
    assert setting.convert("s3://bucket-one/prefix/") == "s3://bucket-one/prefix"
    assert setting.convert("file") == "file"
    for bad in ("s3://UPPER/x", "https://example.org/x", "/srv/pixels"):
        with pytest.raises(config.SettingError, match="pixels.store"):
            setting.convert(bad)
    reached = ObjectStore.at("s3://bucket-one/p", config.load(environ={}))
    assert reached.region == "us-east-1" and reached.endpoint == ""
