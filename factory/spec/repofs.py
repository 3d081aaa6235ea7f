"""File access that never leaves the repository: the one reader of files a pull request can change.

Manifests, factory.yaml, CA files and the rendered contexts under images/ come from pull requests.
Every read of them goes through :func:`read_bytes`: the path, symbolic links followed, must stay
inside the repository (a link to ``/proc/self/environ`` or ``~/.docker/config.json`` is refused);
the file must be a regular file (a FIFO would block forever, a device reads without end), checked
with ``lstat`` before opening and ``fstat`` on the descriptor after (``O_NOFOLLOW | O_NONBLOCK``:
no link is followed and no FIFO blocks, even if the file changed in between); and the size is
checked before reading and the read itself is bounded (a 6 GB sparse file is never read whole).

Every write into images/ goes through :func:`check_no_links` first: no folder between the
repository and the file may be a symbolic link, so render never deletes or writes through one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from factory.core.errors import RepoFileError

MAX_TREE_FILES = 1000  # files in one rendered context: a few are rendered; thousands are an attack
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def containing_root(path: Path, root: Path) -> Path:
    """The folder a file must stay in: the repository when the path is written inside it, else the
    folder of a file named outside it (a manifest given on the command line), so that a link in that
    folder cannot lead out of it either."""
    root = root.resolve()
    written = Path(os.path.abspath(path))
    return root if written == root or root in written.parents else written.parent.resolve()


def inside(path: Path, root: Path) -> Path:
    """``path`` resolved (links followed); RepoFileError when that is outside ``root``."""
    root = root.resolve()
    resolved = Path(os.path.realpath(path))
    if resolved != root and root not in resolved.parents:
        raise RepoFileError(path, f"resolves to {resolved}, outside the repository {root}; "
                                  "a file the factory reads must be in the repository (no link out of it)")
    return resolved


def _kind(mode: int) -> str:
    for test, words in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return words
    return "not a regular file"


def read_bytes(path: Path, root: Path, limit: int, noun: str = "a file") -> bytes:
    """The bytes of a regular file inside ``root``, at most ``limit`` of them. Raises RepoFileError
    (outside the repository, no such file, a special file, too large, unreadable)."""
    resolved = inside(path, root)
    try:
        mode = os.lstat(resolved).st_mode
        if not stat.S_ISREG(mode):
            raise RepoFileError(path, f"is {_kind(mode)}; only regular files are read")
        fd = os.open(resolved, _READ_FLAGS)
    except FileNotFoundError:
        raise RepoFileError(path, "no such file") from None
    except OSError as e:
        raise RepoFileError(path, f"cannot read: {e.strerror}") from None
    try:
        return _read_fd(fd, path, limit, noun)
    finally:
        os.close(fd)


def _read_fd(fd: int, path: Path, limit: int, noun: str) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # replaced between lstat and open
        raise RepoFileError(path, f"is {_kind(info.st_mode)}; only regular files are read")
    if info.st_size > limit:
        raise RepoFileError(path, f"file is {info.st_size} bytes, larger than {_size(limit)}: {noun} may be at "
                                  f"most {_size(limit)}")
    chunks, total = [], 0
    while total <= limit:  # st_size can lie (/proc, a file growing): the read is bounded anyway
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise RepoFileError(path, f"file is larger than {_size(limit)}: {noun} may be at most {_size(limit)}")
    return b"".join(chunks)


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 else f"{n} bytes"


def check_no_links(path: Path, root: Path) -> None:
    """RepoFileError when ``path`` or a folder between ``root`` and it is a symbolic link or not a
    folder: render writes and deletes there, and must never do so through a link."""
    root = root.resolve()
    absolute = Path(os.path.abspath(path))
    if absolute != root and root not in absolute.parents:
        raise RepoFileError(path, f"is outside the repository {root}")
    current = root
    for part in absolute.relative_to(root).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return  # render creates the rest as plain folders
        if stat.S_ISLNK(mode):
            raise RepoFileError(current, "is a symbolic link; render never writes or deletes through a link: "
                                         "remove it (git rm) and render again")
        if not stat.S_ISDIR(mode):
            raise RepoFileError(current, f"is {_kind(mode)}, not a folder; remove it and render again")


@dataclass(frozen=True)
class Entry:
    """One non-folder entry of a tree, links not followed."""

    path: Path
    rel: str  # relative to the tree, posix separators
    regular: bool  # a regular file; otherwise a link, a FIFO, a device ...
    kind: str  # "a symbolic link" ... for messages


def list_tree(folder: Path) -> list[Entry]:
    """Every entry under ``folder`` but folders, sorted, without following links (a linked folder is
    an entry, not descended into). At most MAX_TREE_FILES entries."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    found: list[Entry] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        names = files + [d for d in dirs if os.path.islink(os.path.join(top, d))]
        for name in names:
            path = Path(top) / name
            mode = os.lstat(path).st_mode
            found.append(Entry(path, path.relative_to(folder).as_posix(), stat.S_ISREG(mode), _kind(mode)))
            if len(found) > MAX_TREE_FILES:
                raise RepoFileError(folder, f"holds more than {MAX_TREE_FILES} files; a build context has a few")
    return sorted(found, key=lambda e: e.rel)


def write_new(path: Path, content: bytes) -> None:
    """Write ``content`` to a new file at ``path``, never through a link: an existing file or link
    there is removed first and the file is created exclusively."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
