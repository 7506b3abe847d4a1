"""Pixels and originals on an S3-compatible object store (``pixels.store = s3://bucket/prefix``).

Pyramids are written and read by tensorstore's ``s3`` kvstore (one ranged GET per chunk, over
reused connections); originals, group metadata, listings and deletions go through boto3, which
streams large files in parts. Credentials come from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``) or the standard AWS files, never from the catalog: a store URL in
the catalog names a bucket and a key, nothing that opens it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coverslip.errors import StoreUnavailable

SCHEME = "s3://"
# Bucket names as S3 allows them: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PART_SIZE = 64 * 1024 * 1024  # originals go up in parts of this size, several at once
READ_BLOCK = 1024 * 1024
TREE_WORKERS = 8  # files of a folder stored at once: chunks are small, round trips dominate

__all__ = [
    "ObjectStore",
    "StoreUnavailable",
    "WebStore",
    "check_key",
    "is_remote",
    "join",
    "source_for",
    "split_url",
]


WEB = ("https://", "http://")  # OME-Zarr registered in place on a web server
# The most metadata (zarr.json, .zattrs, .zarray) read from a web server: a megabyte.
METADATA_LIMIT = 1024 * 1024


def is_remote(location: str | Path | None) -> bool:
    """Return whether ``location`` is a URL (object store or web server), not a local path."""
    return isinstance(location, str) and location.startswith((SCHEME, *WEB))


def check_key(url: str) -> None:
    """Raise ValueError unless ``url`` is an s3:// or http(s):// URL whose path stays below
    its prefix: no ``..`` segment, no backslash, NUL, query or fragment."""
    if url.startswith(SCHEME):
        split_url(url)
        return
    rest = url.split("://", 1)[1] if url.startswith(WEB) else ""
    host, _, path = rest.partition("/")
    if not host or any(mark in url for mark in ("\\", "\0", "?", "#")):
        raise ValueError(f"{url[:80]!r} is not a plain http(s) URL")
    if ".." in path.split("/"):
        raise ValueError(f"the key {path[:80]!r} leaves its prefix")


def split_url(url: str) -> tuple[str, str]:
    """Return (bucket, key) of ``s3://bucket/key``; raise ValueError naming what is wrong."""
    if not url.startswith(SCHEME):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url[len(SCHEME) :].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"{bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    if ".." in key.split("/") or "\\" in key or "\0" in key:
        raise ValueError(f"the key {key[:80]!r} leaves its prefix")
    return bucket, key


def join(url: str, relative: str) -> str:
    """Return ``url`` with ``relative`` (a key below it) appended, one ``/`` between them."""
    return f"{url.rstrip('/')}/{relative.lstrip('/')}"


def etag_of(path: Path) -> str:
    """Return the ETag an S3 store gives ``path`` stored by ``ObjectStore``: the MD5 of a
    file below PART_SIZE, the MD5 of its parts' MD5s and their count above it."""
    parts = []
    with path.open("rb") as source:
        while block := source.read(PART_SIZE):
            parts.append(hashlib.md5(block, usedforsecurity=False).digest())
    if path.stat().st_size < PART_SIZE:
        return (parts[0] if parts else hashlib.md5(b"", usedforsecurity=False).digest()).hex()
    whole = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
    return f"{whole}-{len(parts)}"


@dataclass(frozen=True)
class Stored:
    """What ``ObjectStore.store_tree`` did: objects written, objects found already there."""

    written: int
    kept: int
    size: int  # bytes written


