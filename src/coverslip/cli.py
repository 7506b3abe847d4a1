"""The `coverslip` command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from coverslip import config
from coverslip.cli_support import State, errors, guarded, pass_state, show
from coverslip.errors import BadParameter, CoverslipError, Duplicate
from coverslip.home import Home

if TYPE_CHECKING:
    from rich.progress import Progress

    from coverslip.imports import ImportOptions
    from coverslip.services import Services


class _Commands(click.Group):
    """The `coverslip` group; the commands of other packages attach when first asked for.

    PERF: `coverslip import` then starts without importing the web application, the deploy
    tools and the user commands it does not run.
    """

    attached: set[str] = set()

    def _attach(self, package: str) -> None:
        if package not in self.attached:
            self.attached.add(package)
            _attach_commands(package)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        # NOTE: the deploy tools add their generators to `config` too.
        if found is None or cmd_name == "config":
            self._attach(_PACKAGE_OF.get(cmd_name, "deploy"))
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        for package in ("deploy", *sorted(set(_PACKAGE_OF.values()))):
            self._attach(package)
        return super().list_commands(ctx)


@click.group(cls=_Commands)
@click.option(
    "--home",
    "home_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="COVERSLIP_HOME",
    help="Instance home (default: ./var in a checkout, else ~/.local/share/coverslip).",
)
@click.version_option(package_name="coverslip")
@click.pass_context
def main(ctx: click.Context, home_dir: Path | None) -> None:
    """Coverslip: a fast, self-contained web server for microscopy images."""
    home = Home(home_dir.resolve()) if home_dir else Home.from_env()
    os.environ["COVERSLIP_HOME"] = str(home.root)
    ctx.obj = State(home)


# -- serve ------------------------------------------------------------------------------


@main.command()
@click.option("--host", help="Address to listen on (web.host).")
@click.option("--port", type=int, help="Port to listen on (web.port).")
@click.option("--workers", type=int, help="Worker processes (web.workers).")
@pass_state
@guarded
def serve(state: State, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the web application in the foreground (Granian, web.workers workers) and a job worker."""
    flags = {"web.host": host, "web.port": port, "web.workers": workers}
    state.flags.update({k: v for k, v in flags.items() if v is not None})
    settings = state.settings
    from coverslip import metrics

    # The workers sum their metrics through this folder (set before any of them starts).
    folder = metrics.folder_of(state.home.run, "web")
    os.environ[metrics.MULTIPROCESS_ENV] = str(folder)
    metrics.prepare(folder)
    # Workers build their own app from the environment: hand the flags down that way.
    for name, value in state.flags.items():
        os.environ[config.lookup(name).env] = str(value)
    state.services.catalog.migrate()
    click.echo(
        f"Coverslip serving {state.home.root} at http://{settings['web.host']}:{settings['web.port']}/ "
        f"({settings['web.workers']} workers; Ctrl-C stops)"
    )
    from coverslip.deploy import granian, process
    from coverslip.jobs import cli as jobs_cli

    # The imports of uploads run in a worker beside the server, stopped with it.
    ours = settings["jobs.backend"] != "inline" and not process.running_pid(state.home, "worker")
    if ours:
        click.echo(f"job worker started (PID {jobs_cli.spawn(state)})")
    try:
        granian.serve(settings)
    finally:
        if ours:
            process.stop(state.home, "worker", graceful=float(settings["web.graceful_timeout"]))


# -- import -----------------------------------------------------------------------------


def _progress() -> Progress:
    # PERF: commands that show no progress start without rich's progress module.
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    )


