"""Seed the local registry with upstream images to build from (demo and integration tests).

It ships in the runtime package, not in bin/, because it is a command (`factory seed`): `make demo`
runs it on a fresh machine through the installed CLI, and the integration tests seed their registry
the same way, so that the demo and the tests start from exactly what a user gets.

No Docker Hub here, so the "upstreams" are made locally, each for linux/amd64 + linux/arm64, pushed
to ``<registry>/upstream/<name>:<tag>`` and referenced by digest:

- ``busybox``: busybox-static and its applets; tiny and fast, has a shell but no package manager.
- ``noshell``: a static binary (tini) and /etc files only: the distroless stand-in. As distroless does, it
  records its package in ``var/lib/dpkg/status.d/tini`` (and ships /etc/debian_version), which is how an
  SBOM tool sees what a distroless image ships although it has no dpkg.
- ``debian``: a Debian bookworm ``mmdebstrap --variant=minbase`` rootfs: real apt, useradd.

Root filesystems are cached under ``<state>/cache/seed`` so a second run only rebuilds the images
(and buildx's cache makes that fast). Builds are reproducible: same rootfs, same digest.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from factory.adapters.docker import Docker
from factory.adapters.tools import Runner
from factory.core import log
from factory.core.errors import EnvironmentProblem, UsageError
from factory.core.platforms import Platform
from factory.spec.config import Settings

# Fixed timestamp for reproducible fixture images (2024-01-01T00:00:00Z).
SOURCE_DATE_EPOCH = 1704067200
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Seeded:
    name: str
    image: str  # registry/repository
    tag: str
    digest: str
    distro: str
    release: str

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.tag}@{self.digest}"


@dataclass(frozen=True)
class Fixture:
    name: str
    tag: str
    distro: str
    release: str
    revision: int = 1  # bumped when the fixture's files change, so that a cached root filesystem is not reused

    @property
    def cache_name(self) -> str:
        return self.name if self.revision == 1 else f"{self.name}-r{self.revision}"


FIXTURES = {
    "busybox": Fixture("busybox", "1.37", "scratch", ""),
    "noshell": Fixture("noshell", "1.0", "distroless", "12", revision=2),
    "debian": Fixture("debian", "12-minbase", "debian", "12"),
}

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
OS_RELEASE = 'PRETTY_NAME="Distroless stand-in (test fixture)"\nID=debian\nVERSION_ID="12"\n'


class Seeder:
    def __init__(self, settings: Settings, runner: Runner, docker: Docker) -> None:
        self.settings, self.runner, self.docker = settings, runner, docker
        self.cache = settings.state_dir / "cache" / "seed"
        self.debs = settings.state_dir / "cache" / "debs"

    def seed(self, names: Iterable[str], platforms: tuple[Platform, ...]) -> list[Seeded]:
        out = []
        for name in names:
            if name not in FIXTURES:
                raise UsageError(f"unknown fixture {name!r}; known: {', '.join(FIXTURES)}")
            out.append(self._seed_one(FIXTURES[name], platforms))
        return out

    def _seed_one(self, fx: Fixture, platforms: tuple[Platform, ...]) -> Seeded:
        logger = log.get("seed").bind(fixture=fx.name)
        ctx = self.cache / fx.cache_name / "context"
        ctx.mkdir(parents=True, exist_ok=True)
        for p in platforms:
            tar = ctx / f"rootfs-{p.arch}.tar"
            if not tar.exists():
                logger.info("making rootfs", platform=str(p))
                self._make_rootfs(fx, p, tar)
        (ctx / "Dockerfile").write_text(
            "FROM scratch\nARG TARGETARCH\nADD rootfs-${TARGETARCH}.tar /\n"
            + ('CMD ["/bin/sh"]\n' if fx.name != "noshell" else 'ENTRYPOINT ["/usr/bin/tini", "--"]\n')
        )
        image = f"{self.settings.registry}/upstream/{fx.name}"
        digest = self._build_and_push(ctx, f"{image}:{fx.tag}", platforms)
        logger.info("seeded", ref=f"{image}:{fx.tag}@{digest}")
        return Seeded(fx.name, image, fx.tag, digest, fx.distro, fx.release)

    def _build_and_push(self, ctx: Path, ref: str, platforms: tuple[Platform, ...]) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            meta = Path(tmp) / "metadata.json"
            self.docker.build(
                ctx, platforms=[str(p) for p in platforms], metadata_file=meta, step="seed",
                # rewrite-timestamp conflicts with the docker driver's image exporter; the rootfs
                # tarballs already carry fixed times and SOURCE_DATE_EPOCH fixes the config's.
                output={"type": "image", "name": ref, "push": "true"},
                build_args={"SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)},
            )
            digest: str = json.loads(meta.read_text())["containerimage.digest"]
            return digest

    def _make_rootfs(self, fx: Fixture, p: Platform, dest: Path) -> None:
        partial = dest.with_name(f"{dest.stem}.partial.tar")  # mmdebstrap picks its format by extension
        if fx.name == "debian":
            self._mmdebstrap(p, partial)
        else:
            files = self._busybox_files(p) if fx.name == "busybox" else self._noshell_files(p)
            write_tar(partial, files)
        partial.rename(dest)  # only complete tarballs are ever cached

    def _deb(self, package: str, p: Platform) -> Path:
        debs = sorted(self.debs.glob(f"{package}_*_{p.debian_arch}.deb"))
        if not debs:
            raise EnvironmentProblem(f"{package} .deb for {p} not found in {self.debs}",
                                     hint="run `make setup` (scripts/bootstrap.sh fetches fixture packages)")
        return debs[-1]

    def _deb_member(self, package: str, p: Platform, member: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.runner.run(["dpkg-deb", "-x", str(self._deb(package, p)), tmp], step="seed")
            return (Path(tmp) / member).read_bytes()

    def _deb_control(self, package: str, p: Platform) -> str:
        """The package's control paragraph: what distroless writes to var/lib/dpkg/status.d/<package>."""
        proc = self.runner.run(["dpkg-deb", "-f", str(self._deb(package, p))], step="seed")
        return proc.stdout.rstrip("\n") + "\n"

    def _busybox_files(self, p: Platform) -> dict[str, bytes | str]:
        files: dict[str, bytes | str] = {"bin/busybox": self._deb_member("busybox-static", p, "usr/bin/busybox")}
        for applet in BUSYBOX_APPLETS:
            files[f"bin/{applet}"] = "->busybox"
        files.update({"etc/passwd": PASSWD, "etc/group": GROUP, "tmp/": "", "root/": ""})
        return files

    def _noshell_files(self, p: Platform) -> dict[str, bytes | str]:
        return {
            "usr/bin/tini": self._deb_member("tini", p, "usr/bin/tini-static"),
            "var/lib/dpkg/status.d/tini": self._deb_control("tini", p), "etc/debian_version": "12.8\n",
            "etc/passwd": PASSWD, "etc/group": GROUP, "etc/os-release": OS_RELEASE,
            "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
            "tmp/": "", "home/nonroot/": "",
        }

    def _mmdebstrap(self, p: Platform, dest: Path) -> None:
        self.runner.run(
            ["mmdebstrap", "--variant=minbase", f"--architectures={p.debian_arch}", "--quiet",
             "--aptopt=Acquire::Retries=3", DEBIAN_SUITE, str(dest), DEBIAN_MIRROR],
            step="seed (mmdebstrap)", env={"SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}, timeout=1800,
        )


# The applets the fixture links; enough for shell scripts and the built-in checks.
BUSYBOX_APPLETS = ("sh", "ls", "cat", "id", "echo", "env", "find", "grep", "stat", "test", "[", "wc",
                   "head", "readlink", "sed", "tr", "date", "uname", "mkdir", "rm", "cp", "chmod", "chown",
                   "sleep", "true", "false", "printf", "awk", "sort", "tar", "wget", "adduser", "addgroup")


def write_tar(dest: Path, files: dict[str, bytes | str]) -> None:
    """Deterministic tar: sorted names, fixed mtime, root-owned. ``->target`` values are symlinks,
    names ending in / are directories."""
    dirs = {str(Path(n).parent) for n in files} - {"."}
    for d in list(dirs):
        dirs.update(str(parent) for parent in Path(d).parents if str(parent) != ".")
    entries = {f"{d}/": "" for d in dirs} | files
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            content = entries[name]
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uid, info.gid = SOURCE_DATE_EPOCH, 0, 0
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp/" else 0o755
                tar.addfile(info)
            elif isinstance(content, str) and content.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                tar.addfile(info)
            else:
                data = content.encode() if isinstance(content, str) else content
                info.size, info.mode = len(data), 0o755 if name.startswith(("bin/", "usr/bin/")) else 0o644
                tar.addfile(info, io.BytesIO(data))


def as_json(seeded: list[Seeded]) -> str:
    return json.dumps([asdict(s) | {"ref": s.ref} for s in seeded], indent=2)
