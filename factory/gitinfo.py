"""What the build records about the repository it was made from (GitPython)."""

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
