"""Plan: pure functions from validated manifests and rendered contexts to what must be built.

The input fingerprint is a stable hash of everything that determines an image: its rendered
context, the base it is built on (upstream or parent index digest), its platforms and the
renderer's version. It is stored on every published image as the label ``FINGERPRINT_LABEL``
(``io.github.base-image-factory.fingerprint``); a publish whose fingerprint equals the current
version's writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from factory.render import DEBUG, FINGERPRINT_LABEL, PROD, RENDER_VERSION, digest_files

__all__ = ["FINGERPRINT_LABEL", "context_digest", "fingerprint", "read_context"]

FINGERPRINT_VERSION = 1  # bump when what goes into the fingerprint changes


def read_context(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by path relative to it (posix separators)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def context_digest(image_dir: Path, variant: str = PROD) -> str:
    """The committed context's digest, as the renderer computes it for ``RenderedImage``: the prod
    context is every file outside debug/, the debug context the files under debug/."""
    if variant == PROD:
        files = {p: c for p, c in read_context(image_dir).items() if not p.startswith(f"{DEBUG}/")}
    else:
        files = read_context(image_dir / variant)
    return digest_files(files)


def fingerprint(*, context_digest: str, base_digest: str, platforms: Sequence[str], variant: str = PROD) -> str:
    doc = {
        "v": FINGERPRINT_VERSION,
        "context": context_digest,
        "base": base_digest,
        "platforms": sorted(platforms),
        "render": RENDER_VERSION,
        "variant": variant,
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
