"""Uploads of the images API: stream bytes to staging, check caps, then queue the import.

An uploaded image runs queued → saving (bytes arriving, then waiting for a worker) →
importing (in a worker) → active. A staged one runs queued → uploading (bytes kept in
staging) → importing → active once imported. A web-download runs queued → importing →
active. An upload that fails while its bytes arrive puts the image back to queued and
deletes every byte written for it; an import job that fails for good leaves the image
killed with the reason, and nothing written for it. An image deleted while its bytes arrive
makes the upload fail with Gone. Nothing here knows HTTP: the web layer hands over an
iterator of body blocks.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from coverslip import fetch, formats
from coverslip.catalog import Image, Job
from coverslip.errors import (
    BadParameter,
    Conflict,
    CoverslipError,
    Duplicate,
    Gone,
    ImportFailed,
    NotFound,
    TooLarge,
    full_disk_is_no_space,
)
from coverslip.imports import Digest, ImportOptions
from coverslip.pixels.durable import sync_tree

if TYPE_CHECKING:
    from coverslip.jobs import Attempt
    from coverslip.services import Services

# How often (in seconds) a running upload checks that its image still exists, re-counts
# the quota and tells its job it is alive.
CHECK_EVERY = 0.5
FETCH_BLOCK = 1024 * 1024
IMPORT_KINDS = ("import_upload", "import_staged", "import_web")

# A zipped OME-Zarr is kept as the zip; every other upload under its format's usual suffix.
ZIPPED_NAME = "original.ome.zarr.zip"


def original_name(disk_format: str | None) -> str:
    """Return the file name an upload of ``disk_format`` is kept under.

    # NOTE: the readers detect by content, but tell OME-TIFF from TIFF (and find a few
    # formats at all) by the name, so the name carries the format's usual suffix.
    """
    if disk_format == "ome-zarr":
        return ZIPPED_NAME
    known = formats.BY_NAME.get(disk_format or "")
    return f"original{known.suffixes[0]}" if known and known.suffixes else "original"


@dataclass(frozen=True)
class Limits:
    """How many bytes an upload may still bring: the size cap and what the quota leaves."""

    cap: int | None
    quota_left: int | None

    def check(self, size: int) -> None:
        """Raise TooLarge if ``size`` bytes would break the cap or the quota."""
        if self.cap is not None and size > self.cap:
            raise TooLarge(f"the image is larger than images.size_cap ({self.cap} bytes)")
        if self.quota_left is not None and size > self.quota_left:
            raise TooLarge(
                f"the image would exceed your quota (images.user_quota; {self.quota_left} bytes left)"
            )


class Uploads:
    """Receive, stage and import the bytes of images created through the images API."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.catalog = services.catalog
        self.home = services.home

    @property
    def allowed_hosts(self) -> list[str]:
        return list(self.services.settings["images.web_download_allowed_hosts"])

    # -- limits -------------------------------------------------------------------------

    def limits(self, image: Image) -> Limits:
        """Return the limits that apply to new bytes of ``image``."""
        cap = int(self.services.settings["images.size_cap"]) or None
        quota = int(self.services.settings["images.user_quota"]) or None
        left = None
        if quota is not None:
            left = max(0, quota - self.catalog.used_bytes(image.owner_id, exclude=image.id))
        return Limits(cap, left)

    # -- upload and stage ---------------------------------------------------------------

    def upload(
        self,
        image_id: int,
        chunks: Iterable[bytes],
        length: int | None = None,
        expected: int | None = None,
        user_id: int | None = None,
        filename: str | None = None,
        refuse_duplicates: bool = False,
    ) -> str:
        """Stream the bytes of a queued image to disk and queue its import; return the job id.

        ``length`` is the Content-Length (None when chunked), ``expected`` the size the
        client announced (x-openstack-image-size), ``filename`` the name the client gave the
        file (kept when it fits the format). The bytes are on disk (synced) when this
        returns; a worker hashes and imports them, and with ``refuse_duplicates`` fails if
        the uploader can see an image of the same bytes. Under ``jobs.backend`` inline the
        import has run, and its failure is raised here.
        """
        image = self._begin(image_id, "saving", length, expected)
        jobs = self.services.jobs
        job_id = jobs.record("import_upload", image_id, user_id=user_id, state="receiving")
        staged = self._staging_file(image_id, "upload")

        def alive(done: int) -> None:
            if jobs.received(job_id, done):
                raise Gone(f"the upload of image {image_id} was cancelled")

        try:
            with full_disk_is_no_space():
                # PERF: the checksums cost more than receiving; the worker computes them.
                received = self._receive(image, chunks, staged, length, expected, Counted(), alive)
                sync_tree(staged)
                # The format is checked at once, so the client hears a wrong one from this call.
                self._keep(image, staged, received.size, filename)
        except BaseException as exc:
            try:
                self._fail(image_id, exc, ("saving",))  # first: it frees the disk
            finally:
                with contextlib.suppress(Exception):
                    jobs.end(job_id, "failed", str(exc))
            raise
        jobs.release(job_id, {"size": received.size, "refuse_duplicates": refuse_duplicates})
        return job_id

    def stage(
        self,
        image_id: int,
        chunks: Iterable[bytes],
        length: int | None = None,
        expected: int | None = None,
    ) -> None:
        """Stream the bytes of a queued image to staging; it stays "uploading" until imported."""
        image = self._begin(image_id, "uploading", length, expected)
        staged = self._staging_file(image_id, "staged")
        try:
            with full_disk_is_no_space():
                received = self._receive(image, chunks, staged, length, expected, Counted())
            self.catalog.update_image(image_id, original_size=received.size)
        except BaseException as exc:
            self._fail(image_id, exc, ("uploading",))
            raise

    def _begin(self, image_id: int, status: str, length: int | None, expected: int | None) -> Image:
        image = self.catalog.get_image(image_id)
        if length is not None and expected is not None and length != expected:
            raise BadParameter(
                "x-openstack-image-size", f"{expected} differs from Content-Length {length}"
            )
        known = expected if expected is not None else length
        if known is not None:
            self.limits(image).check(known)
        self.catalog.set_status(image_id, status, expect=["queued"])
        if known is not None:
            self._reserve(image, known)
        return image

    def _reserve(self, image: Image, size: int) -> Limits:
        """Count ``size`` bytes of an upload in flight against the owner's quota; return the limits.

        # SECURITY: uploads in flight count too (their size is kept on the image, which the
        # images API shows only once it is active), so concurrent uploads cannot each pass the
        # quota on their own; each re-checks as its bytes arrive and once they are all there.
        """
        if int(self.services.settings["images.user_quota"]):
            self.catalog.update_image(image.id, original_size=size)
        limits = self.limits(image)
        limits.check(size)
        return limits

    def _receive(
        self,
        image: Image,
        chunks: Iterable[bytes],
        target: Path,
        length: int | None,
        expected: int | None,
        digest: D,
        tick: Callable[[int], None] | None = None,
    ) -> D:
        """Write ``chunks`` to ``target``, feeding ``digest`` (a Digest, or just a Counted),
        enforcing the limits; return the digest.

        ``tick`` hears the bytes received so far every CHECK_EVERY seconds.
        """
        limits = self.limits(image)
        announced = expected if expected is not None else (length or 0)
        iterator = iter(chunks)
        with target.open("wb") as out:
            checked = time.monotonic()
            while True:
                try:
                    block = next(iterator)
                except StopIteration:
                    break
                except CoverslipError:
                    raise
                except Exception as exc:  # noqa: BLE001 - servers signal a cut body in many ways
                    raise BadParameter("body", f"the upload was cut short ({exc})") from None
                digest.update(block)
                limits.check(digest.size)
                out.write(block)
                if time.monotonic() - checked >= CHECK_EVERY:
                    self._still_there(image.id)
                    limits = self._reserve(image, max(announced, digest.size))
                    if tick is not None:
                        tick(digest.size)
                    checked = time.monotonic()
        self._still_there(image.id)
        self._reserve(image, digest.size)
        if expected is not None and digest.size != expected:
            raise BadParameter(
                "x-openstack-image-size", f"{expected} announced but {digest.size} bytes arrived"
            )
        if length is not None and digest.size != length:
            raise BadParameter("body", f"{digest.size} of {length} bytes arrived")
        return digest

    def _still_there(self, image_id: int) -> None:
        try:
            self.catalog.get_image(image_id)
        except NotFound:
            raise Gone(f"image {image_id} was deleted during the upload") from None

    # -- import -------------------------------------------------------------------------

    def _keep(
        self, image: Image, staged: Path, size: int, filename: str | None = None
    ) -> tuple[Path, str, Any]:
        """Link ``staged`` in as the original of ``image``, under the client's ``filename``
        (or the one an earlier call kept) when it fits the format, else the format's name.

        Return the original, its format and the image's API fields. The staged file stays
        until the import succeeds, so that an interrupted import can start again from it.
        """
        fields = self.catalog.api_fields([image.id])[image.id]
        folder = self.home.original_dir(image.id)
        shutil.rmtree(folder, ignore_errors=True)  # what an earlier attempt linked
        folder.mkdir(parents=True)
        original = folder / original_name(fields.disk_format)
        _link(staged, original)
        fmt = self._check_format(original, fields.disk_format)
        if fields.disk_format is None:
            original = _rename(original, original_name(fmt))
            self.catalog.set_api_fields(image.id, disk_format=fmt)
        wanted = safe_filename(filename) if filename else image.original_name
        if wanted and wanted != original.name and _suffix_fits(wanted, fmt):
            # NOTE: the readers tell some formats by the name too: keep it only if it says the same.
            named = _rename(original, wanted)
            original = named if self._format_of(named) == fmt else _rename(named, original.name)
        self.catalog.update_image(
            image.id, original_size=size, original_name=original.name, format=fmt
        )
        return original, fmt, fields

    def _import_file(
        self, image: Image, staged: Path, digest: Digest, attempt: Attempt | None = None
    ) -> None:
        """Keep ``staged`` as the original of ``image`` and build its pyramid."""
        original, fmt, fields = self._keep(image, staged, staged.stat().st_size)
        self._still_there(image.id)
        source = self._unzip(original, image.id) if fmt == "ome-zarr" else None
        options = ImportOptions(
            name=image.name or None,
            owner_id=image.owner_id,
            group_id=image.group_id,
            dataset_id=image.dataset_ids[0] if image.dataset_ids else None,
            allow_duplicate=True,
            properties=dict(image.properties),
            on_image=None if attempt is None else attempt.on_image,
            on_fileset=None if attempt is None else attempt.on_fileset,
        )
        try:
            ids = self.services.importer().import_received(
                image.id,
                original,
                digest,
                options,
                source=source,
                progress=None if attempt is None else attempt.progress,
            )
        except ImportFailed as exc:
            # SECURITY: a client hears what is wrong with its data, never where it is kept.
            message = _home_paths(self.home.root).sub("the data", str(exc))
            raise type(exc)(message) from None
        finally:
            # The pyramid is written; the extracted copy of a zipped OME-Zarr is not needed.
            shutil.rmtree(self._staging_file(image.id, "zarr"), ignore_errors=True)
        # The further images of the file answer to the images API like the one uploaded.
        for other in ids[1:]:
            self.catalog.set_api_fields(
                other,
                home_group_id=fields.home_group_id,
                disk_format=fmt,
                container_format=fields.container_format,
            )

    @staticmethod
    def _format_of(path: Path) -> str | None:
        try:
            return formats.detect(path)
        except CoverslipError:
            return None

    @staticmethod
    def _check_format(path: Path, disk_format: str | None) -> str:
        """Return the format of the bytes at ``path``, which must match ``disk_format``.

        # SECURITY: a client hears what is wrong with its data, never where it is kept.
        """
        try:
            return Uploads._detect_format(path, disk_format)
        except ImportFailed as exc:
            raise type(exc)(str(exc).replace(str(path), "the data")) from None

    @staticmethod
    def _detect_format(path: Path, disk_format: str | None) -> str:
        if disk_format == "ome-zarr":
            if not zipfile.is_zipfile(path):
                raise ImportFailed("disk_format ome-zarr takes a zip file of the .zarr folder")
            return "ome-zarr"
        if zipfile.is_zipfile(path) and disk_format is None:
            return "ome-zarr"
        found = formats.detect(path)
        if disk_format is not None and found != disk_format:
            raise ImportFailed(f"disk_format is {disk_format} but the data is {found}")
        return found

    def _unzip(self, archive: Path, image_id: int) -> Path:
        """Extract a zipped OME-Zarr into staging and return its root folder."""
        target = self._staging_file(image_id, "zarr")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        root = target.resolve()
        settings = self.services.settings
        max_bytes, max_files = (
            settings["images.unzip_max_bytes"],
            settings["images.unzip_max_files"],
        )
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            # SECURITY: a zip bomb is refused before anything is unpacked. zipfile never
            # unpacks more than a member's recorded size, so the recorded sizes bound it.
            if len(members) > max_files:
                raise TooLarge(
                    f"the zip holds {len(members)} files, more than images.unzip_max_files ({max_files})"
                )
            unpacked = sum(member.file_size for member in members)
            if unpacked > max_bytes:
                raise TooLarge(
                    f"the zip unpacks to {unpacked} bytes, more than images.unzip_max_bytes ({max_bytes})"
                )
            for member in members:
                # SECURITY: no member may land outside the extraction folder (zip slip).
                destination = (target / member.filename).resolve()
                if not destination.is_relative_to(root):
                    raise ImportFailed(f"the zip holds an unsafe path: {member.filename!r}")
            bundle.extractall(target)
        for candidate in [target, *sorted(p for p in target.iterdir() if p.is_dir())]:
            if any((candidate / marker).exists() for marker in ("zarr.json", ".zattrs", ".zgroup")):
                return candidate
        shutil.rmtree(target, ignore_errors=True)
        raise ImportFailed("the zip holds no OME-Zarr folder")

    def _fail(self, image_id: int, exc: BaseException, statuses: tuple[str, ...]) -> None:
        """Put the image back to queued and remove its bytes; turn a vanished image into Gone."""
        self.discard_bytes(image_id)
        try:
            self.catalog.set_status(image_id, "queued", expect=list(statuses), message=str(exc))
            self.catalog.update_image(image_id, sha512=None, md5=None, original_size=None)
        except NotFound:
            if not isinstance(exc, Gone):
                raise Gone(f"image {image_id} was deleted during the upload") from None
        except CoverslipError:
            pass  # someone else moved the image on; leave it be

    def discard_bytes(self, image_id: int) -> None:
        """Delete every byte written for an image: staging, original, pyramid."""
        for suffix in ("upload", "staged"):
            with contextlib.suppress(FileNotFoundError):
                self._staging_file(image_id, suffix).unlink()
        shutil.rmtree(self._staging_file(image_id, "zarr"), ignore_errors=True)
        self.services.importer().remove_files(image_id)

    def _staging_file(self, image_id: int, suffix: str) -> Path:
        return self.home.staging / f"{image_id}.{suffix}"

    # -- staged import and web-download -------------------------------------------------

    def start_import(self, image_id: int, method: str, uri: str | None, user_id: int | None) -> str:
        """Queue the import of an image by ``method``; return the job id (Glance's task id)."""
        image = self.catalog.get_image(image_id)
        if method == "glance-direct":
            if image.status == "uploading" and not self._staging_file(image_id, "staged").exists():
                raise Conflict(f"image {image_id} has no staged data")
            self.catalog.set_status(image_id, "importing", expect=["uploading"])
            kind, job_input = "import_staged", {"import_req": {"method": {"name": method}}}
        elif method == "web-download":
            if not uri:
                raise BadParameter("method.uri", "web-download needs a uri")
            if image.status != "queued":
                raise Conflict(f"image {image_id} is {image.status}, not queued")
            fetch.check_url(uri, self.allowed_hosts)
            self.catalog.set_status(image_id, "importing", expect=["queued"])
            kind = "import_web"
            job_input = {"import_req": {"method": {"name": method, "uri": uri}}}
        else:
            raise BadParameter("method.name", f"{method!r} is not glance-direct or web-download")
        return self.services.jobs.submit(kind, image_id, job_input, user_id)

    # -- the import jobs ----------------------------------------------------------------

    def run(self, job: Job, attempt: Attempt) -> None:
        """Import the bytes of an image in a worker: uploaded, staged or downloaded."""
        assert job.image_id is not None
        image = self.catalog.get_image(job.image_id)
        self.catalog.set_status(image.id, "importing", expect=["saving", "uploading", "importing"])
        # An earlier attempt killed in the middle left part of the work: start afresh.
        self.services.importer().undo_received(image.id, job.input.get("filesets", ()))
        with full_disk_is_no_space():
            if job.kind == "import_web":
                uri = job.input["import_req"]["method"]["uri"]
                staged, digest = self._download(image, uri, attempt)
            else:
                kind = "staged" if job.kind == "import_staged" else "upload"
                staged = self._staging_file(image.id, kind)
                if not staged.exists():
                    raise ImportFailed(f"the bytes of image {image.id} are gone; upload them again")
                # PERF: hashed in a thread beside the pyramid build.
                digest = Digest.of_file(staged)
            if job.input.get("refuse_duplicates"):
                self._refuse_duplicate(image, digest)
            self._import_file(image, staged, digest, attempt)
        staged.unlink(missing_ok=True)

    def abandon(self, job: Job, reason: str) -> None:
        """Undo what an import job left; the image is killed (or queued if bytes never came)."""
        if job.image_id is None:
            return
        if job.state == "receiving":
            with contextlib.suppress(Gone):
                self._fail(job.image_id, CoverslipError(reason), ("saving",))
            return
        self.discard_bytes(job.image_id)
        with contextlib.suppress(CoverslipError):
            # NOTE: read again: the attempt that failed recorded the filesets it made.
            made = self.catalog.get_job(job.id).input.get("filesets", ())
            self.services.importer().undo_received(job.image_id, made)
            self.catalog.set_status(
                job.image_id,
                "killed",
                expect=["saving", "uploading", "importing", "queued"],
                message=reason,
            )

    def retryable(self, job: Job) -> str | None:
        """Only a web-download can run again after failing: the other imports' bytes are gone."""
        if job.kind != "import_web" or job.image_id is None:
            return "its bytes were removed when it failed; upload them again"
        try:
            self.catalog.set_status(job.image_id, "importing", expect=["killed", "queued"])
        except CoverslipError as exc:
            return str(exc)
        return None

    def _refuse_duplicate(self, image: Image, digest: Digest) -> None:
        """Raise Duplicate if the uploader may see an image of the same bytes.

        # SECURITY: images the uploader may not see are not named (nor counted).
        """
        auth = self.services.auth
        caller = auth.caller_for_user(image.owner_id, "session")
        if caller is None:
            return
        for other in self.catalog.ids_by_sha512(digest.sha512.hexdigest()):
            if other == image.id:
                continue
            with contextlib.suppress(NotFound):
                auth.visible_image(caller, other)
                raise Duplicate(other, again="upload it without duplicates=refuse to keep both")

    def _download(self, image: Image, uri: str, attempt: Attempt) -> tuple[Path, Digest]:
        staged = self._staging_file(image.id, "upload")
        response = fetch.fetch(uri, self.allowed_hosts)
        try:
            length = response.getheader("Content-Length")
            known = int(length) if length and length.isdigit() else None
            if known is not None:
                self.limits(image).check(known)

            def tick(done: int) -> None:
                attempt.progress(done, known or 0)

            digest = self._receive(
                image, _read_blocks(response), staged, known, None, Digest(), tick
            )
        finally:
            response.close()
        return staged, digest