@dataclass(frozen=True)
class ObjectStore:
    """One bucket and key prefix where new pyramids and originals go, and how to reach it."""

    url: str  # s3://bucket/prefix
    endpoint: str = ""  # empty: AWS itself
    region: str = "us-east-1"
    timeout: float = 10.0
    _clients: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def __post_init__(self) -> None:
        split_url(self.url)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ObjectStore | None:
        """Return the store ``pixels.store`` names, or None for files in the instance home."""
        where = str(settings["pixels.store"])
        return None if where == "file" else cls.at(where, settings)

    @classmethod
    def at(cls, url: str, settings: Mapping[str, Any]) -> ObjectStore:
        """Return the store at ``url``, reached with the endpoint and region of ``settings``."""
        return cls(
            url.rstrip("/"),
            endpoint=str(settings["pixels.s3_endpoint"]),
            region=str(settings["pixels.s3_region"]),
            timeout=float(settings["pixels.s3_timeout"]),
        )

    @property
    def name(self) -> str:
        """How messages name the store: its endpoint and bucket (no credentials, no keys)."""
        bucket, _ = split_url(self.url)
        return f"the object store {self.endpoint or 'S3'} (bucket {bucket})"

    # -- where things go ------------------------------------------------------------------

    def pyramid(self, image_id: int) -> str:
        return join(self.url, f"pixels/{image_id}.ome.zarr")

    def fileset(self, fileset_id: int) -> str:
        return join(self.url, f"originals/fileset-{fileset_id}")

    # -- tensorstore ----------------------------------------------------------------------

    def kvstore(self, url: str) -> dict[str, Any]:
        """Return tensorstore's kvstore spec for the keys under ``url`` (a folder)."""
        bucket, key = split_url(url)
        spec: dict[str, Any] = {
            "driver": "s3",
            "bucket": bucket,
            "path": f"{key.rstrip('/')}/",
            "aws_region": self.region,
            # NOTE: "default" also reads the standard AWS files (and logs their absence).
            "aws_credentials": {
                "type": "environment" if os.environ.get("AWS_ACCESS_KEY_ID") else "default"
            },
        }
        if self.endpoint:
            spec["endpoint"] = self.endpoint
        return spec

    # -- objects --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """Return this process's boto3 client (a forked worker makes its own)."""
        pid = os.getpid()
        found = self._clients.get(pid)
        if found is None:
            with self._lock:
                found = self._clients.get(pid)
                if found is None:
                    import boto3
                    from botocore.config import Config

                    found = boto3.session.Session().client(
                        "s3",
                        endpoint_url=self.endpoint or None,
                        region_name=self.region,
                        config=Config(
                            connect_timeout=self.timeout,
                            read_timeout=self.timeout,
                            retries={"max_attempts": 3, "mode": "standard"},
                            max_pool_connections=32,
                            s3={"addressing_style": "path"},
                            signature_version="s3v4",
                        ),
                    )
                    self._clients.clear()
                    self._clients[pid] = found
        return found

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(what) from None
            raise StoreUnavailable(f"{self.name} refused to {what} ({code})") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{self.name} does not answer ({type(exc).__name__})") from None

    def get(self, url: str) -> bytes | None:
        """Return the bytes of the object at ``url``, or None when there is none."""
        bucket, key = split_url(url)
        try:
            body = self._call(f"read {key}", "get_object", Bucket=bucket, Key=key)["Body"]
        except FileNotFoundError:
            return None
        return bytes(body.read())

    def put(self, url: str, data: bytes) -> None:
        """Store ``data`` as ``url``; the store checks it against the MD5 sent with it."""
        bucket, key = split_url(url)
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        self._call(
            f"write {key}", "put_object", Bucket=bucket, Key=key, Body=data, ContentMD5=digest
        )

    def upload(self, url: str, path: Path) -> None:
        """Store the file at ``path`` as ``url``, in parts for large files."""
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_url(url)
        config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)
        try:
            self.client.upload_file(str(path), bucket, key, Config=config)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StoreUnavailable(
                f"{self.name} did not take {key} ({type(exc).__name__})"
            ) from None

    def size(self, url: str) -> int | None:
        """Return the size of the object at ``url``, or None when there is none."""
        bucket, key = split_url(url)
        try:
            return int(
                self._call(f"read {key}", "head_object", Bucket=bucket, Key=key)["ContentLength"]
            )
        except FileNotFoundError:
            return None

    def stream(self, url: str, first: int, last: int) -> Iterator[bytes]:
        """Yield bytes ``first``..``last`` (inclusive) of the object at ``url``, a block at a time."""
        bucket, key = split_url(url)
        body = self._call(
            f"read {key}", "get_object", Bucket=bucket, Key=key, Range=f"bytes={first}-{last}"
        )["Body"]
        try:
            while block := body.read(READ_BLOCK):
                yield block
        finally:
            body.close()

    def open(self, url: str) -> Any:
        """Return a readable file object of the whole object at ``url``."""
        bucket, key = split_url(url)
        return self._call(f"read {key}", "get_object", Bucket=bucket, Key=key)["Body"]

    def ranges(self, url: str) -> Callable[[int, int], bytes]:
        """Return ``read(offset, length)`` of the object at ``url``: one ranged GET each, over
        tensorstore's reused connections (boto3 costs about a millisecond of CPU a request)."""
        import tensorstore as ts

        folder, _, name = url.rpartition("/")
        kvstore = ts.KvStore.open(self.kvstore(folder)).result()

        def read(offset: int, length: int) -> bytes:
            found = answer(kvstore.read(name, byte_range=slice(offset, offset + length)), self.name)
            if found is None:
                raise FileNotFoundError(url)
            return found

        return read

    def keys(self, url: str) -> Iterator[tuple[str, int]]:
        """Yield (key relative to ``url``, size) of every object under the folder ``url``."""
        for relative, size, _etag in self._listing(url):
            yield relative, size

    def _listing(self, url: str) -> Iterator[tuple[str, int, str]]:
        bucket, key = split_url(url)
        prefix = f"{key.rstrip('/')}/"
        token: dict[str, str] = {}
        while True:
            page = self._call(
                f"list {prefix}", "list_objects_v2", Bucket=bucket, Prefix=prefix, **token
            )
            for item in page.get("Contents", []):
                yield item["Key"][len(prefix) :], int(item["Size"]), item["ETag"].strip('"')
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def store_tree(self, url: str, folder: Path) -> Stored:
        """Store every file under ``folder`` below the folder ``url``, several at once.

        A file already there with its size and ETag is left as it is, so a copy cut short
        goes on where it stopped when run again.
        """
        there = {relative: (size, etag) for relative, size, etag in self._listing(url)}

        def one(path: Path) -> int:
            relative = path.relative_to(folder).as_posix()
            size = path.stat().st_size
            if there.get(relative, (-1, ""))[0] == size and there[relative][1] == etag_of(path):
                return -1
            target = join(url, relative)
            if size < PART_SIZE:
                self.put(target, path.read_bytes())
            else:
                self.upload(target, path)
            return size

        files = sorted(Path(top) / name for top, _, names in os.walk(folder) for name in names)
        with ThreadPoolExecutor(TREE_WORKERS, thread_name_prefix="store") as pool:
            sizes = list(pool.map(one, files))
        written = [size for size in sizes if size >= 0]
        return Stored(len(written), len(sizes) - len(written), sum(written))

    def delete_tree(self, url: str) -> None:
        """Remove every object under the folder ``url`` (nothing there is not an error)."""
        bucket, key = split_url(url)
        names = [join(key, relative) for relative, _size in self.keys(url)]
        for start in range(0, len(names), 1000):
            batch = [{"Key": name} for name in names[start : start + 1000]]
            self._call(
                f"delete under {key}",
                "delete_objects",
                Bucket=bucket,
                Delete={"Objects": batch, "Quiet": True},
            )

    def presign(self, url: str, name: str, seconds: int) -> str:
        """Return a URL that downloads ``url`` as ``name`` for ``seconds``, without credentials."""
        from urllib.parse import quote

        bucket, key = split_url(url)
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": bucket,
                    "Key": key,
                    "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(name)}",
                },
                ExpiresIn=seconds,
            )
        )

    def ping(self) -> None:
        """Raise StoreUnavailable unless the bucket answers."""
        bucket, _ = split_url(self.url)
        self._call("answer", "head_bucket", Bucket=bucket)


