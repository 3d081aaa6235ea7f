"""Build one rendered context for every platform, into an OCI layout. Nothing reaches a registry here.

One multi-platform ``buildx build`` with the OCI exporter and ``rewrite-timestamp``, with
SOURCE_DATE_EPOCH from the git commit time: unchanged inputs give the same index digest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from factory.adapters.docker import Docker
from factory.core import labels, log, platforms, progress
from factory.core.errors import BuildFailed, CommandError
from factory.oci.layout import OciLayout


@dataclass(frozen=True)
class BuildRequest:
    name: str  # what is being built, e.g. "python-3.11-slim" or "python-3.11-slim-debug"
    dockerfile: Path  # inside the rendered context; its folder is the build context
    platforms: tuple[str, ...]
    build_args: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int = 0
    cache: bool = True
    # OCI annotations for the index and every platform manifest (factory.publish.inputs.oci_annotations)
    annotations: Mapping[str, str] = field(default_factory=dict)


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


# BuildKit's plain progress: "#7 [linux/arm64 2/2] RUN ...", later "#7 ERROR: process ... exit code: 100";
# and in the closing summary " > [linux/arm64 2/2] RUN ...:". A one-platform build has no platform there.
_STEP_LINE = re.compile(r"^#(\d+) \[(\S+) ")
_ERROR_LINE = re.compile(r"^#(\d+) ERROR[: ]")
_SUMMARY_LINE = re.compile(r"^\s*> \[(\S+) ")


def failed_platforms(output: str) -> list[str]:
    """The platforms whose build steps failed, in BuildKit's plain progress output (sorted, unique)."""
    step_platform: dict[str, str] = {}
    failed: set[str] = set()
    for line in output.splitlines():
        if m := _STEP_LINE.match(line):
            step_platform.setdefault(m[1], m[2])
        elif m := _ERROR_LINE.match(line):
            failed.add(step_platform.get(m[1], ""))
        elif m := _SUMMARY_LINE.match(line):
            failed.add(m[1])
    return sorted({str(p) for p in map(_platform_or_none, failed) if p})


def step_platform(line: str) -> str | None:
    """The platform a line of BuildKit's plain progress is about ("#7 [linux/arm64 2/2] RUN ..."), if it says."""
    m = _STEP_LINE.match(line)
    p = _platform_or_none(m[2]) if m else None
    return str(p) if p else None


def _platform_or_none(text: str) -> platforms.Platform | None:
    try:  # "2/2" (a one-platform build's step counter) or "internal" is no platform
        return platforms.parse(text)
    except ValueError:
        return None


def annotation_attrs(annotations: Mapping[str, str], *, multi_platform: bool) -> dict[str, str]:
    """The OCI exporter's attributes that write ``annotations`` on each platform manifest and, for a
    multi-platform build, on the index (BuildKit refuses index annotations for one platform: there is no
    index then; fan-out's merge writes them on the index it makes, factory.publish.index)."""
    levels = [labels.MANIFEST_LEVEL, *([labels.INDEX_LEVEL] if multi_platform else [])]
    attrs = {}
    for level in levels:
        for key, value in sorted(annotations.items()):
            attr = f"annotation-{level}.{key}"
            if "," in value or '"' in value:
                # buildx reads --output as one CSV record (python-on-whales joins key=value with ","): a
                # field with a comma or a quote is quoted whole, its quotes doubled
                attrs['"' + attr] = value.replace('"', '""') + '"'
            else:
                attrs[attr] = value
    return attrs


def build(docker: Docker, req: BuildRequest, workdir: Path) -> BuiltImage:
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / f"{req.name}.oci.tar"
    start = time.monotonic()
    with progress.live(f"building {req.name} for {', '.join(req.platforms)}", platforms=req.platforms,
                       platform_of=step_platform) as update:
        try:
            docker.build(
                req.dockerfile.parent,
                file=req.dockerfile,
                platforms=req.platforms,
                output={"type": "oci", "dest": str(archive), "rewrite-timestamp": "true",
                        **annotation_attrs(req.annotations, multi_platform=len(req.platforms) > 1)},
                build_args={"SOURCE_DATE_EPOCH": str(req.source_date_epoch), **req.build_args},
                cache=req.cache,
                step="build",
                on_line=update,
            )
        except CommandError as e:
            raise BuildFailed(e, failed_platforms(e.stderr)) from None
    layout = OciLayout.from_archive(archive, workdir / f"{req.name}.oci")
    seconds = time.monotonic() - start
    log.get("build").info("built", image=req.name, index=layout.index.digest, platforms=list(layout.platforms),
                          seconds=round(seconds, 1))
    return BuiltImage(req.name, archive, layout, seconds)


def missing_platforms(built: BuiltImage, wanted: Sequence[str]) -> list[str]:
    return [p for p in wanted if p not in built.layout.platforms]
