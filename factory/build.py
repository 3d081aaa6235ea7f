"""Build one rendered context for every platform, into an OCI layout. Nothing reaches a registry here.

One multi-platform ``buildx build`` with the OCI exporter and ``rewrite-timestamp``, with
SOURCE_DATE_EPOCH from the git commit time: unchanged inputs give the same index digest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from factory import log, platforms, progress
from factory.docker import Docker
from factory.ocilayout import OciLayout


@dataclass(frozen=True)
class BuildRequest:
    name: str  # what is being built, e.g. "python-3.11-slim" or "python-3.11-slim-debug"
    dockerfile: Path  # inside the rendered context; its folder is the build context
    platforms: tuple[str, ...]
    build_args: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int = 0
    cache: bool = True


@dataclass(frozen=True)
class BuiltImage:
    name: str
    archive: Path
    layout: OciLayout
    seconds: float

    @property
    def index_digest(self) -> str:
        return self.layout.index.digest

    @property
    def platform_digests(self) -> dict[str, str]:
        return self.layout.manifests


def created_timestamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


def unbuildable_platforms(wanted: Sequence[str], *, binfmt_dir: Path = BINFMT_DIR) -> list[str]:
    """Platforms the local engine cannot run RUN steps for: not the host's, and no QEMU handler
    enabled in binfmt_misc. Checked before building, so the error says so instead of `exec format error`."""
    host = platforms.host()
    missing = []
    for text in wanted:
        p = platforms.parse(text)
        if p.arch == host.arch:
            continue
        handler = binfmt_dir / f"qemu-{p.qemu_name}"
        try:
            enabled = handler.read_text().splitlines()[0] == "enabled"
        except (OSError, IndexError):
            enabled = False
        if not enabled:
            missing.append(str(p))
    return missing


def build(docker: Docker, req: BuildRequest, workdir: Path) -> BuiltImage:
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / f"{req.name}.oci.tar"
    start = time.monotonic()
    with progress.live(f"building {req.name} for {', '.join(req.platforms)}") as update:
        docker.build(
            req.dockerfile.parent,
            file=req.dockerfile,
            platforms=req.platforms,
            output={"type": "oci", "dest": str(archive), "rewrite-timestamp": "true"},
            build_args={"SOURCE_DATE_EPOCH": str(req.source_date_epoch), **req.build_args},
            cache=req.cache,
            step="build",
            on_line=update,
        )
    layout = OciLayout.from_archive(archive, workdir / f"{req.name}.oci")
    seconds = time.monotonic() - start
    log.get("build").info("built", image=req.name, index=layout.index.digest, platforms=list(layout.platforms),
                          seconds=round(seconds, 1))
    return BuiltImage(req.name, archive, layout, seconds)


def missing_platforms(built: BuiltImage, wanted: Sequence[str]) -> list[str]:
    return [p for p in wanted if p not in built.layout.platforms]
