"""Make written files survive a crash: fsync files and the folders that name them."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path


def sync_tree(root: Path, flushed: Collection[str] = ()) -> int:
    """Flush every file under ``root`` and every folder (``root`` and its parent included) to disk.

    Files named in ``flushed`` (as ``os.path.join`` spells them) were flushed already and
    are skipped. Returns the number of files flushed. A file is durable only once its
    folder's entry is too, so folders are flushed after the files in them.
    """
    count = 0
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if path not in flushed:
                _sync(path, os.O_RDONLY)
                count += 1
        _sync(dirpath, os.O_RDONLY | os.O_DIRECTORY)
    _sync(str(root.parent), os.O_RDONLY | os.O_DIRECTORY)
    return count


def sync_files(paths: Iterable[str]) -> None:
    """Flush the data of each file in ``paths`` to disk (not the folders naming them)."""
    for path in paths:
        _sync(path, os.O_RDONLY)


def _sync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
