"""Never overwrite an input, never write through a link: the rules every script of this package writes by.

Two failures motivate this module. A script given an output path that *is* one of its inputs (``--csv
DIR/train.csv --out-dir DIR``) silently replaced the user's data; :func:`refuse_inputs_as_outputs` stops that before
any work, comparing resolved paths and inodes so that symlinks, hard links and different spellings of one path are
caught. And opening an existing file for writing writes into its inode, which a hard link may share with an original
(the offline rebalancing links originals into its output folder); the ``atomic_*`` writers instead create a new file
next to the target and ``os.replace`` it into place, so a reader sees the old file or the new one, never half of one,
and a link to another file is replaced rather than written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO


class OutputIsInputError(ValueError):
    """An output path would overwrite (or write into) one of the inputs."""


class OutputPathError(ValueError):
    """An output path that cannot be written: a file where a folder belongs, a folder where a file belongs, or a
    folder this process may not write in."""


def _check_can_create_in(folder: Path, flag: str, target: Path) -> None:
    """``folder`` (created when missing) must end up a writable folder: its nearest existing part decides."""
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise OutputPathError(f"{flag} {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {target}: cannot write in {existing} (permission denied)")


def check_output_folder(path: str | Path, flag: str = "--output-dir") -> None:
    """Refuse, before any work, an output folder that is a file or cannot be created or written in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path} is a file, not a folder")
    _check_can_create_in(path.absolute(), flag, path)


def check_output_file(path: str | Path, flag: str = "--output") -> None:
    """Refuse, before any work, an output file that is a folder or whose folder cannot be created or written in."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path} is a folder; give the path of the file to write")
    _check_can_create_in(path.absolute().parent, flag, path)


def describe_os_error(err: OSError) -> str:
    """One line, not a traceback, for a read or write that failed anyway (the checks above run first)."""
    where = f"{err.filename}: " if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}the disk is full ({err.strerror})"
    return f"{where}{err.strerror or err}"


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing path, following symlinks; None when missing or unreadable."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` both exist and are one file: equal resolved paths, or the same inode."""
    a, b = Path(a), Path(b)
    ida, idb = _identity(a), _identity(b)
    if ida is None or idb is None:
        return False
    return ida == idb or a.resolve() == b.resolve()


def refuse_inputs_as_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path], *,
                             by_inode: bool = True) -> None:
    """Raise OutputIsInputError naming the output and the input it would overwrite (also when an output is a folder
    that equals an input file, or an output file lies at an input path).

    An output matches an input when their resolved paths are equal (whether or not they exist yet: a file about to
    be written at a path the run reads from is refused too), or when both exist and share an inode (hard links,
    symlinks). ``by_inode=False`` compares paths only, for outputs that are deliberate hard links to inputs. Linear
    in the number of paths, so every image of a large data set can be passed.
    """
    by_path: dict[Path, Path] = {}
    by_id: dict[tuple[int, int], Path] = {}
    for raw in inputs:
        path = Path(raw)
        by_path.setdefault(path.resolve(), path)
        ident = _identity(path)
        if by_inode and ident is not None:
            by_id.setdefault(ident, path)
    for raw in outputs:
        out = Path(raw)
        hit = by_path.get(out.resolve())
        if hit is None and by_inode and (ident := _identity(out)) is not None:
            hit = by_id.get(ident)
        if hit is not None:
            raise OutputIsInputError(f"refusing to write {out}: it is the input {hit} (same file); "
                                     "choose an output path that is not one of the inputs")


_watchers: list[Callable[[list[Path]], None]] = []


@contextlib.contextmanager
def watching_writes(callback: Callable[[list[Path]], None]) -> Iterator[None]:
    """Call ``callback([path])`` before each atomic write (and link) made in this block, so that a tool can record
    the files it writes (a run's manifest) before they exist: a kill mid-write leaves a record, never an unlisted
    file."""
    _watchers.append(callback)
    try:
        yield
    finally:
        _watchers.remove(callback)


def announce_writes(paths: Iterable[Path]) -> None:
    """Tell the :func:`watching_writes` callbacks of files written by other means (TensorBoard's event file), or of
    several files about to be written (one record instead of one per file)."""
    paths = [Path(p) for p in paths]
    for callback in list(_watchers):
        callback(paths)


def _temp_name(path: Path) -> Path:
    """A hidden, random sibling of ``path`` (same folder, so ``os.replace`` is a rename on one file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new, exclusively created file next to ``path``; its mode is 0o666 minus the umask, like ``open``'s.

    (``tempfile.mkstemp`` would give 0o600, and the outputs would then be unreadable to the user's group.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = _temp_name(path)
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue


_writes = {"before-rename": 0, "after-rename": 0}


def _crash_point(where: str) -> None:
    """Crash tests: ``PARTIAL_CSL_KILL_AT=N:before-rename`` (or ``N:after-rename``) makes the process SIGKILL itself
    at that point of its N-th atomic write, as ``kill -9`` would; the tests then check that ``--resume`` recovers."""
    target = os.environ.get("PARTIAL_CSL_KILL_AT")
    if not target:
        return
    _writes[where] += 1
    count, _, point = target.partition(":")
    if point == where and _writes[where] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", newline: str | None = None,
                encoding: str = "utf-8") -> Iterator[IO]:
    """Yield a file object on a new temp file beside ``path``; renamed onto ``path`` only if the block succeeds.

    ``mode`` is ``"w"`` (text, ``encoding``) or ``"wb"``. On any exception the temp file is removed and ``path``
    is left as it was. The parent folder is created when missing.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes new files only: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    announce_writes([path])
    temp, fd = _create_temp(path)
    try:
        opened = os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w", newline=newline, encoding=encoding)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    try:
        with opened as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _crash_point("before-rename")
        os.replace(temp, path)
        _crash_point("after-rename")
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if err.filename is None and err.errno is not None:  # a failed write (a full disk) names no file
            raise type(err)(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` as a new file (temp file in the same folder, then ``os.replace``)."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` as a new file (temp file in the same folder, then ``os.replace``)."""
    with atomic_open(path, "w", newline="", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def replace_with_link(source: str | Path, target: str | Path) -> Path:
    """Make ``target`` a hard link to ``source`` (a copy where links are impossible) without ever opening ``target``.

    The link or copy is made under a temp name and renamed over ``target``, so whatever ``target`` was (a stale copy,
    a link to another file) is replaced, never written into.
    """
    source, target = Path(source), Path(target)
    announce_writes([target])
    temp = _temp_name(target)
    try:
        try:
            os.link(source, temp)
        except FileExistsError:
            raise
        except OSError:
            shutil.copyfile(source, temp)
        os.replace(temp, target)
        if os.path.lexists(temp):  # target was already a link to source: rename(2) then does nothing
            os.unlink(temp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return target


def describe_save_failure(path: Path, needed: int, err: BaseException) -> str:
    """One line for a failed save of about ``needed`` bytes to ``path``: a full disk says so, with the numbers; the
    previous file at ``path`` (atomic writes never touch it) is said to be intact."""
    free = shutil.disk_usage(path.parent).free
    previous = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} was replaced"
    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or free < needed:
        return (f"cannot save {path}: the disk is full (the checkpoint needs about {needed:,} bytes, "
                f"{free:,} are free there); {previous}")
    return f"cannot save {path} ({str(err).splitlines()[0]}); {previous}"
