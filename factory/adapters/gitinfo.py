"""The repository, through GitPython: what a build records about it, and the commits the nightly makes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import git


@dataclass(frozen=True)
class Revision:
    sha: str         # "unknown" outside a git checkout
    commit_time: int  # seconds since the epoch; the builds' SOURCE_DATE_EPOCH
    dirty: bool


def revision(root: Path) -> Revision:
    try:
        repo = git.Repo(root, search_parent_directories=True)
        head = repo.head.commit
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return Revision("unknown", 0, False)
    return Revision(head.hexsha, int(head.committed_date), repo.is_dirty(untracked_files=False))


def checkout_branch(root: Path, branch: str) -> None:
    """Switch to ``branch``, creating it from HEAD when it does not exist."""
    repo = git.Repo(root, search_parent_directories=True)
    head = repo.heads[branch] if branch in repo.heads else repo.create_head(branch)
    head.checkout()


def commit(root: Path, paths: list[Path], message: str) -> str | None:
    """Commit exactly ``paths`` (added, changed or removed); None when none of them changed."""
    repo = git.Repo(root, search_parent_directories=True)
    top = Path(repo.working_tree_dir)
    rel = [str(Path(p).resolve().relative_to(top)) for p in paths]
    repo.git.add("--all", "--", *rel)
    if not repo.index.diff("HEAD", paths=rel):
        return None
    return repo.index.commit(message).hexsha