def import_files(
    services: Services, paths: Sequence[Path | str], options: ImportOptions, quiet: bool = False
) -> tuple[list[int], int]:
    """Import ``paths`` one by one with a progress bar each; return (new ids, number failed).

    A path given as text is a URL (s3://, http(s)://) of an OME-Zarr registered in place.
    """
    importer = services.importer()
    ids: list[int] = []
    failed = 0
    with _progress() as progress:
        for path in paths:
            label = path if isinstance(path, str) else path.name
            task = progress.add_task(label, total=None, visible=not quiet)

            def update(done: int, total: int, task: Any = task) -> None:
                progress.update(task, completed=done, total=total or None)

            try:
                new_ids = (
                    importer.register_url(path, options, update)
                    if isinstance(path, str)
                    else importer.import_fileset(path, options, update)
                )
            except Duplicate as exc:
                failed += 1
                progress.remove_task(task)
                errors.print(f"[red]failed:[/red] {path}: {exc}", highlight=False, soft_wrap=True)
            except CoverslipError as exc:
                failed += 1
                progress.remove_task(task)
                message = str(exc)
                if message.startswith(f"{label}: "):
                    message = message.removeprefix(f"{label}: ")
                if not message.startswith(str(path)):
                    message = f"{path}: {message}"
                errors.print(f"[red]failed:[/red] {message}", highlight=False, soft_wrap=True)
            except KeyboardInterrupt:
                progress.remove_task(task)
                errors.print(
                    f"[red]interrupted:[/red] {path}: nothing of it was kept", highlight=False
                )
                raise SystemExit(130) from None
            else:
                ids.extend(new_ids)
                made = ", ".join(map(str, new_ids))
                progress.update(task, description=f"{label} → image {made}")
                if len(new_ids) > 1 and not quiet:
                    for image in map(services.catalog.get_image, new_ids):
                        errors.print(f"  image {image.id}: {image.name}", highlight=False)
    return ids, failed


@main.command("import")
@click.argument("paths", nargs=-1, required=True)
@click.option("--dataset", help="Put the images in this dataset (created if missing).")
@click.option("--name", help="Name of the image (default: from the file).")
@click.option("--axes", help="Axes of a .npy file, e.g. ZYX or TCZYX.")
@click.option(
    "--in-place", is_flag=True, help="Register an OME-Zarr where it is instead of copying it."
)
@click.option(
    "--allow-duplicate", is_flag=True, help="Import files whose bytes were imported before."
)
@click.option("--user", "username", help="Owner of the images (default: the local administrator).")
@click.option(
    "--group", "group_name", help="Group of the images (default: the owner's first group)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the new image ids as JSON.")
@pass_state
@guarded
def import_(
    state: State,
    paths: tuple[str, ...],
    dataset: str | None,
    name: str | None,
    axes: str | None,
    in_place: bool,
    allow_duplicate: bool,
    username: str | None,
    group_name: str | None,
    as_json: bool,
) -> None:
    """Import image files: every series, scene or position of a file is an image.

    `coverslip formats` lists what is read. With --in-place, an OME-Zarr image at an
    s3:// or http(s):// URL is registered where it is.
    """
    services = state.services
    owner_id, group_id = _owner_and_group(services, username, group_name)
    dataset_id = _dataset_id(services, dataset, owner_id, group_id) if dataset else None
    from coverslip.imports import ImportOptions

    options = ImportOptions(
        name=name,
        dataset_id=dataset_id,
        owner_id=owner_id,
        group_id=group_id,
        axes=axes,
        in_place=in_place,
        allow_duplicate=allow_duplicate,
    )
    from coverslip.pixels.objects import is_remote

    where = [path if is_remote(path) else Path(path) for path in paths]
    ids, failed = import_files(services, where, options, quiet=as_json)
    if as_json:
        click.echo(json.dumps({"imported": ids, "failed": failed}))
    else:
        click.echo(
            f"imported {len(ids)} image(s){': ' + ', '.join(map(str, ids)) if ids else ''}"
            f"{f'; {failed} failed' if failed else ''}"
        )
    if failed:
        sys.exit(1)


def _owner_and_group(
    services: Services, username: str | None, group_name: str | None
) -> tuple[int, int]:
    """Return (owner id, group id) for new images; the owner must belong to the group."""
    admin_id, default_group = services.catalog.ensure_local_admin()
    directory = services.auth.directory
    owner = directory.user(username) if username else directory.user(admin_id)
    account = directory.account(owner.id)
    member_of = account.member_of if account else frozenset()
    if group_name:
        group = directory.find_group(group_name)
        if group.id not in member_of:
            raise BadParameter("group", f"{owner.username} is not a member of group {group_name!r}")
        return owner.id, group.id
    if username is None:
        return owner.id, default_group
    if not member_of:
        raise BadParameter(
            "user", f"{owner.username} belongs to no group; add them with `coverslip group adduser`"
        )
    return owner.id, min(member_of)


def _dataset_id(services: Services, name: str, owner_id: int, group_id: int) -> int:
    found = services.catalog.dataset_by_name(name, group_id)
    return found.id if found else services.catalog.create_dataset(name, owner_id, group_id)


# -- images and datasets ----------------------------------------------------------------