def answer(future: Any, what: str) -> bytes | None:
    """Return the bytes a tensorstore kvstore read found, None for a missing key; a failure is
    StoreUnavailable (503) saying that ``what`` does not answer."""
    try:
        found = future.result()
    except Exception:  # noqa: BLE001 - tensorstore raises ValueError and others
        raise StoreUnavailable(f"{what} does not answer") from None
    return bytes(found.value) if found.state == "value" else None


class RangedFile(io.RawIOBase):
    """A read-only seekable file over ``read(offset, length)`` (an object in a store)."""

    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        super().__init__()
        self._read = read
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), self._size - self._position)
        if length <= 0:
            return 0
        data = self._read(self._position, length)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


@dataclass(frozen=True)
class WebStore:
    """OME-Zarr on a web server, registered in place: read-only, one GET per chunk through
    tensorstore's ``http`` kvstore; the metadata through urllib."""

    timeout: float = 10.0
    name = "the web server holding the pixels"

    def get(self, url: str) -> bytes | None:
        """Return the bytes at ``url`` (at most METADATA_LIMIT), or None when there are none."""
        import urllib.error
        import urllib.request

        host = url.split("://", 1)[-1].split("/", 1)[0]
        request = urllib.request.Request(url, headers={"User-Agent": "Coverslip"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return bytes(answer.read(METADATA_LIMIT))
        except urllib.error.HTTPError as exc:
            # NOTE: public buckets answer 403 for a key that is not there.
            if exc.code in (403, 404):
                return None
            raise StoreUnavailable(f"{host} answered {exc.code} for {url[-80:]}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreUnavailable(f"{host} does not answer ({reason})") from None

    def kvstore(self, url: str) -> dict[str, Any]:
        return {"driver": "http", "base_url": f"{url.rstrip('/')}/"}

    def ping(self) -> None:
        """Nothing to ask: each image names its own server, and its reads say if it is down."""


def source_for(location: str, objects: ObjectStore | None) -> ObjectStore | WebStore | None:
    """Return what reads the pyramid at the URL ``location``: the object store for s3://,
    a web reader for http(s)://; None when it is in a store this server is not set up for."""
    if location.startswith(WEB):
        return WebStore(objects.timeout if objects is not None else 10.0)
    return objects
