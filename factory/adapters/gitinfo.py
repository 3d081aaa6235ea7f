"""The repository, through GitPython: what a build records about it, and the commits the nightly makes.

GitPython runs `git version` when it is imported, and fails to import without a git binary. So it
is imported only when a repository is opened: `factory validate` or `render` never start git (and
work without it), and importing the CLI runs no process (the unit tests refuse processes).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.core.errors import EnvironmentProblem

if TYPE_CHECKING:
    import git


@dataclass(frozen=True)
class Revision:
    sha: str         # "unknown" outside a git checkout
    commit_time: int  # seconds since the epoch; the builds' SOURCE_DATE_EPOCH
    dirty: bool


def _open(root: Path) -> git.Repo:
    import git  # here, not above: see the module docstring

    return git.Repo(root, search_parent_directories=True)


def revision(root: Path) -> Revision:
    import git  # for its exception types; see the module docstring

    try:
        repo = _open(root)
        head = repo.head.commit
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return Revision("unknown", 0, False)
    return Revision(head.hexsha, int(head.committed_date), repo.is_dirty(untracked_files=False))


def checkout_branch(root: Path, branch: str) -> None:
    """Switch to ``branch``, creating it from HEAD when it does not exist."""
    repo = _open(root)
    head = repo.heads[branch] if branch in repo.heads else repo.create_head(branch)
    head.checkout()


def commit(root: Path, paths: list[Path], message: str) -> str | None:
    """Commit exactly ``paths`` (added, changed or removed); None when none of them changed."""
    repo = _open(root)
    if repo.working_tree_dir is None:
        raise EnvironmentProblem(f"{root} is in a bare git repository: there is no work tree to commit from")
    top = Path(repo.working_tree_dir)
    rel: list[str | os.PathLike[str]] = [str(Path(p).resolve().relative_to(top)) for p in paths]
    repo.git.add("--all", "--", *rel)
    if not repo.index.diff("HEAD", paths=rel):
        return None
    return repo.index.commit(message).hexsha


def remote_url(root: Path, remote: str = "origin") -> str:
    """The repository's ``remote`` URL as a public https URL without user or password ("" when there is
    none): an scp-like ``git@host:org/repo.git`` becomes ``https://host/org/repo``. What provenance and the
    source label name, so a token someone put in the remote URL never reaches a published artifact."""
    import git  # for its exception types; see the module docstring

    try:
        repo = _open(root)
        url = next(iter(repo.remote(remote).urls), "")
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError, git.GitCommandError):
        return ""
    return public_url(url)


def public_url(url: str) -> str:
    """``url`` (https, ssh or scp-like) as https://host/path without userinfo, port or ``.git``; "" for a
    local path or anything else that is not a network location."""
    from urllib.parse import urlsplit

    scp = re.fullmatch(r"(?:[^@/:]+@)?([A-Za-z0-9.-]+):(?!//)([^\s]+)", url)
    if scp and "://" not in url:
        host, path = scp.groups()
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return ""
        host, path = parts.hostname, parts.path
    path = path.strip("/").removesuffix(".git")
    return f"https://{host}/{path}" if path else ""
