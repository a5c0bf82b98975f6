"""Start-up image checks that scale: every image decoded in parallel, each result remembered in a manifest.

Every reader checks that each image exists and fully decodes before training starts (a truncated file found in
epoch 7 would otherwise stop the run there). One image at a time that costs about 2 ms a small image: an hour for
Open Images' 1.7 M training images, repeated on every restart. So:

* :func:`image_problems` decodes in a thread pool (PIL releases the GIL while it decodes), ``CHECK_THREADS`` wide;
* inside :func:`image_manifest` (the trainer opens one on the run folder's ``image_checks.csv``) each verdict is
  kept with the file's size, times and inode and the pixel limit, and a restart decodes again only the files that
  changed (or all of them, under another limit).

The manifest is a file of the run folder, written atomically once the checks are done; the images are only read.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path

from ..safe_io import atomic_write_text
from .images import image_problem, max_image_pixels

CHECK_THREADS = min(32, (os.cpu_count() or 1) * 2)  # decoding also waits on the disk
MANIFEST_COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "inode", "pixel_limit", "problem")

_active: ContextVar[ImageManifest | None] = ContextVar("image_manifest", default=None)
Stamp = tuple[int, int, int, int, int]  # size, mtime, ctime, inode, the pixel limit in force


class ImageManifest:
    """Verdicts of earlier checks, by resolved path, valid while the file keeps its stamp: size, mtime, ctime (which
    no copy tool can set back, and which chmod changes), inode, and the pixel limit a verdict depends on."""

    def __init__(self, path: Path):
        self.path, self.entries = path, {}
        self.reused = self.checked = 0
        if path.is_file():
            try:
                for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
                    stamp = tuple(int(row[c]) for c in MANIFEST_COLUMNS[1:-1])
                    if row["problem"] is None or None in row.values():
                        raise ValueError("a short row")
                    self.entries[row["path"]] = (stamp, row["problem"] or None)
            except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError):
                self.entries = {}  # a damaged manifest is rebuilt, never half trusted

    @staticmethod
    def stamp(path: Path) -> Stamp | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, max_image_pixels()

    def known(self, path: Path, stamp: Stamp | None) -> tuple[bool, str | None]:
        """(True, verdict) when ``path`` was checked with this ``stamp``; (False, None) otherwise."""
        entry = self.entries.get(str(path))
        if entry is None or stamp is None or entry[0] != stamp:
            return False, None
        self.reused += 1
        return True, entry[1]

    def record(self, path: Path, stamp: Stamp | None, problem: str | None) -> None:
        """Keep a verdict under the stamp taken *before* the decode, if the file still has it (a file replaced
        while it was checked is checked again next time)."""
        if stamp is not None and self.stamp(path) == stamp:
            self.entries[str(path)] = (stamp, problem)
            self.checked += 1

    def save(self) -> None:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows([p, *stamp, problem or ""] for p, (stamp, problem) in sorted(self.entries.items()))
        atomic_write_text(self.path, out.getvalue())


@contextlib.contextmanager
def image_manifest(path: str | Path) -> Iterator[ImageManifest]:
    """Checks inside the block reuse and record verdicts in the manifest at ``path`` (saved on leaving it)."""
    manifest = ImageManifest(Path(path))
    token = _active.set(manifest)
    try:
        yield manifest
    finally:
        _active.reset(token)
        if manifest.checked:
            manifest.save()


def image_problems(paths: Sequence[Path], names: Sequence[str]) -> list[str | None]:
    """Why each image fails :func:`image_problem` (None for a good one), decoded in parallel; inside
    :func:`image_manifest`, files checked before and unchanged since are not decoded again."""
    manifest = _active.get()
    stamps = [ImageManifest.stamp(path) for path in paths] if manifest is not None else [None] * len(paths)
    verdicts: list[str | None] = [None] * len(paths)
    todo = []
    for i, path in enumerate(paths):
        seen, verdict = manifest.known(path, stamps[i]) if manifest is not None else (False, None)
        if seen:
            verdicts[i] = verdict
        else:
            todo.append(i)
    if len(todo) > 1 and CHECK_THREADS > 1:
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            found = list(pool.map(lambda i: image_problem(paths[i], names[i]), todo))
    else:
        found = [image_problem(paths[i], names[i]) for i in todo]
    for i, verdict in zip(todo, found):
        verdicts[i] = verdict
        if manifest is not None:
            manifest.record(paths[i], stamps[i], verdict)
    return verdicts