class Counted:
    """Counts the bytes of an upload whose checksums the worker computes (a Digest's size)."""

    size = 0

    def update(self, block: bytes) -> None:
        self.size += len(block)


D = TypeVar("D", Digest, Counted)


def safe_filename(name: str | None) -> str | None:
    """Return the last part of a client's file name if it is a plain one, else None."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    plain = name not in ("", ".", "..") and not name.startswith(".")
    if not plain or len(name.encode()) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return None
    return name


def _suffix_fits(name: str, fmt: str) -> bool:
    """Return whether ``name`` ends as files of ``fmt`` do (a zipped OME-Zarr keeps its own)."""
    known = formats.BY_NAME.get(fmt)
    if fmt == "ome-zarr" or known is None:
        return False
    return not known.suffixes or name.lower().endswith(known.suffixes)


def _rename(path: Path, name: str) -> Path:
    target = path.with_name(name)
    os.replace(path, target)
    return target


def _link(source: Path, target: Path) -> None:
    """Make ``target`` a second name of ``source`` (a copy where links cannot be made)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _home_paths(root: Path) -> re.Pattern[str]:
    """Return a pattern matching any path inside the instance home ``root``."""
    return re.compile(re.escape(str(root)) + r"[^\s:]*")


def _read_blocks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while block := response.read(FETCH_BLOCK):
        yield block