@main.group()
def images() -> None:
    """List, show and delete images."""


@images.command("list")
@click.option("--dataset", type=int, help="Only images in this dataset id.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def images_list(state: State, dataset: int | None, as_json: bool) -> None:
    """List images."""
    rows = []
    for image in state.services.catalog.list_images(dataset_id=dataset):
        rows.append(
            {
                "id": image.id,
                "name": image.name,
                "status": image.status,
                "size": f"{image.size_x}×{image.size_y}×{image.size_z} c{image.size_c} t{image.size_t}",
                "pixel_type": image.pixel_type,
                "format": image.format,
            }
            if not as_json
            else image.to_json()
        )
    show(rows, ["id", "name", "status", "size", "pixel_type", "format"], as_json, "Images")


@images.command("show")
@click.argument("image_id", type=int)
@pass_state
@guarded
def images_show(state: State, image_id: int) -> None:
    """Show everything known about one image, as JSON: sizes, channels, the file's metadata."""
    catalog = state.services.catalog
    document = catalog.get_image(image_id).to_json()
    document["metadata"] = vars(catalog.get_extras(image_id))
    click.echo(json.dumps(document, indent=2, default=str))


@images.command("delete")
@click.argument("image_ids", type=int, nargs=-1, required=True)
@pass_state
@guarded
def images_delete(state: State, image_ids: tuple[int, ...]) -> None:
    """Delete images: catalog rows, pyramid, original and cached renders."""
    for image_id in image_ids:
        state.services.delete_image(image_id)
        click.echo(f"deleted image {image_id}")


@main.command("check")
@click.argument("image_ids", type=int, nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def check(state: State, image_ids: tuple[int, ...], as_json: bool) -> None:
    """Read every chunk of the images' pyramids and re-hash their originals (all active images by default).

    Exits 1 when anything is damaged.
    """
    from coverslip.check import check_image

    services = state.services
    catalog = services.catalog
    images = (
        [catalog.get_image(image_id) for image_id in image_ids]
        if image_ids
        else [image for image in catalog.list_images() if image.status == "active"]
    )
    findings = [check_image(catalog, services.pixels, services.home, image) for image in images]
    if as_json:
        click.echo(json.dumps([vars(finding) for finding in findings], indent=2))
    for finding in findings if not as_json else []:
        if not finding.damaged:
            click.echo(f"image {finding.image_id}: ok")
        for problem in finding.pixels:
            click.echo(f"image {finding.image_id}: pixels: {problem}")
        for problem in finding.originals:
            click.echo(f"image {finding.image_id}: originals: {problem}")
    if any(finding.damaged for finding in findings):
        raise SystemExit(1)


@main.group()
def pixels() -> None:
    """Where pyramids and originals live: move those kept in the home into an object store."""


@pixels.command("migrate")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="s3://BUCKET/PREFIX",
    help="The object store; with pixels.store = file, it is written to the settings file.",
)
@pass_state
@guarded
def pixels_migrate(state: State, target: str) -> None:
    """Move every pyramid and original kept in the home into the object store.

    Resumable: a run cut short goes on where it stopped when run again. Every object is
    checked by the store against its MD5 and every fileset's originals are re-hashed from
    the store against the sha512 recorded at import before the local copy goes.
    """
    from coverslip.migration import Migration
    from coverslip.pixels.objects import ObjectStore

    target = config.lookup("pixels.store").convert(target)
    current = str(state.settings["pixels.store"])
    if target == "file":
        raise CoverslipError("--to names an object store: s3://bucket/prefix")
    if current not in ("file", target):
        raise CoverslipError(
            f"pixels.store is {current}; this instance's files are moved only into that store"
        )
    if current == "file":
        ObjectStore.at(target, state.settings).ping()
        stored = config.read_file(state.home.config_file)
        stored["pixels.store"] = target
        config.write_file(state.home.config_file, stored)
        if state.settings["pixels.store"] != target:
            raise CoverslipError(
                "pixels.store is set in the environment (COVERSLIP_PIXELS_STORE): change it there"
            )
        click.echo(f"pixels.store = {target!r}: restart web, thumbs and worker to import into it")
    moved = Migration(state.services, click.echo).run()
    click.echo(
        f"moved {moved.images} pyramid{'s' if moved.images != 1 else ''} and "
        f"{moved.filesets} fileset{'s' if moved.filesets != 1 else ''} of originals "
        f"({moved.objects} objects, {moved.size / 1e6:.1f} MB) into {target}"
    )
    for line in moved.left:
        click.echo(f"left in the home: {line}")


@main.group()
def datasets() -> None:
    """List, create and fill datasets."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def datasets_list(state: State, as_json: bool) -> None:
    """List datasets with their image counts."""
    rows = [dataset.to_json() for dataset in state.services.catalog.list_datasets()]
    show(rows, ["id", "name", "image_count", "description"], as_json, "Datasets")


@datasets.command("create")
@click.argument("name")
@click.option("--description", default="")
@pass_state
@guarded
def datasets_create(state: State, name: str, description: str) -> None:
    """Create a dataset."""
    owner_id, group_id = state.services.catalog.ensure_local_admin()
    dataset_id = state.services.catalog.create_dataset(name, owner_id, group_id, description)
    click.echo(f"created dataset {dataset_id} ({name})")


@datasets.command("add")
@click.argument("dataset_id", type=int)
@click.argument("image_ids", type=int, nargs=-1, required=True)
@pass_state
@guarded
def datasets_add(state: State, dataset_id: int, image_ids: tuple[int, ...]) -> None:
    """Add images to a dataset."""
    state.services.catalog.add_to_dataset(dataset_id, image_ids)
    click.echo(f"dataset {dataset_id}: added {', '.join(map(str, image_ids))}")


@datasets.command("remove")
@click.argument("dataset_id", type=int)
@click.argument("image_ids", type=int, nargs=-1, required=True)
@pass_state
@guarded
def datasets_remove(state: State, dataset_id: int, image_ids: tuple[int, ...]) -> None:
    """Remove images from a dataset (the images stay)."""
    state.services.catalog.remove_from_dataset(dataset_id, image_ids)
    click.echo(f"dataset {dataset_id}: removed {', '.join(map(str, image_ids))}")


@main.group()
def projects() -> None:
    """List, create and fill projects (sets of datasets)."""


@projects.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def projects_list(state: State, as_json: bool) -> None:
    """List projects with their datasets."""
    rows = [project.to_json() for project in state.services.catalog.list_projects()]
    show(rows, ["id", "name", "datasets", "description"], as_json, "Projects")


@projects.command("create")
@click.argument("name")
@click.option("--description", default="")
@pass_state
@guarded
def projects_create(state: State, name: str, description: str) -> None:
    """Create a project."""
    owner_id, group_id = state.services.catalog.ensure_local_admin()
    project_id = state.services.catalog.create_project(name, owner_id, group_id, description)
    click.echo(f"created project {project_id} ({name})")


@projects.command("add")
@click.argument("project_id", type=int)
@click.argument("dataset_ids", type=int, nargs=-1, required=True)
@pass_state
@guarded
def projects_add(state: State, project_id: int, dataset_ids: tuple[int, ...]) -> None:
    """Put datasets in a project."""
    state.services.catalog.add_to_project(project_id, dataset_ids)
    click.echo(f"project {project_id}: added {', '.join(map(str, dataset_ids))}")


@projects.command("remove")
@click.argument("project_id", type=int)
@click.argument("dataset_ids", type=int, nargs=-1, required=True)
@pass_state
@guarded
def projects_remove(state: State, project_id: int, dataset_ids: tuple[int, ...]) -> None:
    """Take datasets out of a project (the datasets stay)."""
    state.services.catalog.remove_from_project(project_id, dataset_ids)
    click.echo(f"project {project_id}: removed {', '.join(map(str, dataset_ids))}")


# -- demo -------------------------------------------------------------------------------


@main.command()
@click.option("--if-empty", is_flag=True, help="Do nothing when the catalog already has images.")
@click.option("--seed", type=int, default=0, show_default=True)
@pass_state
@guarded
def demo(state: State, if_empty: bool, seed: int) -> None:
    """Write a small, realistic demo set and import it into the "Demo" dataset, in the
    "Demo" project."""
    services = state.services
    if if_empty and services.catalog.list_images(limit=1):
        click.echo("the catalog has images already; no demo written")
        return
    from coverslip.demo import write_demo_files

    folder = state.home.staging / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    username, password = services.auth.ensure_admin()
    if password:
        click.echo(
            f"created the administrator: username {username}, password {password}\n"
            "  (shown only this once; change it with `coverslip user passwd admin`)"
        )
    owner_id, _default = services.catalog.ensure_local_admin()
    # The demo goes in the public group, so an anonymous visitor can browse it.
    group_id = services.auth.ensure_public_group()
    click.echo("writing demo files …")
    files = write_demo_files(folder, seed=seed)
    dataset_id = _dataset_id(services, "Demo", owner_id, group_id)
    project = services.catalog.project_by_name("Demo", group_id)
    if project is None:
        about = "Synthetic images of every kind Coverslip serves"
        project_id = services.catalog.create_project("Demo", owner_id, group_id, about)
    else:
        project_id = project.id
    services.catalog.add_to_project(project_id, [dataset_id])
    failed = 0
    from coverslip.imports import ImportOptions

    for item in files:
        options = ImportOptions(
            name=item.name,
            dataset_id=dataset_id,
            owner_id=owner_id,
            group_id=group_id,
            axes=item.axes,
            allow_duplicate=True,
        )
        failed += import_files(services, [item.path], options)[1]
        item.path.unlink(missing_ok=True)
    click.echo(f"demo dataset {dataset_id} ready with {len(files) - failed} image(s)")
    if failed:
        sys.exit(1)


# -- config -----------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Read and change settings (etc/coverslip.toml in the instance home)."""


@config_group.command("get")
@click.argument("name")
@pass_state
@guarded
def config_get(state: State, name: str) -> None:
    """Print the effective value of a setting."""
    config.lookup(name)
    value = state.settings[name]
    click.echo(
        ",".join(value)
        if isinstance(value, list)
        else json.dumps(value)
        if isinstance(value, bool)
        else value
    )


@config_group.command("set")
@click.argument("name")
@click.argument("value")
@pass_state
@guarded
def config_set(state: State, name: str, value: str) -> None:
    """Validate a value and write it to the settings file."""
    converted = config.lookup(name).convert(value)
    stored = config.read_file(state.home.config_file)
    stored[name] = converted
    config.write_file(state.home.config_file, stored)
    click.echo(f"{name} = {converted!r}")


@config_group.command("unset")
@click.argument("name")
@pass_state
@guarded
def config_unset(state: State, name: str) -> None:
    """Remove a setting from the settings file (its default applies again)."""
    config.lookup(name)
    stored = config.read_file(state.home.config_file)
    stored.pop(name, None)
    config.write_file(state.home.config_file, stored)
    click.echo(f"{name} unset")


@config_group.command("list")
@click.option("--defaults", is_flag=True, help="List every setting with its default and help.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def config_list(state: State, defaults: bool, as_json: bool) -> None:
    """List the settings that differ from their defaults (all of them with --defaults)."""
    settings = state.settings
    rows = []
    for setting in config.SETTINGS:
        source = settings.sources[setting.name]
        if not defaults and source == "default":
            continue
        rows.append(
            {
                "name": setting.name,
                "value": settings[setting.name],
                "source": source,
                "default": config.describe_default(setting),
                "doc": setting.doc,
            }
        )
    columns = (
        ["name", "value", "source", "default", "doc"] if defaults else ["name", "value", "source"]
    )
    show(rows, columns, as_json)


@config_group.command("docs")
def config_docs() -> None:
    """Print docs/configuration.md, generated from the settings registry."""
    click.echo(config.render_docs(), nl=False)


# The package whose commands a name is; any other name is asked of the deploy tools.
_PACKAGE_OF = {
    "worker": "jobs",
    "jobs": "jobs",
    "formats": "formats",
    "plates": "catalog",
    "user": "auth",
    "group": "auth",
    "token": "auth",
}


def _attach_commands(package: str) -> None:
    """Add the commands of ``package`` (one of _PACKAGE_OF's values, or deploy)."""
    if package == "deploy":
        from coverslip.deploy.cli import register

        register(main)
    elif package == "jobs":
        from coverslip.jobs import cli as jobs_cli

        main.add_command(jobs_cli.worker)
        main.add_command(jobs_cli.jobs)
    elif package == "formats":
        from coverslip.formats import cli as formats_cli

        main.add_command(formats_cli.formats)
    elif package == "catalog":
        from coverslip.catalog import cli as catalog_cli

        main.add_command(catalog_cli.plates)
    else:
        from coverslip.auth import cli as auth_cli

        main.add_command(auth_cli.user)
        main.add_command(auth_cli.group)
        main.add_command(auth_cli.token)


if __name__ == "__main__":  # pragma: no cover
    main()
