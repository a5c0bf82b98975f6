"""What a tool wrote in a folder, recorded so that replacing its output removes its files and nothing else.

``<folder>/<name>`` (JSON: ``{"files": [paths relative to the folder]}``) lists every file the tool wrote. A path is
recorded before its file is written (see :func:`partial_csl.safe_io.watching_writes`), so a kill never leaves a file
of the tool's that the manifest does not list; it may list a file that was never written, which costs nothing.
Replacing the output (:func:`remove_files`) deletes the listed files and the folders they leave empty; every other
file in the folder is the user's, and stays (:func:`other_files` names them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .safe_io import atomic_write_text


class ManifestError(ValueError):
    """A manifest that cannot be read (edited by hand, or not one of ours)."""


class Manifest:
    """The manifest ``folder/name``; :meth:`add` records paths (inside ``folder``) as they are about to be written."""

    def __init__(self, folder: str | Path, name: str):
        self.folder, self.path = Path(folder), Path(folder) / name
        self._files: set[str] | None = None

    def read(self) -> list[str] | None:
        """The recorded paths (relative, POSIX), or None when the folder has no manifest."""
        if not self.path.is_file():
            return None
        try:
            files = json.loads(self.path.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ManifestError(f"{self.path} is unreadable ({type(err).__name__}: {err})") from err
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ManifestError(f"{self.path}: 'files' is not a list of paths")
        return files

    def add(self, paths: Iterable[str | Path]) -> None:
        """Record ``paths`` (those outside the folder, and the manifest itself, are ignored); the manifest is
        rewritten, atomically, only when a path is new."""
        if self._files is None:
            self._files = set(self.read() or [])
        new = {rel for p in paths if (rel := relative_inside(self.folder, p)) and rel != self.path.name}
        new -= self._files
        if new:
            self._files |= new
            atomic_write_text(self.path, json.dumps({"files": sorted(self._files)}, indent=2) + "\n")

    def reset(self, paths: Iterable[str | Path]) -> None:
        """Record exactly ``paths`` (after the files no longer written have been removed)."""
        self._files = {rel for p in paths if (rel := relative_inside(self.folder, p)) and rel != self.path.name}
        atomic_write_text(self.path, json.dumps({"files": sorted(self._files)}, indent=2) + "\n")


def relative_inside(folder: str | Path, path: str | Path) -> str | None:
    """``path`` relative to ``folder`` (POSIX), or None when it lies outside (compared as resolved paths)."""
    root, target = Path(folder).resolve(), Path(path).resolve()
    if target == root or not target.is_relative_to(root):
        return None
    return target.relative_to(root).as_posix()


def remove_files(folder: str | Path, files: Iterable[str]) -> list[str]:
    """Delete ``files`` (relative to ``folder``; a path leading outside it is skipped) and the folders inside
    ``folder`` that this leaves empty; returns the files that were there and are gone."""
    folder = Path(folder)
    removed = []
    for rel in sorted(set(files)):
        if relative_inside(folder, folder / rel) is None:
            continue
        path = folder / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(rel)
        for parent in path.parents:
            if parent == folder or relative_inside(folder, parent) is None:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (holds someone else's files), or already gone
                break
    return removed


def other_files(folder: str | Path, skip: Iterable[str] = ()) -> list[str]:
    """Every file under ``folder`` (relative, POSIX, sorted) except those in ``skip``."""
    folder, skip = Path(folder), set(skip)
    found = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    return sorted(f for f in found if f not in skip)
