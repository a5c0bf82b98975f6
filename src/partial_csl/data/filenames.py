"""The filename column of a label file: each name inside the image folder, named once, its image present and
readable (decoded in parallel, see :mod:`.image_checks`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from .image_checks import image_problems
from .images import check_image_folder, resolve_image_path
from .problems import FILENAME_COLUMN, BadRow


def _locate(image_dir: Path | None, name: str) -> tuple[str | None, list[tuple], Path | None]:
    """(problem, identity keys, path) of one filename: keys are the resolved path and, if it exists, the inode."""
    if not name:
        return "empty filename", [], None
    if image_dir is None:
        return None, [("path", os.path.normpath(name))], None
    try:
        path = resolve_image_path(image_dir, name)
    except ValueError:
        return "points outside the image folder", [], None
    keys: list[tuple] = [("path", path)]
    with contextlib.suppress(OSError):
        st = path.stat()
        keys.append(("inode", st.st_dev, st.st_ino))
    return None, keys, path


def check_filenames(entries: Sequence[tuple[int, str]], image_dir: str | Path | None = None,
                    check_images: bool = True, duplicates: bool = True) -> tuple[dict[int, BadRow], list[Path | None]]:
    """Validate a filename column given as (line, value) pairs: empty, outside the folder, duplicated, image.

    Two rows name the same image when their names resolve to one path in ``image_dir`` (``x.jpg``, ``./x.jpg``,
    ``sub/../x.jpg``, an absolute path) or to one inode (hard links, symlinks). Returns the problems by position and
    each entry's resolved path (None if unusable). With ``check_images`` each image must fully decode.
    """
    folder = None if image_dir is None else check_image_folder(image_dir)
    problems: dict[int, BadRow] = {}
    paths: list[Path | None] = []
    first: dict[tuple, tuple[int, str]] = {}
    to_decode: list[int] = []
    for position, (line, raw) in enumerate(entries):
        name = raw.strip()
        reason, keys, path = _locate(folder, name)
        paths.append(path)
        earlier = next((first[k] for k in keys if k in first), None) if duplicates else None
        if reason is None and earlier is not None:
            same = "" if earlier[1] == name else f", {earlier[1]!r}: the same image"
            reason = f"duplicate of line {earlier[0]}{same}"
        elif reason is None:
            first.update({k: (line, name) for k in keys})
            if check_images and folder is not None:
                reason = None if path.is_file() else f"image file not found in {folder}"
                to_decode += [] if reason else [position]
        if reason:
            problems[position] = BadRow(line, FILENAME_COLUMN, name or raw, reason)
    verdicts = image_problems([paths[i] for i in to_decode], [entries[i][1].strip() for i in to_decode])
    for position, reason in zip(to_decode, verdicts):
        if reason:
            problems[position] = BadRow(entries[position][0], FILENAME_COLUMN, entries[position][1].strip(), reason)
    return problems, paths
