"""Crash-safe file replacement: temp file, fsync, rename, fsync of the directory.

A reader sees either the previous complete file or the new complete file,
never a prefix of either, even if the writer is killed at any instruction.
The filesystem calls go through `FileOps` so tests can make any single step
fail and check what is left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _mkstemp(directory: Path, prefix: str) -> tuple[int, str]:
    return tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.write(fd, view[written:])
    return written


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FileOps:
    """The filesystem steps of `atomic_write_bytes`, in the order they run."""

    mkstemp: Callable[[Path, str], tuple[int, str]] = _mkstemp
    write: Callable[[int, bytes], int] = _write_all
    fsync: Callable[[int], None] = os.fsync
    close: Callable[[int], None] = os.close
    replace: Callable[[str, Path], None] = os.replace
    fsync_dir: Callable[[Path], None] = _fsync_dir
    unlink: Callable[[str], None] = os.unlink


REAL_FILE_OPS = FileOps()


class DirectorySyncError(OSError):
    """The new file is in place but the directory fsync failed: durability is unknown."""


STEPS: tuple[str, ...] = ("mkstemp", "write", "fsync", "close", "replace", "fsync_dir")
"""The steps a test can make fail, in execution order."""


def atomic_write_bytes(target: Path, data: bytes, ops: FileOps = REAL_FILE_OPS) -> None:
    """Replace `target` with `data` atomically and durably; raise `OSError` on any failure.

    Until the rename succeeds the previous file is untouched and the temp file
    is removed on failure. A failure of the final directory fsync raises
    `DirectorySyncError`: the new content is in place but its durability across
    a power loss is unknown.
    """
    directory = target.parent
    fd, temp_name = ops.mkstemp(directory, f".{target.name}.")
    renamed = False
    fd_open = True
    try:
        ops.write(fd, data)
        ops.fsync(fd)
        fd_open = False
        ops.close(fd)
        ops.replace(temp_name, target)
        renamed = True
        try:
            ops.fsync_dir(directory)
        except OSError as exc:
            raise DirectorySyncError(exc.errno, f"fsync of {directory} failed: {exc}") from exc
    finally:
        if fd_open:
            with contextlib.suppress(OSError):
                os.close(fd)
        if not renamed:
            with contextlib.suppress(OSError):
                ops.unlink(temp_name)
